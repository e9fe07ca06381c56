#!/usr/bin/env bash
# A stand-in for systemctl where systemd does not run (containers, CI), for the install and
# update tests: it runs a unit's real ExecStart= line from the installed unit file, with its
# EnvironmentFile=, as a background process, and stops it with SIGTERM as systemd would.
# It knows only what the cws scripts use: daemon-reload, start, stop, restart, is-active,
# status, enable/disable [--now]. User=, Restart= and the sandboxing options are not applied.
#
# Settings: CWS_UNIT_DIR (where the units are installed), FAKE_SYSTEMCTL_DIR (its state).
set -euo pipefail
: "${CWS_UNIT_DIR:?}" "${FAKE_SYSTEMCTL_DIR:?}"
mkdir -p "$FAKE_SYSTEMCTL_DIR"
printf '%s\n' "$*" >>"$FAKE_SYSTEMCTL_DIR/calls"

quiet=0 now=0 args=()
for arg in "$@"; do
  case "$arg" in
    --quiet) quiet=1 ;;
    --now) now=1 ;;
    --no-pager | -n | [0-9]*) ;;
    *) args+=("$arg") ;;
  esac
done
verb=${args[0]:-}
unit=${args[1]:-}
pidfile="$FAKE_SYSTEMCTL_DIR/$unit.pid"
logfile="$FAKE_SYSTEMCTL_DIR/$unit.log"

running() { [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

unit_value() { sed -n "s/^$1=//p" "$CWS_UNIT_DIR/$unit" | head -n 1; }

start() {
  running && return 0
  [[ -f "$CWS_UNIT_DIR/$unit" ]] || { echo "Unit $unit not found." >&2; return 5; }
  local env_file exec_start
  env_file=$(unit_value EnvironmentFile)
  exec_start=$(unit_value ExecStart)
  (
    set -a
    # shellcheck disable=SC1090
    [[ -n "$env_file" ]] && source "$env_file"
    set +a
    exec setsid sh -c "$exec_start" </dev/null >>"$logfile" 2>&1
  ) &
  echo $! >"$pidfile"
}

stop() {
  running || { rm -f "$pidfile"; return 0; }
  local pid
  pid=$(cat "$pidfile")
  # The unit runs in its own process group (setsid), like a systemd control group.
  kill -TERM -- "-$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$pidfile"
}

case "$verb" in
  daemon-reload) ;;
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  enable) ((now)) && start ;;
  disable) ((now)) && stop ;;
  is-active)
    if running; then ((quiet)) || echo active; exit 0; fi
    ((quiet)) || echo inactive
    exit 3
    ;;
  status)
    if running; then echo "$unit: active (pid $(cat "$pidfile"))"; else echo "$unit: inactive"; fi
    [[ -f "$logfile" ]] && tail -n 20 "$logfile"
    running
    ;;
  *) echo "fake-systemctl: unsupported: $*" >&2; exit 1 ;;
esac
