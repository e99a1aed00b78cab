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
case "$PWD/" in "$ROOT"/*) CWD=$PWD ;; *) CWD=$ROOT ;; esac

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
D=$1 ROOT=$2 CWD=$3; shift 3
mount --make-rprivate /
mount -t proc proc "$D/proc"
mount --rbind /dev "$D/dev"
mount --rbind /sys "$D/sys"
mount --bind /tmp "$D/tmp"
[ -d "$D$ROOT" ] || mkdir -p "$D$ROOT"
mount --bind "$ROOT" "$D$ROOT"
exec chroot "$D" /bin/sh -c "cd \"\$0\" && exec \"\$@\"" "$CWD" "$@"
' sh "$DIR" "$ROOT" "$CWD" /usr/bin/env -i "${ENVS[@]}" "$@"
