# Publishes this repository through a sanitized temporary checkout, never from the working
# checkout: tools/export-sanitized.ts copies the tracked files minus the deny list into the temp
# checkout and refuses (publishing nothing) when any file holds a secret; the result is
# committed and pushed from there. Before that, it warns when the working branch is behind the
# published branch, and asks for a typed confirmation when the two have diverged.
# Settings (repo URL, branch, temp checkout) come from push-config.local.ps1 beside this
# script when it exists (ignored by git, never exported), else from the parameters.
# Usage: scripts\windows\push-repo.ps1 [-RepoUrl url] [-Branch main] [-TempCheckout dir];
# double-click push-repo.cmd. Every run is logged under %LOCALAPPDATA%\cws\logs\.
param(
    [string]$RepoUrl = '',
    [string]$Branch = '',
    [string]$TempCheckout = ''
)
$ErrorActionPreference = 'Stop'
. (Join-Path $PSScriptRoot 'cws-common.ps1')
$logFile = Start-CwsLog 'push-repo'
try {
    $repo = $script:CwsRepo
    $config = Join-Path $PSScriptRoot 'push-config.local.ps1'
    if (Test-Path $config) { . $config }
    if (-not $Branch) { $Branch = (git -C $repo rev-parse --abbrev-ref HEAD).Trim() }
    if (-not $RepoUrl) { $RepoUrl = (git -C $repo remote get-url origin).Trim() }
    if (-not $TempCheckout) { $TempCheckout = Join-Path $repo 'backups\push_tmp_repo' }
    $node = Get-CwsNode

    # 1. The working branch against the published one (exit 10 behind, 11 diverged).
    & $node (Join-Path $repo 'tools\branch-status.ts') --repo $repo --remote origin --branch $Branch
    $state = $LASTEXITCODE
    if ($state -eq 10) {
        $answer = Read-Host 'Publish anyway? (y/n)'
        if ($answer -ne 'y') { throw 'Nothing was published. Run pull-repo first.' }
    }
    elseif ($state -eq 11) {
        $answer = Read-Host 'Type DISCARD to publish anyway and drop the commits only the published branch has'
        if ($answer -cne 'DISCARD') { throw 'Nothing was published. Rebase on the published branch first (pull-repo).' }
    }
    elseif ($state -ne 0) { throw 'Cannot compare with the published branch (see above).' }

    # 2. The temp checkout, on the published branch (or a new one).
    if (-not (Test-Path (Join-Path $TempCheckout '.git'))) {
        Invoke-Checked 'git clone' { git clone $RepoUrl $TempCheckout }
    }
    Invoke-Checked 'git fetch' { git -C $TempCheckout fetch origin }
    git -C $TempCheckout rev-parse --verify --quiet "refs/remotes/origin/$Branch" | Out-Null
    if ($LASTEXITCODE -eq 0) { Invoke-Checked 'git checkout' { git -C $TempCheckout checkout -B $Branch "origin/$Branch" } }
    else { Invoke-Checked 'git checkout' { git -C $TempCheckout checkout --orphan $Branch } }

    # 3. The sanitized export: refuses, writing nothing, when it finds a secret.
    & $node (Join-Path $repo 'tools\export-sanitized.ts') --repo $repo --out $TempCheckout --clean
    if ($LASTEXITCODE -ne 0) { throw 'The export was refused (findings above); nothing was published.' }

    foreach ($key in 'user.name', 'user.email') {
        $value = git -C $repo config $key
        if ($value) { git -C $TempCheckout config $key $value }
    }
    Invoke-Checked 'git add' { git -C $TempCheckout add -A }
    git -C $TempCheckout diff --cached --quiet
    if ($LASTEXITCODE -eq 0) {
        Write-Host 'Nothing to publish: the published tree is already this one.' -ForegroundColor Green
    }
    else {
        $source = (git -C $repo rev-parse --short HEAD).Trim()
        Invoke-Checked 'git commit' { git -C $TempCheckout commit -m "Publish $source" }
        Invoke-Checked 'git push' { git -C $TempCheckout push origin $Branch }
        Write-Host "Published $source to $RepoUrl ($Branch)." -ForegroundColor Green
    }
    $code = 0
}
catch {
    Write-Host $_.Exception.Message -ForegroundColor Red
    $code = 1
}
finally {
    if ($logFile) { Stop-Transcript | Out-Null }
}
exit $code
