#!/usr/bin/env bash
# Updates an installed cws from its git checkout: backs up the live data first, fast-forwards
# the checkout, reinstalls dependencies, and restarts the hub. Used by the update timer and by
# hand. Refuses to continue when the checkout has diverged (it never merges or resets).
set -euo pipefail

env_file=/etc/codex-workspace-sync/cws.env
# shellcheck disable=SC1090
[[ -f "$env_file" ]] && source "$env_file"
: "${CWS_INSTALL_DIR:?set CWS_INSTALL_DIR}" "${CWS_DATA_DIR:?set CWS_DATA_DIR}"
branch="${CWS_UPDATE_BRANCH:-main}"
source_dir="${CWS_SOURCE_DIR:-$CWS_INSTALL_DIR}"

say() { printf '%s update: %s\n' "$(date -Is)" "$*"; }

cd "$source_dir"
if [[ ! -d .git ]]; then say "$source_dir is not a git checkout; nothing to update"; exit 0; fi
git fetch --quiet origin "$branch"
if [[ "$(git rev-parse HEAD)" == "$(git rev-parse "origin/$branch")" ]]; then say "up to date"; exit 0; fi
if ! git merge-base --is-ancestor HEAD "origin/$branch"; then
  say "the checkout has diverged from origin/$branch; not updating (resolve it by hand)"
  exit 1
fi

backup="$CWS_DATA_DIR/../cws-pre-update-$(date +%Y%m%dT%H%M%S)"
say "backing up live data to $backup"
"$CWS_INSTALL_DIR/node_modules/.bin/node" "$CWS_INSTALL_DIR/server-agent/server-main.ts" backup "$backup" --data "$CWS_DATA_DIR"

git merge --ff-only --quiet "origin/$branch"
npm ci --omit=dev --no-audit --no-fund >/dev/null
npm install --no-save node@24 >/dev/null
if command -v systemctl >/dev/null && systemctl is-active --quiet codex-workspace-sync.service; then
  systemctl restart codex-workspace-sync.service
fi
say "updated to $(git rev-parse --short HEAD)"
