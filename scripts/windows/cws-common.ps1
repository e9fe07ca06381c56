# Shared by the cws launchers (dot-sourced: . (Join-Path $PSScriptRoot 'cws-common.ps1')).
# Finds the checkout's Node 24 and runs cws with every run logged under
# %LOCALAPPDATA%\cws\logs\<name>-<time>.log (the command, its output where PowerShell can
# record it, and the exit code). Secrets are asked by cws itself with echo off, so they never
# reach a command line or a log.

$script:CwsRepo = (Resolve-Path (Join-Path $PSScriptRoot '..\..')).Path

function Get-CwsLogDir {
    $base = $env:LOCALAPPDATA
    if (-not $base) { $base = Join-Path $env:USERPROFILE 'AppData\Local' }
    $dir = Join-Path $base 'cws\logs'
    New-Item -ItemType Directory -Force -Path $dir | Out-Null
    return $dir
}

function Get-CwsNode {
    # The Node 24 that `npm ci` put in this checkout, whatever Node the system has.
    $candidates = @(
        (Join-Path $script:CwsRepo 'node_modules\node\bin\node.exe'),
        (Join-Path $script:CwsRepo 'node_modules\.bin\node.exe'),
        (Join-Path $script:CwsRepo 'node_modules\.bin\node.cmd')
    )
    foreach ($candidate in $candidates) {
        if (Test-Path $candidate) { return $candidate }
    }
    throw "Node 24 is not installed in $($script:CwsRepo). Open a terminal there and run 'npm ci' first."
}

# Starts recording this window into a new log file; returns its path, or $null when
# PowerShell cannot transcribe here (the run goes on, only the summary line is logged).
function Start-CwsLog {
    param([Parameter(Mandatory = $true)][string]$Name)
    $logFile = Join-Path (Get-CwsLogDir) ('{0}-{1:yyyyMMdd-HHmmss}.log' -f $Name, (Get-Date))
    try {
        Start-Transcript -Path $logFile -Append | Out-Null
        return $logFile
    }
    catch {
        Add-Content -Path $logFile -Value "(no transcript: $($_.Exception.Message))"
        return $null
    }
}

# Runs a native command (git, npm, node) and throws when it fails: PowerShell 5.1 does not
# stop on a native command's exit code by itself.
function Invoke-Checked {
    param([Parameter(Mandatory = $true)][string]$What, [Parameter(Mandatory = $true)][scriptblock]$Command)
    & $Command
    if ($LASTEXITCODE -ne 0) { throw "$What failed (exit code $LASTEXITCODE)." }
}

# Runs `cws <CwsArguments>` in this window; its exit code is left in $script:CwsExitCode. Name
# labels the log file. Call it as a statement, never as `exit (Invoke-CwsLogged ...)`: capturing
# a function's output would capture cws's own output too (and cws would no longer see a
# console, so it could not ask for passwords).
$script:CwsExitCode = 1
function Invoke-CwsLogged {
    param(
        [Parameter(Mandatory = $true)][string]$Name,
        [string[]]$CwsArguments = @()
    )
    $transcript = Start-CwsLog $Name
    $transcribing = [bool]$transcript
    $logFile = $transcript
    if (-not $logFile) { $logFile = Join-Path (Get-CwsLogDir) ('{0}-{1:yyyyMMdd-HHmmss}.log' -f $Name, (Get-Date)) }
    $code = 1
    try {
        Write-Host "cws $($CwsArguments -join ' ')   (log: $logFile)"
        $node = Get-CwsNode
        $cli = Join-Path $script:CwsRepo 'src\cli\cws.mjs'
        & $node $cli @CwsArguments
        $code = $LASTEXITCODE
    }
    catch {
        Write-Host $_.Exception.Message -ForegroundColor Red
        $code = 2
    }
    finally {
        Write-Host "cws exited with code $code"
        if ($transcribing) { Stop-Transcript | Out-Null }
        else { Add-Content -Path $logFile -Value "cws $($CwsArguments -join ' ') exited with code $code" }
    }
    if ($code -eq 0) { Write-Host 'Done.' -ForegroundColor Green }
    else { Write-Host "cws failed (exit code $code). The messages above say why; the log is $logFile" -ForegroundColor Red }
    $script:CwsExitCode = $code
}

# Asks for a value when the parameter was not given (double-click runs pass no arguments).
function Read-CwsValue {
    param([string]$Value, [string]$Prompt)
    if ($Value) { return $Value }
    return (Read-Host $Prompt)
}
