#!/usr/bin/env bash
# Installs cws on a Debian/Ubuntu server: the service account, the code under /opt, the
# environment file under /etc, the systemd units. Run as root from a checkout of this
# repository. Safe to run again (it updates the code and units, keeps data and config).
set -euo pipefail

here="$(cd "$(dirname "$0")/../.." && pwd)"
env_dir=/etc/codex-workspace-sync
env_file="$env_dir/cws.env"

say() { printf '==> %s\n' "$*"; }

if [[ $EUID -ne 0 ]]; then echo "install.sh: run as root (sudo)" >&2; exit 2; fi

mkdir -p "$env_dir"
if [[ ! -f "$env_file" ]]; then
  install -m 0644 "$here/scripts/server/service.env.template" "$env_file"
  say "wrote $env_file (edit it, then run this script again if you change CWS_USER or the dirs)"
fi
# shellcheck disable=SC1090
source "$env_file"

if ! id "$CWS_USER" >/dev/null 2>&1; then
  say "creating the service account $CWS_USER"
  useradd --system --create-home --shell /bin/bash "$CWS_USER"
fi

say "installing the code into $CWS_INSTALL_DIR"
mkdir -p "$CWS_INSTALL_DIR"
if command -v rsync >/dev/null; then
  rsync -a --delete --exclude node_modules --exclude .git "$here/" "$CWS_INSTALL_DIR/"
else
  cp -a "$here/." "$CWS_INSTALL_DIR/"
fi
(cd "$CWS_INSTALL_DIR" && npm ci --omit=dev --no-audit --no-fund && npm install --no-save node@24 >/dev/null)

mkdir -p "$CWS_DATA_DIR"
chown "$CWS_USER:$CWS_USER" "$CWS_DATA_DIR"
chmod 0700 "$CWS_DATA_DIR"

say "installing the agent wrapper /usr/local/bin/cws-agent"
cat > /usr/local/bin/cws-agent <<WRAPPER
#!/bin/sh
# Started by sshd for each cws session (directly, or through the forced command of a device key).
exec "$CWS_INSTALL_DIR/node_modules/.bin/node" "$CWS_INSTALL_DIR/server-agent/agent/main.ts" --data "$CWS_DATA_DIR" "\$@"
WRAPPER
chmod 0755 /usr/local/bin/cws-agent
cat > /usr/local/bin/cws-server <<WRAPPER
#!/bin/sh
exec "$CWS_INSTALL_DIR/node_modules/.bin/node" "$CWS_INSTALL_DIR/server-agent/server-main.ts" "\$@"
WRAPPER
chmod 0755 /usr/local/bin/cws-server

say "installing systemd units"
install -m 0644 "$here/scripts/server/systemd/"*.service "$here/scripts/server/systemd/"*.timer /etc/systemd/system/
sed -i "s/^User=.*/User=$CWS_USER/; s/^Group=.*/Group=$CWS_USER/; s#^ReadWritePaths=.*#ReadWritePaths=$CWS_DATA_DIR#" /etc/systemd/system/codex-workspace-sync.service
systemctl daemon-reload

if [[ ! -f "$CWS_DATA_DIR/server.json" ]]; then
  say "next: set the secondary passphrase devices enroll with:"
  echo "    sudo -u $CWS_USER cws-server init --data $CWS_DATA_DIR"
fi
say "then: systemctl enable --now codex-workspace-sync.service (and optionally codex-workspace-sync-update.timer)"
