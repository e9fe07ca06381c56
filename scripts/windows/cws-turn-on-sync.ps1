# Live sync of a superproject in this window (cws turn-on-sync <slug>) until Ctrl+C, which
# pushes the last changes and releases the lease; logged under %LOCALAPPDATA%\cws\logs\.
# Usage: scripts\windows\cws-turn-on-sync.ps1 [-Slug my-project]; double-click cws-turn-on-sync.cmd.
param(
    [string]$Slug = ''
)
. (Join-Path $PSScriptRoot 'cws-common.ps1')
$Slug = Read-CwsValue $Slug 'Superproject to live-sync (its slug; cws status lists them)'
Invoke-CwsLogged -Name "turn-on-sync-$Slug" -CwsArguments @('turn-on-sync', $Slug)
exit $script:CwsExitCode
