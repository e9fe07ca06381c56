#!/bin/sh
# Runs one entry point of this release with its Node 24: $CWS_NODE when the operator named one
# in cws.env, else the runtime the updater installed in the release (runtime/node_modules/.bin/node).
# The wrappers in /usr/local/bin (cws-server, cws-agent) call this through <install>/current.
# Usage: run.sh cws-server|cws-agent [arguments]
set -eu
release=$(cd -P "$(dirname "$0")/../.." && pwd)
node=${CWS_NODE:-$release/runtime/node_modules/.bin/node}
case "${1:-}" in
  cws-server) entry=server-agent/server-main.mjs ;;
  cws-agent) entry=server-agent/agent/main.mjs ;;
  *) echo "run.sh: name the entry point: cws-server or cws-agent" >&2; exit 2 ;;
esac
shift
# Device keys written by enrollment must name paths that survive updates (authorized-keys.ts).
if [ -n "${CWS_INSTALL_DIR:-}" ]; then
  CWS_STABLE_ROOT="$CWS_INSTALL_DIR/current"
  CWS_STABLE_NODE=${CWS_NODE:-$CWS_INSTALL_DIR/current/runtime/node_modules/.bin/node}
  export CWS_STABLE_ROOT CWS_STABLE_NODE
fi
exec "$node" "$release/$entry" "$@"
