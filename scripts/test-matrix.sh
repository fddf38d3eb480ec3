#!/usr/bin/env bash
# `npm run test:matrix`: the README's test command, `npm test`, once per runtime.
#
# 1. The machine's Node, fixtures under Node and under Bun (the `bun` dev dependency);
#    then the host-singleton test files without util-linux (npm run test:without-util-linux).
# 2. Each Node of BW_TEST_NODES (default "22 24": a major picks its newest
#    release, an exact version is taken as is), fixtures under that Node only
#    (BW_TEST_RUNTIMES=node; run 1 covers Bun). The official Linux/macOS
#    builds come from the npm registry as node-<platform>-<arch> packages,
#    kept in BW_NODE_CACHE/<version> and used again from there on later runs.
#    BW_NODE_CACHE defaults to ~/.cache/bellwether/node, or as root to
#    /var/cache/bellwether/node: as root some tests run fixtures as nobody,
#    who must be able to run that Node (/root is closed to other users).
#
# Native dev dependencies (fs-ext) are built for one Node ABI: they are rebuilt
# against each Node's own headers (shipped in the package: no header download)
# and, however the runs end, rebuilt for the machine's Node at the end.
# Every runtime runs even after a failure; the script fails if any run failed.
set -euo pipefail
cd "$(dirname "$0")/.."

read -r -a node_specs <<<"${BW_TEST_NODES-22 24}"
if [ "$(id -u)" = 0 ]; then default_cache=/var/cache/bellwether/node; else default_cache="${XDG_CACHE_HOME:-$HOME/.cache}/bellwether/node"; fi
cache="${BW_NODE_CACHE:-$default_cache}"
machine_path="$PATH"
machine_node="$(node --version)"
package="node-$(node -p 'process.platform + "-" + process.arch')"

say() { printf '\n=== test-matrix: %s\n' "$*"; }

# Packages with a native build (a binding.gyp beside their package.json).
native=()
while IFS= read -r gyp; do
  dir="$(dirname "$gyp")"
  [ -f "$dir/package.json" ] || continue
  name="$(node -p 'require(process.argv[1]).name' "$PWD/$dir/package.json")"
  [[ " ${native[*]} " == *" $name "* ]] || native+=("$name")
done < <(find node_modules -name binding.gyp -not -path '*/node_modules/.bin/*' 2>/dev/null | sort)

# Whether every native package loads under the `node` first on PATH.
native_loads() {
  local name
  for name in "${native[@]}"; do
    node -e 'require(process.argv[1])' "$name" 2>/dev/null || return 1
  done
}

# Rebuilds the native packages for the `node` first on PATH; $1: that Node's headers, if any.
rebuild_native() {
  [ ${#native[@]} -gt 0 ] || return 0
  local args=()
  [ -z "${1:-}" ] || args+=("--nodedir=$1")
  echo "rebuilding ${native[*]} for Node $(node --version)"
  npm rebuild "${native[@]}" "${args[@]}" >/dev/null || return 1
  native_loads || { echo "${native[*]}: rebuilt, but not loadable under Node $(node --version)" >&2; return 1; }
}

# However the script ends (a failed run, an error, Ctrl-C): native builds for the machine's Node again.
built_for_other=0
finish() {
  local status=$?
  if [ $built_for_other = 1 ]; then
    say "restoring ${native[*]} for the machine's Node ($machine_node)"
    PATH="$machine_path" rebuild_native "" || status=1
  fi
  exit $status
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Prints the directory of an official Node build for a version or major ($1), fetching it once.
node_dir() {
  local spec="$1" version="" dir tmp
  version="$(npm view "$package@$spec" version --json 2>/dev/null |
    node -e 'const v = [].concat(JSON.parse(require("fs").readFileSync(0, "utf8") || "[]")); console.log(v.join("\n"))' |
    sort -V | tail -n 1)" || version=""
  if [ -z "$version" ]; then
    # Offline: the newest cached build of that version or major.
    version="$(find "$cache" -mindepth 1 -maxdepth 1 -type d \( -name "$spec" -o -name "$spec.*" \) -printf '%f\n' 2>/dev/null | sort -V | tail -n 1)" || true
    [ -n "$version" ] || { echo "no $package@$spec: not in the npm registry (or it is unreachable), none cached in $cache" >&2; return 1; }
  fi
  dir="$cache/$version"
  if [ -x "$dir/bin/node" ]; then
    echo "Node $version: cached in $dir" >&2
  else
    echo "Node $version: fetching $package@$version from the npm registry" >&2
    # Readable by every user (umask 022); npm pack only downloads the tarball: no install scripts run.
    # Unpacked beside the cache, then moved in whole: a cached directory is always complete.
    (umask 022 && mkdir -p "$cache") && tmp="$(mktemp -d "$cache/.fetch.XXXXXX")" || return 1
    (
      umask 022
      cd "$tmp" && npm pack "$package@$version" --silent >/dev/null &&
        mkdir node && tar -xzf ./*.tgz --strip-components=1 --no-same-owner -C node &&
        { mv -T node "$dir" 2>/dev/null || [ -x "$dir/bin/node" ]; }
    ) || { rm -rf "$tmp"; return 1; }
    rm -rf "$tmp"
  fi
  [ -f "$dir/include/node/common.gypi" ] || { echo "$dir has no include/node headers" >&2; return 1; }
  echo "$dir"
}

results=()
failed=0
# $1: label; then the environment and command of one run.
run() {
  local label="$1" start status=0
  shift
  say "$label"
  start=$SECONDS
  env "$@" || status=$?
  local took=$((SECONDS - start))
  if [ $status -eq 0 ]; then results+=("ok      $label  ${took}s"); else results+=("FAILED  $label  ${took}s (exit $status)"); failed=1; fi
}

label="Node $machine_node (the machine's), fixtures under node and bun"
# A run stopped the hard way (SIGKILL) may have left native builds for another Node.
if native_loads || rebuild_native ""; then
  run "$label" npm test
  # The host lock as on an image without util-linux (flock and setpriv hidden; root and unshare needed).
  run "Node $machine_node, host-singleton tests without util-linux, fixtures under node and bun" npm run test:without-util-linux
else
  say "$label: could not set up"
  results+=("FAILED  $label  (set-up)")
  failed=1
fi

for spec in "${node_specs[@]}"; do
  label="Node $spec, fixtures under node only"
  set_up=0
  if dir="$(node_dir "$spec")"; then
    label="Node $("$dir/bin/node" --version), fixtures under node only"
    [ ${#native[@]} = 0 ] || built_for_other=1
    PATH="$dir/bin:$machine_path" rebuild_native "$dir" && set_up=1
  fi
  if [ $set_up = 1 ]; then
    run "$label" PATH="$dir/bin:$machine_path" BW_TEST_RUNTIMES=node npm test
  else
    say "$label: could not set up"
    results+=("FAILED  $label  (set-up)")
    failed=1
  fi
done

say "summary"
printf '%s\n' "${results[@]}"
exit $failed
