# Updates this cws checkout from its git remote: fetches, fast-forwards (offering to stash
# local changes first), and reinstalls dependencies. Never merges or resets on its own: when
# the branch has diverged it says so and stops, leaving a backup branch to compare with.
param([string]$Remote = 'origin', [string]$Branch = '')
$ErrorActionPreference = 'Stop'
Set-Location (Resolve-Path (Join-Path $PSScriptRoot '..\..'))
if ($Branch -eq '') { $Branch = (git rev-parse --abbrev-ref HEAD).Trim() }
git fetch $Remote $Branch
$dirty = (git status --porcelain) -ne $null
if ($dirty) {
    $answer = Read-Host 'There are local changes. Stash them during the update? (y/n)'
    if ($answer -ne 'y') { Write-Host 'Nothing changed.'; Read-Host 'Press Enter'; exit 1 }
    git stash push -m "pull-repo $(Get-Date -Format s)"
}
$base = (git merge-base HEAD "$Remote/$Branch").Trim()
$head = (git rev-parse HEAD).Trim()
if ($base -ne $head) {
    $backup = "backup/pre-pull-$(Get-Date -Format yyyyMMdd-HHmmss)"
    git branch $backup
    Write-Host "Your branch has diverged from $Remote/$Branch. Kept it as $backup; rebase or reset by hand." -ForegroundColor Yellow
} else {
    git merge --ff-only "$Remote/$Branch"
    npm ci
}
if ($dirty) { git stash pop }
Read-Host 'Done. Press Enter to close this window'
