#!/usr/bin/env bash
# Installs the Debian packages the lab needs when run as root, or names what is missing.
set -euo pipefail
missing=()
for p in "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(uname -s)" != Linux ]; then
  echo "ironlb's lab needs Linux network namespaces; this is $(uname -s). Unit tests: go test ./..." >&2
  exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${missing[*]}" >&2
  echo "install them as root:  sudo apt-get install -y ${missing[*]}   (or run make as root)" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null; then
  echo "missing packages ${missing[*]} and no apt-get to install them (the lab targets Debian 12)" >&2
  exit 1
fi
echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# FRR's package starts its own daemons in the root namespace; the lab runs its own per namespace.
if [[ " ${missing[*]} " == *" frr "* ]]; then systemctl disable --now frr >/dev/null 2>&1 || true; fi
if [[ " ${missing[*]} " == *" bird2 "* ]]; then systemctl disable --now bird >/dev/null 2>&1 || true; fi
# nginx is the Ingress benchmark's yardstick, run per namespace; not a root-namespace web server.
if [[ " ${missing[*]} " == *" nginx "* ]]; then systemctl disable --now nginx >/dev/null 2>&1 || true; fi
