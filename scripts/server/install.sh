#!/usr/bin/env bash
# Installs cws on a Debian/Ubuntu server in the layout of docs/operations.md: the service
# account, the settings file /etc/codex-workspace-sync/cws.env, the data and backup dirs, the
# code as a release under /opt/codex-workspace-sync (root-owned; production dependencies and
# Node 24 only), the wrappers cws-server, cws-agent and update-codex-workspace in
# /usr/local/bin, and the systemd units. Run as root from a checkout of this repository, or
# with --git URL [--ref R] / --tarball FILE / --path DIR to install from there instead.
# Running it again refreshes settings, wrappers and units, and updates the code through
# update-codex-workspace (with its backup, health check and rollback).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
checkout="$(cd "$here/../.." && pwd)"
# shellcheck source=lib.sh
source "$here/lib.sh"

[[ $EUID -eq 0 ]] || die "run install.sh as root (sudo)"

mkdir -p "$(dirname "$CWS_ENV_FILE")"
if [[ ! -f "$CWS_ENV_FILE" ]]; then
  install -m 0644 "$here/service.env.template" "$CWS_ENV_FILE"
  say "wrote $CWS_ENV_FILE (edit it and run install.sh again to change the account or folders)"
fi
load_env

if ! id "$CWS_USER" >/dev/null 2>&1; then
  say "creating the service account $CWS_USER"
  useradd --system --create-home --shell /bin/bash "$CWS_USER"
fi
for dir in "$CWS_DATA_DIR" "$CWS_BACKUP_DIR"; do
  mkdir -p "$dir"
  chown "$CWS_USER:" "$dir"
  chmod 0700 "$dir"
done
mkdir -p "$CWS_INSTALL_DIR/releases"
chmod 0755 "$CWS_INSTALL_DIR" "$CWS_INSTALL_DIR/releases"

install_wrappers
say "installed $CWS_BIN_DIR/cws-server, cws-agent and update-codex-workspace"

source_args=("$@")
((${#source_args[@]})) || source_args=(--path "$checkout")
if [[ -L "$CWS_INSTALL_DIR/current" ]]; then
  "$here/update.sh" "${source_args[@]}"
else
  "$here/update.sh" --first-install "${source_args[@]}"
  if [[ ! -f "$CWS_DATA_DIR/server.json" ]]; then
    say "next: set the secondary passphrase devices enroll with:"
    echo "    sudo -u $CWS_USER $CWS_BIN_DIR/cws-server init"
  fi
  say "then: $CWS_SYSTEMCTL enable --now $HUB_UNIT  (and optionally codex-workspace-sync-update.timer)"
fi
