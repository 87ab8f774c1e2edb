"""Runs INSIDE GIMP 3 (gimp-console-3.x batch mode, python-fu-eval) for the end-to-end tests.

The batch command execs this file; ``$BRUSHWORK_GIMP_JOB/cases.json`` lists the cases;
each optionally writes the plug-in's settings file or runs its settings procedure, builds an
image from raw pixel files, optionally selects a rectangle, calls one brushwork
procedure through the PDB (non-interactively, or with its dialog when the case says
``interactive``: the dialog tests' probe records and cancels it), and dumps every resulting
image's layers as raw pixels. ``$BRUSHWORK_GIMP_JOB/results.json`` gets status, error message, sizes, the dump
file names and the brushwork plug-in processes still running after the call.
"""

import json
import os
import time

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp  # noqa: E402

PDB = Gimp.get_pdb()
JOB_DIR = os.environ["BRUSHWORK_GIMP_JOB"]


def babl_format(dump, alpha):
    """e.g. {"type": "u16", "linear": False} -> "R'G'B'A u16" (GIMP converts grey layers to and from RGB)."""
    letters = "RGBA" if alpha else "RGB"
    if not dump["linear"]:
        letters = "".join(c + "'" if c != "A" else c for c in letters)
    return f"{letters} {dump['type']}"


def build_image(case):
    gray = case.get("gray", False)
    image = Gimp.Image.new_with_precision(case["width"], case["height"],
                                          Gimp.ImageBaseType.GRAY if gray else Gimp.ImageBaseType.RGB,
                                          getattr(Gimp.Precision, case["precision"]))
    layers = []
    for spec in case["layers"]:
        kind = getattr(Gimp.ImageType, ("GRAY" if gray else "RGB") + ("A" if spec["alpha"] else "") + "_IMAGE")
        layer = Gimp.Layer.new(image, spec["name"], spec["width"], spec["height"], kind, 100,
                               Gimp.LayerMode.NORMAL)
        with open(os.path.join(JOB_DIR, spec["file"]), "rb") as f:
            data = f.read()
        buffer = layer.get_buffer()
        buffer.set(Gegl.Rectangle.new(0, 0, spec["width"], spec["height"]),
                   babl_format(case["dump"], spec["alpha"]), data)
        buffer.flush()
        image.insert_layer(layer, None, len(layers))
        layer.set_offsets(*spec["offset"])
        layers.append(layer)
    if case.get("selection"):
        image.select_rectangle(Gimp.ChannelOps.REPLACE, *case["selection"])
    return image, layers


def run_procedure(name, image, drawables, args, interactive=False):
    procedure = PDB.lookup_procedure(name)
    if procedure is None:
        return "MISSING", f"procedure {name} is not registered", []
    config = procedure.create_config()
    config.set_property("run-mode", Gimp.RunMode.INTERACTIVE if interactive else Gimp.RunMode.NONINTERACTIVE)
    if image is not None:
        config.set_property("image", image)
        config.set_core_object_array("drawables", drawables)
    for key, value in args.items():
        config.set_property(key, value)
    result = procedure.run(config)
    status = result.index(0).value_name.replace("GIMP_PDB_", "")
    if status != "SUCCESS":
        return status, PDB.get_last_error(), []
    returned = [result.index(i) for i in range(1, result.length())]
    return status, "", [v.get_id() if isinstance(v, (Gimp.Item, Gimp.Image)) else v for v in returned]


def dump_image(image, case, tag):
    layers = []
    for i, layer in enumerate(image.get_layers()):
        w, h = layer.get_width(), layer.get_height()
        name = f"{case['name']}-{tag}-{i}.raw"
        data = layer.get_buffer().get(Gegl.Rectangle.new(0, 0, w, h), 1.0,
                                      babl_format(case["dump"], layer.has_alpha()), Gegl.AbyssPolicy.CLAMP)
        with open(os.path.join(JOB_DIR, name), "wb") as f:
            f.write(data)
        layers.append({"id": layer.get_id(), "name": layer.get_name(), "width": w, "height": h, "offsets": list(layer.get_offsets()[1:]),
                       "alpha": layer.has_alpha(), "file": name})
    return {"id": image.get_id(), "width": image.get_width(), "height": image.get_height(),
            "precision": image.get_precision().value_name.replace("GIMP_PRECISION_", ""),
            "selection_empty": Gimp.Selection.is_empty(image), "layers": layers}


def plug_ins_left(wait_s=5.0):
    """Ids of brushwork plug-in processes still running, after waiting up to ``wait_s`` for them to end."""
    deadline = time.monotonic() + wait_s
    while True:
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if b"plug-ins/brushwork/brushwork.py" in f.read():
                        found.append(int(pid))
            except OSError:  # it ended meanwhile
                pass
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def run_case(case):
    if case.get("settings_file"):   # as a user would edit it; stays for the later cases
        os.makedirs(Gimp.directory(), exist_ok=True)
        with open(os.path.join(Gimp.directory(), "brushwork.json"), "w") as f:
            json.dump(case["settings_file"], f)
    if case.get("settings"):
        status, message, _ = run_procedure("plug-in-brushwork-settings", None, [], case["settings"])
        if status != "SUCCESS":
            return {"status": "SETTINGS-" + status, "error": message}
    image, layers = build_image(case)
    if os.environ.get("BRUSHWORK_DIALOG_PROBE"):  # tells the dialog probe which case this is
        with open(os.path.join(os.environ["BRUSHWORK_DIALOG_PROBE"], "case"), "w") as f:
            f.write(case["name"])
    before = {img.get_id() for img in Gimp.get_images()}
    start = time.monotonic()
    status, message, returned = run_procedure(case["procedure"], image, [layers[i] for i in case["active"]],
                                              case["args"], case.get("interactive", False))
    seconds = time.monotonic() - start
    left = plug_ins_left()
    new_images = [img for img in Gimp.get_images() if img.get_id() not in before]
    result = {"status": status, "error": message, "seconds": seconds, "returned": returned, "plug_ins_left": left,
              "image": dump_image(image, case, "image"),
              "new_images": [dump_image(img, case, f"new{i}") for i, img in enumerate(new_images)]}
    for img in [image, *new_images]:
        img.delete()
    return result


with open(os.path.join(JOB_DIR, "cases.json")) as f:
    CASES = json.load(f)
RESULTS = {}
for CASE in CASES:
    try:
        RESULTS[CASE["name"]] = run_case(CASE)
    except Exception as e:  # report and go on: one broken case must not hide the others
        RESULTS[CASE["name"]] = {"status": "DRIVER-ERROR", "error": f"{type(e).__name__}: {e}"}
with open(os.path.join(JOB_DIR, "results.json"), "w") as f:
    json.dump(RESULTS, f, indent=1)
