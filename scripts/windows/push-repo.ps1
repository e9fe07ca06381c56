# Publishes this repository through a sanitized temporary checkout: tools/export-sanitized.ts
# copies the curated tree (no local config, no state, no secrets) into a temp folder, which
# is committed and pushed from there, never from the working checkout.
# Settings (repo URL, branch, temp path) come from scripts\windows\push-config.local.ps1 when
# it exists (ignored by git), else from the parameters.
param([string]$RepoUrl = '', [string]$Branch = 'main', [string]$TempCheckout = '')
$ErrorActionPreference = 'Stop'
$repo = Resolve-Path (Join-Path $PSScriptRoot '..\..')
$config = Join-Path $PSScriptRoot 'push-config.local.ps1'
if (Test-Path $config) { . $config }
if ($RepoUrl -eq '') { $RepoUrl = (git -C $repo remote get-url origin).Trim() }
if ($TempCheckout -eq '') { $TempCheckout = Join-Path $repo 'backups\push_tmp_repo' }
if (-not (Test-Path (Join-Path $TempCheckout '.git'))) { git clone $RepoUrl $TempCheckout }
git -C $TempCheckout fetch origin $Branch
git -C $TempCheckout checkout -B $Branch "origin/$Branch"
& (Join-Path $PSScriptRoot 'cws.ps1') --version | Out-Null
& (Join-Path $repo 'node_modules\node\bin\node.exe') (Join-Path $repo 'tools\export-sanitized.ts') --out $TempCheckout --clean
foreach ($key in 'user.name', 'user.email') {
    $value = git -C $repo config $key
    if ($value) { git -C $TempCheckout config $key $value }
}
git -C $TempCheckout add -A
git -C $TempCheckout commit -m "Publish $(git -C $repo rev-parse --short HEAD)"
git -C $TempCheckout push origin $Branch
Read-Host 'Published. Press Enter to close this window'
