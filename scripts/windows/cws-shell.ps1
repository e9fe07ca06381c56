# Opens the interactive cws shell in this window, logged under %LOCALAPPDATA%\cws\logs\.
# Double-click cws-shell.cmd to keep the window open after the shell ends.
. (Join-Path $PSScriptRoot 'cws-common.ps1')
Invoke-CwsLogged -Name 'shell' -CwsArguments @('shell')
exit $script:CwsExitCode
