# Enrolls this Windows device in a window that stays open whether enrollment succeeds or
# fails, and keeps a log under %LOCALAPPDATA%\CodexWorkspaceSync\logs\.
# Usage (double-click, or): scripts\windows\cws-enroll-device.ps1 [-Host server] [-User you]
param(
    [string]$Host = '',
    [string]$User = '',
    [int]$Port = 22
)
$ErrorActionPreference = 'Continue'
$logDir = Join-Path $env:LOCALAPPDATA 'CodexWorkspaceSync\logs'
New-Item -ItemType Directory -Force -Path $logDir | Out-Null
$log = Join-Path $logDir ("enroll-{0:yyyyMMdd-HHmmss}.log" -f (Get-Date))
Start-Transcript -Path $log -Append | Out-Null
try {
    if ($Host -eq '') { $Host = Read-Host 'Server host (name or address)' }
    if ($User -eq '') { $User = Read-Host 'SSH user on the server' }
    # Secrets (SSH password, key passphrase, secondary passphrase) are asked by cws itself,
    # with echo off; they never appear on a command line or in this log.
    & (Join-Path $PSScriptRoot 'cws.ps1') enroll-device --host $Host --user $User --port $Port
    if ($LASTEXITCODE -eq 0) { Write-Host "`nEnrollment succeeded." -ForegroundColor Green }
    else { Write-Host "`nEnrollment failed (exit code $LASTEXITCODE). See the messages above and the log: $log" -ForegroundColor Red }
}
finally {
    Stop-Transcript | Out-Null
    Read-Host 'Press Enter to close this window'
}
