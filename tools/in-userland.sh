#!/usr/bin/env bash
# Run a command inside the Debian 13 userland (tools/userland.sh builds it on first use), with the
# checkout bind-mounted at the same absolute path and the current directory kept:
#
#   tools/in-userland.sh python3 --version
#   tools/in-userland.sh make test
#
# Private mount and pid namespaces (as root no user namespace, otherwise one that maps this user to
# root: see below), proc mounted, /dev, /sys and the host's /tmp bound
# (temporary files land where they would natively, not in .userland/). The mounts go away
# with the command. The environment is the caller's minus host-only paths (PATH, pyenv, venv,
# PIP_FIND_LINKS/PIP_CONFIG_FILE pointing at host folders, LD_*); HOME is /root inside (rootless: .userland-home/ in the checkout).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=${USERLAND_DIR:-$ROOT/.userland}
"$ROOT/tools/userland.sh"

[ $# -gt 0 ] || set -- /bin/bash
# Host folders where users keep data (images, serving directories, configs) appear at the same
# paths inside, so `tools/in-userland.sh .venv/bin/image-pipeline run --data-root ~/images` works
# from anywhere under them; the current directory is kept when it is visible inside.
HOST_DIRS="/home /mnt /media /srv /data /work"
CWD=$ROOT
for visible in "$ROOT" /tmp $HOST_DIRS; do
	case "$PWD/" in "$visible"/*) CWD=$PWD ;; esac
done

ENVS=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 IN_USERLAND=1)
while IFS= read -r -d '' kv; do
	case "${kv%%=*}" in
	PATH | HOME | LANG | IN_USERLAND | PWD | OLDPWD | SHLVL | _ | VIRTUAL_ENV | PYTHONHOME | PYTHONPATH | LD_LIBRARY_PATH | LD_PRELOAD) ;;
	PYENV* | PIP_FIND_LINKS | PIP_CONFIG_FILE | PIP_EXTRA_INDEX_URL | BASH_FUNC_*) ;;
	*) ENVS+=("$kv") ;;
	esac
done < <(env -0)

# util-linux unshare (it keeps the command's exit status). As root: no user namespace. Otherwise
# (a rootless tree, owned by this user's subuids) a user namespace that maps only this user, to
# root: the checkout stays writable (files land owned by this user), the tree is read-only, HOME is
# .userland-home/ in the checkout (the tree's /root is not ours), and the mount point for the
# checkout is made once in the tree with mmdebstrap's helper (which maps the subuids).
if [ "$(id -u)" = 0 ]; then
	NS=(unshare --mount --pid --fork --propagation private)
else
	[ -d "$DIR$ROOT" ] || mmdebstrap --unshare-helper mkdir -p "$DIR$ROOT"
	mkdir -p "$ROOT/.userland-home"
	ENVS=("${ENVS[@]/#HOME=\/root/HOME=$ROOT/.userland-home}")
	NS=(unshare --map-root-user --mount --pid --fork --propagation private)
fi
# shellcheck disable=SC2016
exec "${NS[@]}" /bin/sh -euc '
D=$1 ROOT=$2 CWD=$3 HOST_DIRS=$4; shift 4
mount --make-rprivate /
mount -t proc proc "$D/proc"
mount --rbind /dev "$D/dev"
mount --rbind /sys "$D/sys"
mount --bind /tmp "$D/tmp"
for host in $HOST_DIRS; do
	if [ -d "$host" ] && mkdir -p "$D$host" 2>/dev/null; then
		mount --rbind "$host" "$D$host" || echo "in-userland.sh: $host not visible inside" >&2
	fi
done
# The names of the host (the /etc/hosts of the tree is the Debian default, without this machine): the
# userland shares the network of the host, and the portable workers of Beam dial the job service at
# socket.getfqdn() (apache_beam/runners/portability/fn_api_runner/worker_handlers.py,
# ExternalWorkerHandler.host_from_worker; tests/pipeline/local/test_portable_runner.py).
if [ -f /etc/hosts ] && [ -f "$D/etc/hosts" ]; then
	mount --bind /etc/hosts "$D/etc/hosts" || echo "in-userland.sh: /etc/hosts not bound: this machine may not resolve its own name" >&2
fi
# Debian data set packages installed on the host (dataset-fashion-mnist: benchmarks/vs_notebook.py).
if [ -d /usr/share/datasets ] && mkdir -p "$D/usr/share/datasets" 2>/dev/null; then
	mount --bind /usr/share/datasets "$D/usr/share/datasets"
fi
[ -d "$D$ROOT" ] || mkdir -p "$D$ROOT"
mount --bind "$ROOT" "$D$ROOT"
exec chroot "$D" /bin/sh -c "cd \"\$0\" && exec \"\$@\"" "$CWD" "$@"
' sh "$DIR" "$ROOT" "$CWD" "$HOST_DIRS" /usr/bin/env -i "${ENVS[@]}" "$@"
