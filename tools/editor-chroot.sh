#!/bin/sh
# Build (or refresh) a Debian chroot with real Krita and GIMP 3 for brushwork's end-to-end tests.
#
# Usage: sudo tools/editor-chroot.sh SUITE [DIR]     SUITE: trixie | sid | experimental
#        sudo tools/editor-chroot.sh --unmount DIR
#
#   trixie        Krita 5.2 (PyQt5), GIMP 3.0
#   sid           Krita 5.3 (PyQt5), GIMP 3.2
#   experimental  Krita 6.0 (Qt 6, PyQt6), GIMP from sid
# Krita 5.1 needs no chroot: it is Debian 12's own package (`make editors` installs it).
#
# DIR defaults to /var/cache/brushwork/SUITE. Idempotent: an existing chroot is reused and only
# missing packages are installed, so CI on the same machine pays the build (about 2 minutes and
# 2 GB a suite) once. The chroot shares the host's network and its /tmp is the host's /tmp
# (bind-mounted while a test runs), so a daemon on the host is reachable over TCP and IPC.
set -eu

unmount=0
if [ "${1:-}" = "--unmount" ]; then unmount=1; shift; fi
SUITE=${1:?usage: editor-chroot.sh SUITE [DIR]}
DIR=${2:-/var/cache/brushwork/$SUITE}
if [ "$unmount" = 1 ]; then DIR=$SUITE; fi
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PACKAGES="krita python3-zmq xvfb xauth xdotool imagemagick gimp python3-gi"

umount_all() {
    for m in tmp dev/shm dev/pts dev sys proc; do
        if mountpoint -q "$DIR/$m"; then umount "$DIR/$m" || umount -l "$DIR/$m"; fi
    done
}

if [ "$unmount" = 1 ]; then umount_all; exit 0; fi

case "$SUITE" in
    # KRITA_QT: what Krita's packages only recommend: its Python's Qt binding (and Qt 6's SVG icon plug-in)
    trixie|sid) BASE=$SUITE; KRITA_FROM=""; KRITA_QT=python3-pyqt5 ;;
    experimental) BASE=sid; KRITA_FROM="-t experimental"; KRITA_QT="python3-pyqt6 qt6-svg-plugins" ;;
    *) echo "editor-chroot.sh: unknown suite '$SUITE' (trixie, sid or experimental)" >&2; exit 2 ;;
esac

if [ "$(id -u)" != 0 ]; then
    echo "editor-chroot.sh: must run as root (debootstrap and chroot need it)" >&2
    exit 1
fi
if ! command -v debootstrap >/dev/null 2>&1; then
    apt-get install -y --no-install-recommends debootstrap
fi

if [ ! -x "$DIR/usr/bin/apt-get" ]; then
    echo "editor-chroot.sh: debootstrap $BASE into $DIR"
    rm -rf "$DIR.partial"
    mkdir -p "$DIR.partial"
    debootstrap --variant=minbase "$BASE" "$DIR.partial" "$MIRROR"
    mv "$DIR.partial" "$DIR"
fi

# sid's and experimental's Release files can read as expired against a machine's clock
echo 'Acquire::Check-Valid-Until "false";' > "$DIR/etc/apt/apt.conf.d/99brushwork-no-valid-until"
if [ "$SUITE" = experimental ]; then
    echo "deb $MIRROR experimental main" > "$DIR/etc/apt/sources.list.d/experimental.list"
fi

trap umount_all EXIT
for m in proc sys dev dev/pts; do
    if ! mountpoint -q "$DIR/$m"; then mount --bind "/$m" "$DIR/$m"; fi
done
cp /etc/resolv.conf "$DIR/etc/resolv.conf"

missing=""
for p in $PACKAGES $KRITA_QT; do
    if ! chroot "$DIR" dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
if [ -n "$missing" ]; then
    echo "editor-chroot.sh: installing$missing"
    chroot "$DIR" apt-get update -q
    export DEBIAN_FRONTEND=noninteractive
    if [ -n "$KRITA_FROM" ]; then
        # Krita 6 and its Qt 6 Python binding from experimental, the rest from sid
        chroot "$DIR" apt-get install -y -q --no-install-recommends $KRITA_FROM krita $KRITA_QT
    fi
    chroot "$DIR" apt-get install -y -q --no-install-recommends $missing
    chroot "$DIR" apt-get clean
fi

chroot "$DIR" sh -c 'dpkg-query -W -f="\${Package} \${Version}\n" krita gimp'
echo "editor-chroot.sh: ready at $DIR"
