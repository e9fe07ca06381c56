# Runs cws from this checkout with the Node 24 that `npm ci` installed, whatever Node the
# system has. Usage: scripts\windows\cws.ps1 <command> [options]   e.g.  .\cws.ps1 status
$ErrorActionPreference = 'Stop'
$repo = Resolve-Path (Join-Path $PSScriptRoot '..\..')
$node = Join-Path $repo 'node_modules\node\bin\node.exe'
if (-not (Test-Path $node)) { $node = Join-Path $repo 'node_modules\.bin\node.cmd' }
if (-not (Test-Path $node)) {
    Write-Error "Node 24 is not installed in $repo. Run 'npm ci' there first."
    exit 2
}
& $node (Join-Path $repo 'src\cli\cws.ts') @args
exit $LASTEXITCODE
