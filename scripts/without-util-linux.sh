#!/usr/bin/env bash
# Runs a command as on a host without util-linux (a distroless or Alpine
# image): flock(1) and setpriv(1) are hidden from the system directories,
# where bellwether looks for them, by mounting an empty file over each in a
# private mount namespace (needs root and unshare(1); nothing outside the
# command sees it). The tests' own copies, for an operator holding a lock
# by hand and for fixtures' parent-death signals, are in $BW_TEST_TOOLS
# (made here, or given: a directory with flock, setpriv and an empty file).
#   scripts/without-util-linux.sh [--hide FILE]... [--] COMMAND [ARG]...
# --hide hides more files the same way (a native module, to see it fail).
set -euo pipefail
hide=()
for dir in /usr/bin /bin /usr/sbin /sbin; do
  for name in flock setpriv; do [ -f "$dir/$name" ] && hide+=("$dir/$name"); done
done
while [ "${1:-}" = --hide ]; do hide+=("$2"); shift 2; done
[ "${1:-}" = -- ] && shift
[ $# -gt 0 ] || { echo "usage: $0 [--hide FILE]... [--] COMMAND [ARG]..." >&2; exit 64; }
# The namespace's own bash mounts, then execs the command: with BW_TEST_TOOLS
# set by the caller (a test, which removes it), this script execs all the
# way, so the command keeps this process's pid and parent-death signal.
mount_and_exec() {
  # shellcheck disable=SC2016
  exec unshare --mount --propagation private -- bash -c '
    count=$1; shift
    for file in "${@:1:$count}"; do mount --bind "$BW_TEST_TOOLS/empty" "$file"; done
    shift "$count"
    exec "$@"' bash "${#hide[@]}" "${hide[@]}" "$@"
}
if [ -n "${BW_TEST_TOOLS:-}" ]; then mount_and_exec "$@"; fi
BW_TEST_TOOLS=$(mktemp -d /tmp/bw-tools-XXXXXX)
export BW_TEST_TOOLS
trap 'rm -rf "$BW_TEST_TOOLS"' EXIT
chmod 755 "$BW_TEST_TOOLS"
cp "$(command -v flock)" "$(command -v setpriv)" "$BW_TEST_TOOLS/"
: > "$BW_TEST_TOOLS/empty"
(mount_and_exec "$@")
