#!/bin/sh
# Build (or refresh) a Debian trixie chroot with GIMP 3 for brushwork's end-to-end GIMP tests.
#
# Usage: sudo tools/gimp-chroot.sh [DIR]      (default /var/cache/brushwork/trixie)
#        sudo tools/gimp-chroot.sh --unmount [DIR]
#
# Idempotent: an existing chroot is reused and only missing packages are installed.
# Debian 12 ships only GIMP 2.10, which cannot run Python 3 plug-ins; trixie has GIMP 3.
# The tests run GIMP with `chroot DIR gimp-console-3.0 ...`; the chroot shares the host's
# network, so GIMP reaches a daemon on tcp://127.0.0.1.
set -eu

unmount=0
if [ "${1:-}" = "--unmount" ]; then unmount=1; shift; fi
DIR=${1:-/var/cache/brushwork/trixie}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PACKAGES="gimp python3-zmq xvfb xauth xdotool imagemagick"

umount_all() {
    for m in dev/pts dev sys proc; do
        if mountpoint -q "$DIR/$m"; then umount "$DIR/$m"; fi
    done
}

if [ "$unmount" = 1 ]; then umount_all; exit 0; fi

if [ "$(id -u)" != 0 ]; then
    echo "gimp-chroot.sh: must run as root (debootstrap and chroot need it)" >&2
    exit 1
fi

if ! command -v debootstrap >/dev/null 2>&1; then
    apt-get install -y --no-install-recommends debootstrap
fi

if [ ! -x "$DIR/usr/bin/apt-get" ]; then
    echo "gimp-chroot.sh: debootstrap trixie into $DIR"
    mkdir -p "$DIR"
    debootstrap --variant=minbase trixie "$DIR" "$MIRROR"
fi

trap umount_all EXIT
for m in proc sys dev dev/pts; do
    if ! mountpoint -q "$DIR/$m"; then mount --bind "/$m" "$DIR/$m"; fi
done
cp /etc/resolv.conf "$DIR/etc/resolv.conf"

missing=""
for p in $PACKAGES; do
    if ! chroot "$DIR" dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
if [ -n "$missing" ]; then
    echo "gimp-chroot.sh: installing$missing"
    chroot "$DIR" apt-get update
    chroot "$DIR" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing
    chroot "$DIR" apt-get clean
fi

chroot "$DIR" gimp-console-3.0 --version
echo "gimp-chroot.sh: ready at $DIR"
