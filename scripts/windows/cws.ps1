# Runs cws from this checkout with the Node 24 that `npm ci` installed, logged under
# %LOCALAPPDATA%\cws\logs\. Usage: scripts\windows\cws.ps1 <command> [options], e.g. .\cws.ps1 status
# (cws.cmd is the same for cmd.exe and double-click; with no command it shows the help).
. (Join-Path $PSScriptRoot 'cws-common.ps1')
$cwsArgs = @($args)
if ($cwsArgs.Count -eq 0) { $cwsArgs = @('--help') }
Invoke-CwsLogged -Name ('cws-' + ($cwsArgs[0] -replace '[^A-Za-z0-9-]', '')) -CwsArguments $cwsArgs
exit $script:CwsExitCode
