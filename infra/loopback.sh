#!/usr/bin/env bash
# Run CMD... inside a loopback-only network namespace when possible (root + unshare),
# so Ray and the local S3 server cannot reach anything outside 127.0.0.0/8.
# Otherwise run CMD... directly, with a note on stderr.
set -euo pipefail
if [ "$#" -eq 0 ]; then
  echo "usage: infra/loopback.sh CMD [ARGS...]" >&2
  exit 2
fi
export RAY_AUTH_MODE=disabled
export AWS_EC2_METADATA_DISABLED=true
export RAY_USAGE_STATS_ENABLED=0
if [ "$(id -u)" -eq 0 ] && command -v unshare >/dev/null 2>&1 && command -v ip >/dev/null 2>&1 \
   && unshare -n true 2>/dev/null; then
  exec unshare -n sh -c 'ip link set lo up && exec "$@"' sh "$@"
fi
echo "loopback.sh: no loopback-only namespace here (needs root, unshare and ip); running directly" >&2
exec "$@"
