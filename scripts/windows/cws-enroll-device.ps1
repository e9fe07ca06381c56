# Enrolls this Windows device with the cws server, logged under %LOCALAPPDATA%\cws\logs\.
# Double-click cws-enroll-device.cmd: it asks for what is missing and keeps the window open
# whether enrollment succeeds or fails.
# Usage: scripts\windows\cws-enroll-device.ps1 [-ServerHost server] [-User you] [-Port 22]
# (not -Host: $Host is PowerShell's own read-only variable).
param(
    [string]$ServerHost = '',
    [string]$User = '',
    [int]$Port = 0
)
. (Join-Path $PSScriptRoot 'cws-common.ps1')
$ServerHost = Read-CwsValue $ServerHost 'Server host (name, address, or a Host alias of ~/.ssh/config)'
if (-not $User) { $User = Read-Host 'SSH user on the server (Enter: from ~/.ssh/config, else your user name)' }
$cwsArgs = @('enroll-device', '--host', $ServerHost)
if ($User) { $cwsArgs += @('--user', $User) }
if ($Port -gt 0) { $cwsArgs += @('--port', "$Port") }
# The SSH password, key passphrase and secondary passphrase are asked by cws itself.
Invoke-CwsLogged -Name 'enroll' -CwsArguments $cwsArgs
exit $script:CwsExitCode
