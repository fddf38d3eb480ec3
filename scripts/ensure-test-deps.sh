#!/usr/bin/env bash
# What `npm test` needs beyond npm packages: util-linux (flock, setpriv), a
# ZooKeeper server (the Debian package, which brings Java), wrk (the
# keep-alive load of the drain tests) and iproute2 (ip, for the network
# namespaces of the Bun load tests). Installed with
# apt when missing and running as root; otherwise says what to install.
set -euo pipefail
missing=()
command -v flock >/dev/null && command -v setpriv >/dev/null || missing+=(util-linux)
dpkg -s libzookeeper-java >/dev/null 2>&1 || missing+=(zookeeper)
command -v wrk >/dev/null || missing+=(wrk)
command -v ip >/dev/null || missing+=(iproute2)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "npm test: installing ${missing[*]} (apt-get)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "npm test needs: ${missing[*]} (Debian/Ubuntu: sudo apt-get install -y ${missing[*]})" >&2
  exit 1
fi
