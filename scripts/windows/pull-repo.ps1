# Updates this cws checkout from its git remote. Fast-forwards when the working branch is
# behind (offering to stash local changes first) and reinstalls dependencies; when the branch
# has diverged it says so, keeps a backup branch and lets you choose: rebase your commits on
# the remote branch, reset to it, or leave everything as it is. Never merges or resets unasked.
# Usage: scripts\windows\pull-repo.ps1 [-Remote origin] [-Branch main]; double-click
# pull-repo.cmd. Every run is logged under %LOCALAPPDATA%\cws\logs\.
param(
    [string]$Remote = 'origin',
    [string]$Branch = ''
)
$ErrorActionPreference = 'Stop'
. (Join-Path $PSScriptRoot 'cws-common.ps1')
$logFile = Start-CwsLog 'pull-repo'
$stashed = $false
try {
    Set-Location $script:CwsRepo
    if (-not $Branch) { $Branch = (git rev-parse --abbrev-ref HEAD).Trim() }
    $node = Get-CwsNode
    & $node (Join-Path $script:CwsRepo 'tools\branch-status.ts') --remote $Remote --branch $Branch
    $state = $LASTEXITCODE
    if ($state -eq 0) {
        Write-Host 'Nothing to pull.' -ForegroundColor Green
    }
    elseif ($state -eq 10 -or $state -eq 11) {
        if (git status --porcelain) {
            $answer = Read-Host 'There are local changes. Stash them during the update? (y/n)'
            if ($answer -ne 'y') { throw 'Nothing changed.' }
            Invoke-Checked 'git stash' { git stash push -m "pull-repo $(Get-Date -Format s)" }
            $stashed = $true
        }
        if ($state -eq 10) {
            Invoke-Checked 'git merge --ff-only' { git merge --ff-only "$Remote/$Branch" }
        }
        else {
            $backup = "backup/pre-pull-$(Get-Date -Format yyyyMMdd-HHmmss)"
            Invoke-Checked 'git branch' { git branch $backup }
            Write-Host "Kept your branch as $backup." -ForegroundColor Yellow
            $choice = Read-Host "r = rebase your commits on $Remote/$Branch, s = reset to $Remote/$Branch (yours stay in $backup), n = do nothing"
            if ($choice -eq 'r') { Invoke-Checked 'git rebase' { git rebase "$Remote/$Branch" } }
            elseif ($choice -eq 's') { Invoke-Checked 'git reset' { git reset --hard "$Remote/$Branch" } }
            else { throw "Nothing changed; $backup is there to compare with." }
        }
        Invoke-Checked 'npm ci' { npm ci }
        Write-Host 'Updated.' -ForegroundColor Green
    }
    else { throw 'Cannot compare with the remote branch (see above).' }
    $code = 0
}
catch {
    Write-Host $_.Exception.Message -ForegroundColor Red
    $code = 1
}
finally {
    if ($stashed) {
        git stash pop
        if ($LASTEXITCODE -ne 0) { Write-Host 'Your stashed changes did not apply cleanly: see git stash list.' -ForegroundColor Yellow }
    }
    if ($logFile) { Stop-Transcript | Out-Null }
}
exit $code
