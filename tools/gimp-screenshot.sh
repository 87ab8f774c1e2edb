#!/bin/sh
# Screenshots of the brushwork dialogs in real GIMP (GUI under Xvfb, in a chroot from editor-chroot.sh).
#
# Usage: sudo tools/gimp-screenshot.sh ENDPOINT [CHROOT] [OUTDIR]
#   ENDPOINT  a running daemon on loopback TCP, e.g. tcp://127.0.0.1:5557 (`brushwork serve --tcp`)
#   CHROOT    default /var/cache/brushwork/sid (GIMP 3.2); /var/cache/brushwork/trixie has GIMP 3.0
#   OUTDIR    default docs/img
# Writes OUTDIR/gimp-stylize.png, gimp-upscale-image.png, gimp-upscale-selection.png,
# gimp-train-style.png, gimp-settings.png and gimp-stylize-no-daemon.png (the Stylize dialog
# while no daemon answers). One GIMP start opens each dialog on a photo in turn; the script
# captures each window and presses Escape (Cancel) to go to the next.
set -eu
ENDPOINT=$1
DIR=${2:-/var/cache/brushwork/sid}
OUT=${3:-docs/img}
REPO=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
SHARED=${BRUSHWORK_SHARED:-$REPO/../shared}
GIMP=$(cd "$DIR/usr/bin" && ls gimp-3.* 2>/dev/null | sort | tail -1)
[ -n "$GIMP" ] || { echo "no GIMP 3 in $DIR; build it with tools/editor-chroot.sh" >&2; exit 1; }
# a port nobody listens on, for the "no daemon" screenshot
DEAD=tcp://127.0.0.1:$("$PYTHON" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")

JOB=$(mktemp -d "$DIR/var/tmp/brushwork-shot-XXXXXX")
INSIDE=/var/tmp/$(basename "$JOB")
chmod 755 "$JOB"
trap 'rm -rf "$JOB"' EXIT

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

# name, procedure, endpoint: one dialog each, in this order
cat > "$JOB/dialogs" <<EOF
stylize-no-daemon plug-in-brushwork-stylize $DEAD
stylize plug-in-brushwork-stylize $ENDPOINT
upscale-image plug-in-brushwork-upscale-image $ENDPOINT
upscale-selection plug-in-brushwork-upscale-selection $ENDPOINT
train-style plug-in-brushwork-train-style $ENDPOINT
settings plug-in-brushwork-settings $ENDPOINT
EOF

cat > "$JOB/open.py" <<PY
import json, os
import gi
gi.require_version('Gimp', '3.0')
from gi.repository import Gimp, Gio
image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path('$INSIDE/photo.png'))
Gimp.Display.new(image)
Gimp.displays_flush()
for line in open('$INSIDE/dialogs'):
    name, procedure_name, endpoint = line.split()
    with open(os.path.join(Gimp.directory(), 'brushwork.json'), 'w') as f:
        json.dump({'endpoint': endpoint, 'manage_daemon': False}, f)
    image.select_rectangle(Gimp.ChannelOps.REPLACE, 120, 80, 200, 150) if name == 'upscale-selection' \
        else Gimp.Selection.none(image)
    procedure = Gimp.get_pdb().lookup_procedure(procedure_name)
    config = procedure.create_config()
    config.set_property('run-mode', Gimp.RunMode.INTERACTIVE)
    config.set_property('image', image)
    config.set_core_object_array('drawables', image.get_selected_drawables())
    procedure.run(config)
PY

cat > "$JOB/shot.sh" <<SH
#!/bin/sh
export HOME=$INSIDE/home DISPLAY=:77 NO_AT_BRIDGE=1
Xvfb :77 -screen 0 1280x800x24 -nolisten tcp >$INSIDE/xvfb.log 2>&1 &
XPID=\$!
sleep 2
$GIMP --no-splash --batch-interpreter=python-fu-eval -b "exec(open('$INSIDE/open.py').read())" >$INSIDE/gimp.log 2>&1 &
GPID=\$!
STATUS=0
while read NAME PROCEDURE ENDPOINT; do
    W=
    for i in \$(seq 1 120); do
        W=\$(xdotool search --onlyvisible --name "\\\\(brushwork\\\\)\$|^brushwork Settings\$" 2>/dev/null | head -1)
        [ -n "\$W" ] && break
        sleep 1
    done
    if [ -z "\$W" ]; then echo "no dialog for \$NAME; GIMP log:" >&2; cat $INSIDE/gimp.log >&2; STATUS=1; break; fi
    sleep 3
    import -window "\$W" $INSIDE/gimp-\$NAME.png
    xdotool windowfocus --sync "\$W" key Escape   # no window manager: focus it, then type
    while xdotool getwindowname "\$W" >/dev/null 2>&1; do sleep 1; done
done < $INSIDE/dialogs
kill \$GPID; sleep 1; kill -9 \$GPID 2>/dev/null
kill \$XPID
exit \$STATUS
SH
chmod +x "$JOB/shot.sh"

# its own /proc and /dev in a private mount namespace: GIMP 3.2's image loaders need /proc
unshare --mount --fork sh -c "mount -t proc proc '$DIR/proc' && mount --rbind /dev '$DIR/dev' && \
    chroot '$DIR' env -i PATH=/usr/bin:/bin '$INSIDE/shot.sh'"
mkdir -p "$OUT"
for f in "$JOB"/gimp-*.png; do cp "$f" "$OUT/"; echo "wrote $OUT/$(basename "$f")"; done
