#!/usr/bin/env bash
# Build a Debian 13 (trixie) userland under the checkout, once, for hosts whose glibc is older than
# TFX 1.21's manylinux_2_39 wheels (ml-metadata, tensorflow-data-validation) need.
#
#   tools/userland.sh            build .userland/ if it is missing or its package list changed
#   USERLAND_DIR=/x tools/userland.sh
#
# Prefers `mmdebstrap --mode=unshare` (rootless: needs newuidmap and a /etc/subuid range for the
# caller; as root it needs neither and unshares no user namespace); falls back to `--mode=root`
# when that fails and we are root. The mode that worked is recorded in $USERLAND_DIR/.userland-mode.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=${USERLAND_DIR:-$ROOT/.userland}
SUITE=${USERLAND_SUITE:-trixie}
MIRROR=${USERLAND_MIRROR:-http://deb.debian.org/debian}
# python3-dev and g++: pyfarmhash has no cp313 wheel and builds from source.
# libgl1, libglib2.0-0: for wheels that dlopen them (none of the pinned stack does today).
# chromium: the HTML report's headless-browser test. make, git: `make` targets run in here.
PACKAGES=${USERLAND_PACKAGES:-python3,python3-venv,python3-dev,g++,make,git,ca-certificates,libgl1,libglib2.0-0,chromium,fonts-dejavu-core}
KEY="$SUITE $MIRROR $PACKAGES"

if [ -f "$DIR/.userland-built" ] && [ "$(cat "$DIR/.userland-built")" = "$KEY" ]; then
	exit 0
fi

command -v mmdebstrap >/dev/null || {
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		echo "userland: installing mmdebstrap with apt-get" >&2
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap uidmap >/dev/null
	else
		echo "userland: mmdebstrap not found (apt-get install mmdebstrap uidmap)" >&2
		exit 1
	fi
}

TMP="$DIR.tmp"
rm -rf "$TMP"
echo "userland: building Debian $SUITE in $DIR (once; about a minute and 1 GB)" >&2
start=$(date +%s)
mode=unshare
if ! mmdebstrap --mode=unshare --variant=apt --include="$PACKAGES" "$SUITE" "$TMP" "$MIRROR" >"$DIR.log" 2>&1; then
	echo "userland: --mode=unshare failed: $(grep -m1 -iE 'error|E:' "$DIR.log" || tail -n1 "$DIR.log")" >&2
	# A failed unshare run can leave files owned by subuids: remove them from inside the namespace.
	rm -rf "$TMP" 2>/dev/null || mmdebstrap --unshare-helper rm -rf "$TMP" || true
	if [ "$(id -u)" != 0 ]; then
		echo "userland: not root, so no fallback: add a range for $(id -un) to /etc/subuid and /etc/subgid" >&2
		exit 1
	fi
	echo "userland: falling back to --mode=root" >&2
	mode=root
	mmdebstrap --mode=root --variant=apt --include="$PACKAGES" "$SUITE" "$TMP" "$MIRROR" >>"$DIR.log" 2>&1 ||
		{ echo "userland: mmdebstrap failed; see $DIR.log" >&2; exit 1; }
fi

# Network and TLS as on the host: DNS, and the host's CA bundle (a TLS-intercepting proxy's CA is
# only in the host's bundle; pip fails with CERTIFICATE_VERIFY_FAILED without it).
# Rootless (unshare as non-root) trees are owned by subuids: write into them from the namespace.
as_owner() { if [ "$mode" = root ] || [ "$(id -u)" = 0 ]; then "$@"; else mmdebstrap --unshare-helper "$@"; fi; }
as_owner cp -L /etc/resolv.conf "$TMP/etc/resolv.conf"
as_owner cp -L /etc/ssl/certs/ca-certificates.crt "$TMP/etc/ssl/certs/ca-certificates.crt"
as_owner sh -c 'echo "$1" >"$2/.userland-mode"; echo "$3" >"$2/.userland-built"' sh "$mode" "$TMP" "$KEY"

rm -rf "$DIR"
mv "$TMP" "$DIR"
secs=$(($(date +%s) - start))
size=$(du -sh --one-file-system "$DIR" 2>/dev/null | cut -f1 || true)  # rootless: some folders are unreadable to us
echo "userland: built in ${secs} s with --mode=$mode ($( [ "$(id -u)" = 0 ] && echo "as root: no user namespace" || echo rootless)), $size" >&2
