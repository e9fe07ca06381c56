# One three-way sync of a superproject (cws sync <slug>), logged under %LOCALAPPDATA%\cws\logs\.
# Usage: scripts\windows\cws-sync.ps1 [-Slug my-project] [-DryRun]; double-click cws-sync.cmd.
param(
    [string]$Slug = '',
    [switch]$DryRun
)
. (Join-Path $PSScriptRoot 'cws-common.ps1')
$Slug = Read-CwsValue $Slug 'Superproject to sync (its slug; cws status lists them)'
$cwsArgs = @('sync', $Slug)
if ($DryRun) { $cwsArgs += '--dry-run' }
Invoke-CwsLogged -Name "sync-$Slug" -CwsArguments $cwsArgs
exit $script:CwsExitCode
