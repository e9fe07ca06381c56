# Opens the interactive cws shell in this window (double-click friendly: the window stays
# open after the shell ends, so its last messages can be read).
$ErrorActionPreference = 'Continue'
& (Join-Path $PSScriptRoot 'cws.ps1') shell
Write-Host ''
Read-Host 'cws shell ended. Press Enter to close this window'
