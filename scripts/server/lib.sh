# shellcheck shell=bash
# Functions shared by install.sh and update.sh (sourced, not run). The install layout they keep:
#
#   $CWS_INSTALL_DIR/releases/<id>/   one version: its source tree, node_modules (production
#                                      dependencies only) and runtime/ (Node 24, unless CWS_NODE)
#   $CWS_INSTALL_DIR/current          symlink to the release that runs
#   $CWS_INSTALL_DIR/previous         symlink to the release before it (the rollback target)
#   $CWS_INSTALL_DIR/source.git       cache of the git remote updates come from
#
# Overridable for tests and unusual layouts (never needed on a normal server):
#   CWS_ENV_FILE   the settings file          (default /etc/codex-workspace-sync/cws.env)
#   CWS_BIN_DIR    where the wrappers go      (default /usr/local/bin)
#   CWS_UNIT_DIR   where the units go         (default /etc/systemd/system)
#   CWS_SYSTEMCTL  the service control command (default systemctl)
#   CWS_HEALTH_TIMEOUT  seconds the new version gets to answer `cws-server status` (default 60)

CWS_ENV_FILE=${CWS_ENV_FILE:-/etc/codex-workspace-sync/cws.env}
CWS_BIN_DIR=${CWS_BIN_DIR:-/usr/local/bin}
CWS_UNIT_DIR=${CWS_UNIT_DIR:-/etc/systemd/system}
CWS_SYSTEMCTL=${CWS_SYSTEMCTL:-systemctl}
CWS_HEALTH_TIMEOUT=${CWS_HEALTH_TIMEOUT:-60}
HUB_UNIT=codex-workspace-sync.service

say() { printf '==> %s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

load_env() {
  [[ -f "$CWS_ENV_FILE" ]] || die "no settings file $CWS_ENV_FILE: run scripts/server/install.sh first"
  set -a
  # shellcheck disable=SC1090
  source "$CWS_ENV_FILE"
  set +a
  : "${CWS_USER:?set CWS_USER in $CWS_ENV_FILE}" "${CWS_DATA_DIR:?set CWS_DATA_DIR in $CWS_ENV_FILE}"
  : "${CWS_INSTALL_DIR:?set CWS_INSTALL_DIR in $CWS_ENV_FILE}" "${CWS_BACKUP_DIR:?set CWS_BACKUP_DIR in $CWS_ENV_FILE}"
  CWS_KEEP_RELEASES=${CWS_KEEP_RELEASES:-2}
  CWS_KEEP_BACKUPS=${CWS_KEEP_BACKUPS:-5}
}

# Runs a command as the service account: the hub and its data are that account's, never root's
# (a root-started hub would leave files the service cannot write; the hub refuses anyway).
# File descriptor 9 (the updater's lock) is closed for it: a hub it starts must not hold the lock.
as_service() {
  if [[ "$(id -un)" == "$CWS_USER" ]]; then "$@" 9>&-
  elif [[ $EUID -eq 0 ]]; then runuser -u "$CWS_USER" -- "$@" 9>&-
  else die "run this as root or as $CWS_USER"
  fi
}

# cws-server of a given release (default: current), run as the service account.
cws_server() {
  local release=${CWS_RELEASE_OVERRIDE:-$CWS_INSTALL_DIR/current}
  as_service "$release/scripts/server/run.sh" cws-server "$@"
}

service() { "$CWS_SYSTEMCTL" "$@" 9>&-; }

# The short identity of what a source holds (a commit, or a content hash), set by fetch_source.
SOURCE_ID=''
SOURCE_DESC=''

# Fills the empty folder $1 with the tree of the source: kind $2 (git, tarball, path), location
# $3, git ref $4. Sets SOURCE_ID and SOURCE_DESC.
fetch_source() {
  local into=$1 kind=$2 location=$3 ref=${4:-main}
  case "$kind" in
    git)
      local cache="$CWS_INSTALL_DIR/source.git"
      [[ -d "$cache" ]] || git init --quiet --bare "$cache"
      git -C "$cache" fetch --quiet --no-tags "$location" "$ref" || die "cannot fetch $ref from $location"
      local commit
      commit=$(git -C "$cache" rev-parse 'FETCH_HEAD^{commit}')
      git -C "$cache" archive --format=tar "$commit" | tar -x -C "$into"
      SOURCE_ID=${commit:0:12}
      SOURCE_DESC="git $location $ref ($commit)"
      ;;
    tarball)
      local file=$location
      if [[ "$location" =~ ^https?:// ]]; then
        file="$into.download"
        curl -fsSL --proto '=https,http' -o "$file" "$location" || die "cannot download $location"
      fi
      [[ -f "$file" ]] || die "no tarball at $location"
      SOURCE_ID=$(sha256sum "$file" | cut -c1-12)
      tar -x -f "$file" -C "$into" || die "cannot unpack $location"
      [[ "$file" == "$into.download" ]] && rm -f "$file"
      # Release tarballs (npm pack, GitHub archives) hold one top folder: use its content.
      local entries=("$into"/*)
      if [[ ${#entries[@]} -eq 1 && -d "${entries[0]}" && ! -f "$into/package.json" ]]; then
        local top=${entries[0]}
        (shopt -s dotglob; mv "$top"/* "$into"/)
        rmdir "$top"
      fi
      SOURCE_DESC="tarball $location (sha256 $SOURCE_ID…)"
      ;;
    path)
      [[ -d "$location" ]] || die "no folder $location"
      if git -C "$location" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        # A checkout: its tracked files as they are now (uncommitted edits included).
        (cd "$location" && git ls-files -z --cached | while IFS= read -r -d '' f; do [[ -e "$f" || -L "$f" ]] && printf '%s\0' "$f"; done | tar --null -c -T - -f -) | tar -x -C "$into"
      else
        (cd "$location" && tar -c --exclude=./node_modules --exclude=./.git --exclude=./runtime -f - .) | tar -x -C "$into"
      fi
      SOURCE_ID=$(cd "$into" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-12)
      SOURCE_DESC="path $location (content $SOURCE_ID)"
      ;;
    *) die "unknown source kind \"$kind\": use git, tarball or path" ;;
  esac
  [[ -f "$into/package.json" && -f "$into/package-lock.json" && -f "$into/server-agent/server-main.ts" && -f "$into/scripts/server/run.sh" ]] ||
    die "$SOURCE_DESC does not hold a cws release (package.json, package-lock.json, server-agent/, scripts/server/run.sh)"
}

# Value of KEY in a release's .cws-release record.
release_field() {
  local release=$1 key=$2
  [[ -f "$release/.cws-release" ]] && sed -n "s/^$key=//p" "$release/.cws-release" | head -n 1
}

# Copies a folder of the running release into a new one as hard links where the file system
# allows (the Node runtime is ~190 MB; no one writes into a release after it is made).
copy_tree() {
  cp -al "$1" "$2" 2>/dev/null || { rm -rf "$2"; cp -a "$1" "$2"; }
}

# Node 24 for a release: CWS_NODE when set, else the release's own runtime. Copies the runtime
# of $2 (the running release) when it was installed for the same version spec.
install_runtime() {
  local release=$1 reuse_from=${2:-}
  local node
  if [[ -n "${CWS_NODE:-}" ]]; then
    node=$CWS_NODE
  else
    local spec
    spec=$(cd "$release" && npm pkg get devDependencies.node | tr -d '"')
    [[ -n "$spec" && "$spec" != "{}" ]] || die "the release's package.json names no Node version (devDependencies.node)"
    echo "node_spec=$spec" >>"$release/.cws-release"
    if [[ -n "$reuse_from" && -x "$reuse_from/runtime/node_modules/.bin/node" && "$(release_field "$reuse_from" node_spec)" == "$spec" ]]; then
      copy_tree "$reuse_from/runtime" "$release/runtime"
    else
      say "installing Node $spec for this release (npm package node)"
      npm install --prefix "$release/runtime" --no-save --no-package-lock --no-audit --no-fund --loglevel=error "node@$spec" >/dev/null ||
        die "cannot install Node $spec from the npm registry; or set CWS_NODE in $CWS_ENV_FILE to a Node 24 you installed"
    fi
    node=$release/runtime/node_modules/.bin/node
  fi
  local version
  version=$("$node" --version 2>/dev/null) || die "cannot run Node at $node"
  local major=${version#v}
  major=${major%%.*}
  ((major >= 24)) || die "Node at $node is $version; cws needs Node 24 or newer"
}

# Production dependencies only, without install scripts (none of them needs one: ssh2 falls
# back to its JavaScript crypto). Copies node_modules of $2 when its lock file is the same.
install_dependencies() {
  local release=$1 reuse_from=${2:-}
  if [[ -n "$reuse_from" && -d "$reuse_from/node_modules" ]] && cmp -s "$release/package-lock.json" "$reuse_from/package-lock.json"; then
    copy_tree "$reuse_from/node_modules" "$release/node_modules"
  else
    say "installing production dependencies (npm ci --omit=dev)"
    (cd "$release" && npm ci --omit=dev --ignore-scripts --prefer-offline --no-audit --no-fund --loglevel=error >/dev/null) ||
      die "npm ci --omit=dev failed in $release"
  fi
}

# Loads every module of the release once (commander's --version runs after all imports), so a
# release that cannot even start is refused before the running hub is touched.
preflight() {
  local release=$1 out
  out=$(CWS_RELEASE_OVERRIDE=$release cws_server --version 2>&1) || { printf '%s\n' "$out" >&2; return 1; }
  printf '%s' "$out"
}

# Points the symlink $2 (current/previous) at release $1, atomically.
point() {
  local release=$1 name=$2
  ln -sfn "releases/$(basename "$release")" "$CWS_INSTALL_DIR/.$name.new"
  mv -T "$CWS_INSTALL_DIR/.$name.new" "$CWS_INSTALL_DIR/$name"
}

# Installs the release's systemd units, adapted to the settings, and reloads systemd.
install_units() {
  local release=$1
  mkdir -p "$CWS_UNIT_DIR"
  local unit
  for unit in "$release"/scripts/server/systemd/*.service "$release"/scripts/server/systemd/*.timer; do
    sed -e "s#^EnvironmentFile=.*#EnvironmentFile=$CWS_ENV_FILE#" \
        -e "s/^User=.*/User=$CWS_USER/; s/^Group=.*/Group=$CWS_USER/" \
        -e "s#^ReadWritePaths=.*#ReadWritePaths=$CWS_DATA_DIR#" \
        -e "s#/usr/local/bin/update-codex-workspace#$CWS_BIN_DIR/update-codex-workspace#" \
        "$unit" >"$CWS_UNIT_DIR/$(basename "$unit").new"
    chmod 0644 "$CWS_UNIT_DIR/$(basename "$unit").new"
    mv "$CWS_UNIT_DIR/$(basename "$unit").new" "$CWS_UNIT_DIR/$(basename "$unit")"
  done
  service daemon-reload
}

# The wrappers operators and sshd use; they always run the current release.
install_wrappers() {
  mkdir -p "$CWS_BIN_DIR"
  local name target
  for name in cws-server cws-agent update-codex-workspace update-codex-workspace-sync; do
    case "$name" in
      cws-server | cws-agent) target="\"\$CWS_INSTALL_DIR/current/scripts/server/run.sh\" $name" ;;
      *) target="\"\$CWS_INSTALL_DIR/current/scripts/server/update.sh\"" ;;
    esac
    cat >"$CWS_BIN_DIR/$name.new" <<WRAPPER
#!/bin/sh
# Installed by codex-workspace-sync's scripts/server/install.sh (see docs/operations.md).
set -a
. '$CWS_ENV_FILE'
set +a
CWS_ENV_FILE='$CWS_ENV_FILE' CWS_BIN_DIR='$CWS_BIN_DIR' CWS_UNIT_DIR='$CWS_UNIT_DIR'
export CWS_ENV_FILE CWS_BIN_DIR CWS_UNIT_DIR
exec $target "\$@"
WRAPPER
    chmod 0755 "$CWS_BIN_DIR/$name.new"
    mv "$CWS_BIN_DIR/$name.new" "$CWS_BIN_DIR/$name"
  done
}

# Waits until the hub answers `cws-server status` with a pid other than $1; prints the pid.
# Gives up early when systemd reports the unit is no longer active (it crashed).
wait_healthy() {
  local old_pid=${1:-} deadline=$((SECONDS + CWS_HEALTH_TIMEOUT)) out pid
  while ((SECONDS < deadline)); do
    if out=$(cws_server status --json --data "$CWS_DATA_DIR" 2>/dev/null); then
      pid=$(printf '%s' "$out" | sed -n 's/^ *"pid": *\([0-9][0-9]*\).*/\1/p' | head -n 1)
      if [[ -n "$pid" && "$pid" != "$old_pid" ]]; then
        printf '%s' "$pid"
        return 0
      fi
    fi
    service is-active --quiet "$HUB_UNIT" || return 1
    sleep 0.25
  done
  return 1
}

# The pid of the hub that answers now, or nothing.
hub_pid() {
  cws_server status --json --data "$CWS_DATA_DIR" 2>/dev/null | sed -n 's/^ *"pid": *\([0-9][0-9]*\).*/\1/p' | head -n 1
}

# Stops every hub on the data dir: the service, then one an agent started on demand.
stop_hubs() {
  service stop "$HUB_UNIT"
  if [[ -n "$(hub_pid)" ]]; then
    cws_server stop --data "$CWS_DATA_DIR" || true
    local deadline=$((SECONDS + 20))
    while [[ -n "$(hub_pid)" ]] && ((SECONDS < deadline)); do sleep 0.2; done
    [[ -z "$(hub_pid)" ]] || die "a hub still answers on $CWS_DATA_DIR after stopping; stop it by hand, then run this again"
  fi
}
