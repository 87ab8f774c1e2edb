#!/bin/sh
# Screenshot a brushwork dialog in real GIMP 3 under Xvfb (inside a chroot from editor-chroot.sh).
#
# Usage: sudo tools/gimp-screenshot.sh ENDPOINT [PROCEDURE] [OUT.png] [CHROOT]
#   ENDPOINT   a running daemon on loopback TCP, e.g. tcp://127.0.0.1:5557 (`brushwork serve --tcp`)
#   PROCEDURE  default plug-in-brushwork-stylize
#   OUT.png    default docs/img/gimp-dialog.png
set -eu
ENDPOINT=$1
PROCEDURE=${2:-plug-in-brushwork-stylize}
OUT=${3:-docs/img/gimp-dialog.png}
DIR=${4:-/var/cache/brushwork/trixie}
REPO=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
SHARED=${BRUSHWORK_SHARED:-$REPO/../shared}

JOB=$(mktemp -d "$DIR/tmp/brushwork-shot-XXXXXX")
INSIDE=/tmp/$(basename "$JOB")
chmod 755 "$JOB"
cleanup() {
    for m in dev/pts dev sys proc; do
        if mountpoint -q "$DIR/$m"; then umount "$DIR/$m"; fi
    done
    rm -rf "$JOB"
}
trap cleanup EXIT

"$PYTHON" - "$JOB" "$DIR" "$SHARED" <<'PY'
import sys
from PIL import Image
sys.path.insert(0, ".")
from plugin_gimp.installer import install
job, root, shared = sys.argv[1:]
with Image.open(f"{shared}/data/content/chicago.jpg") as im:
    im.thumbnail((480, 360))
    im.save(f"{job}/photo.png")
install(home=f"{job}/home", python=["chroot", root, "python3"])
PY

cat > "$JOB/open.py" <<PY
import gi
gi.require_version('Gimp', '3.0')
from gi.repository import Gimp, Gio
image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path('$INSIDE/photo.png'))
Gimp.Display.new(image)
Gimp.displays_flush()
procedure = Gimp.get_pdb().lookup_procedure('$PROCEDURE')
config = procedure.create_config()
config.set_property('run-mode', Gimp.RunMode.INTERACTIVE)
config.set_property('image', image)
config.set_core_object_array('drawables', image.get_selected_drawables())
procedure.run(config)
PY

cat > "$JOB/shot.sh" <<SH
#!/bin/sh
export HOME=$INSIDE/home DISPLAY=:77 NO_AT_BRIDGE=1 BRUSHWORK_ENDPOINT=$ENDPOINT
Xvfb :77 -screen 0 1280x800x24 -nolisten tcp >$INSIDE/xvfb.log 2>&1 &
XPID=\$!
sleep 2
gimp-3.0 --no-splash --batch-interpreter=python-fu-eval -b "exec(open('$INSIDE/open.py').read())" >$INSIDE/gimp.log 2>&1 &
GPID=\$!
W=
for i in \$(seq 1 90); do
    W=\$(xdotool search --name "\\(brushwork\\)\$|^brushwork Settings\$" 2>/dev/null | head -1)
    [ -n "\$W" ] && break
    sleep 1
done
sleep 3
[ -n "\$W" ] && import -window "\$W" $INSIDE/dialog.png
kill \$GPID; sleep 1; kill -9 \$GPID 2>/dev/null
kill \$XPID
[ -n "\$W" ] || { echo "no brushwork dialog appeared; GIMP log:" >&2; cat $INSIDE/gimp.log >&2; exit 1; }
SH
chmod +x "$JOB/shot.sh"

for m in proc sys dev dev/pts; do
    if ! mountpoint -q "$DIR/$m"; then mount --bind "/$m" "$DIR/$m"; fi
done
chroot "$DIR" env -i PATH=/usr/bin:/bin "$INSIDE/shot.sh"
mkdir -p "$(dirname "$OUT")"
cp "$JOB/dialog.png" "$OUT"
echo "wrote $OUT"
