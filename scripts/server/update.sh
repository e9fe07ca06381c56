#!/usr/bin/env bash
# update-codex-workspace: moves the installed cws to another version, or back.
#
#   update-codex-workspace                      the source in cws.env (CWS_UPDATE_KIND/SOURCE/REF)
#   update-codex-workspace --git URL [--ref R]  a git remote: branch, tag or commit (default main)
#   update-codex-workspace --tarball FILE|URL   a release tarball (npm pack, GitHub archive)
#   update-codex-workspace --path DIR           a folder or checkout (its tracked files)
#   update-codex-workspace --rollback           back to the previous release
#   options: --force (install even when the source holds the running version),
#            --quiet-if-current (say nothing when there is nothing to do: the hourly timer)
#
# Steps: fetch the source into a new release folder; install production dependencies and
# Node 24 there; load it once (`cws-server --version`) - a release that fails here is dropped
# and the running hub is never touched. Then back up the data (`cws-server backup`), stop the
# hub through systemd (and any hub an agent started), switch `current`, start the hub through
# systemd and wait until `cws-server status` answers from a new process. If it does not, stop
# it, switch back, start the old release again and exit 1. The old release is kept as
# `previous` (the next rollback target); older ones are removed. Run as root. See
# docs/operations.md.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$here/lib.sh"

usage() { sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

kind='' location='' ref='' force=0 quiet=0 rollback=0 first_install=0
while (($#)); do
  case "$1" in
    --git | --tarball | --path) kind=${1#--}; location=${2:?$1 needs a value}; shift 2 ;;
    --ref) ref=${2:?--ref needs a value}; shift 2 ;;
    --rollback) rollback=1; shift ;;
    --force) force=1; shift ;;
    --quiet-if-current) quiet=1; shift ;;
    --first-install) first_install=1; shift ;;  # used by install.sh
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown option $1" ;;
  esac
done

load_env
[[ $EUID -eq 0 || "$(id -un)" == "$CWS_USER" ]] || die "run update-codex-workspace as root (sudo)"
mkdir -p "$CWS_INSTALL_DIR/releases"

# One updater at a time (the timer and an operator may meet).
exec 9>"$CWS_INSTALL_DIR/update.lock"
flock -n 9 || die "another update is running (it holds $CWS_INSTALL_DIR/update.lock)"

old=''
[[ -L "$CWS_INSTALL_DIR/current" ]] && old=$(cd -P "$CWS_INSTALL_DIR/current" && pwd)
[[ -n "$old" || $first_install -eq 1 ]] || die "nothing is installed in $CWS_INSTALL_DIR: run scripts/server/install.sh first"

if ((rollback)); then
  [[ -L "$CWS_INSTALL_DIR/previous" ]] || die "there is no previous release to roll back to"
  new=$(cd -P "$CWS_INSTALL_DIR/previous" && pwd)
  say "rolling back from $(basename "$old") to $(basename "$new")"
else
  if [[ -z "$kind" ]]; then
    kind=${CWS_UPDATE_KIND:-git}
    location=${CWS_UPDATE_SOURCE:-}
    [[ -n "$location" ]] || die "no update source: pass --git URL, --tarball FILE or --path DIR, or set CWS_UPDATE_SOURCE in $CWS_ENV_FILE"
  fi
  ref=${ref:-${CWS_UPDATE_REF:-main}}
  incoming="$CWS_INSTALL_DIR/releases/.incoming-$$"
  rm -rf "$incoming"
  mkdir -p "$incoming"
  trap 'rm -rf "$incoming"' EXIT
  fetch_source "$incoming" "$kind" "$location" "$ref"
  if [[ -n "$old" && "$(release_field "$old" source_id)" == "$SOURCE_ID" && $force -eq 0 ]]; then
    ((quiet)) || say "already at $SOURCE_DESC (release $(basename "$old")); nothing to do (--force reinstalls)"
    exit 0
  fi
  say "new release from $SOURCE_DESC"
  printf 'source_id=%s\nsource=%s\ninstalled_at=%s\n' "$SOURCE_ID" "$SOURCE_DESC" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$incoming/.cws-release"
  install_dependencies "$incoming" "$old"
  install_runtime "$incoming" "$old"
  chmod -R go-w "$incoming"
  new="$CWS_INSTALL_DIR/releases/$(date -u +%Y%m%dT%H%M%SZ)-$SOURCE_ID"
  mv "$incoming" "$new"
  trap - EXIT
fi

if ! version=$(preflight "$new"); then
  ((rollback)) || rm -rf "$new"
  die "the new version cannot start (above); nothing changed, the running hub was not touched"
fi
say "it loads: cws-server $version"

if [[ -z "$old" ]]; then
  point "$new" current
  install_units "$new"
  say "installed $(basename "$new") as $CWS_INSTALL_DIR/current"
  exit 0
fi

was_active=0
service is-active --quiet "$HUB_UNIT" && was_active=1
initialised=0
[[ -f "$CWS_DATA_DIR/server.json" ]] && initialised=1

if ((initialised)); then
  stamp=$(date -u +%Y%m%dT%H%M%SZ)
  backup="$CWS_BACKUP_DIR/pre-update-$stamp"
  say "backing up the data to $backup"
  cws_server backup "$backup" --data "$CWS_DATA_DIR" || die "the pre-update backup failed (above); nothing changed"
  # Keep the newest CWS_KEEP_BACKUPS pre-update backups.
  find "$CWS_BACKUP_DIR" -mindepth 1 -maxdepth 1 -name 'pre-update-*' -printf '%f\n' | LC_ALL=C sort -r |
    tail -n +"$((CWS_KEEP_BACKUPS + 1))" | while read -r name; do rm -rf "${CWS_BACKUP_DIR:?}/$name"; done || true
fi
old_pid=$(hub_pid || true)

say "stopping the hub"
stop_hubs
point "$new" current
install_units "$new"

# Starts the hub of the current release through systemd and checks that it answers.
start_and_check() {
  if ((!initialised)); then
    warn "the data dir is not initialised (no server.json): the hub was not started; run cws-server init"
    return 0
  fi
  service start "$HUB_UNIT" || return 1
  local pid
  pid=$(wait_healthy "$old_pid") || return 1
  say "the hub answers cws-server status (pid $pid)"
  if ((!was_active)); then
    # The service was not running before: leave it as it was (agents start a hub on demand).
    service stop "$HUB_UNIT"
  fi
}

if start_and_check; then
  # The release that ran until now is the next rollback target (after --rollback too: a
  # second --rollback undoes the first).
  point "$old" previous
  # Remove releases that are neither current nor among the newest CWS_KEEP_RELEASES old ones.
  find "$CWS_INSTALL_DIR/releases" -mindepth 1 -maxdepth 1 -type d ! -name '.*' -printf '%f\n' | LC_ALL=C sort -r |
    grep -vx -e "$(basename "$new")" -e "$(basename "$old")" | tail -n +"$CWS_KEEP_RELEASES" |
    while read -r name; do rm -rf "${CWS_INSTALL_DIR:?}/releases/$name"; done || true
  say "now running $(basename "$new") (cws-server $version)"
  exit 0
fi

warn "the new version did not answer cws-server status (its service stopped, or ${CWS_HEALTH_TIMEOUT} s passed); rolling back to $(basename "$old")"
service status "$HUB_UNIT" --no-pager -n 20 >&2 || true
service stop "$HUB_UNIT" || true
point "$old" current
install_units "$old"
if start_and_check; then
  ((rollback)) || rm -rf "$new"
  die "rolled back: $(basename "$old") runs again; the failed version was removed (its log is in journalctl -u $HUB_UNIT)"
fi
die "the old version does not answer either. If the new version changed the data, restore the pre-update backup ${backup:-} (docs/recovery.md), then systemctl start $HUB_UNIT"
