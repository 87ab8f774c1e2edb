#!/usr/bin/env python3
"""brushwork for GIMP 3: neural style transfer and super-resolution through the brushwork daemon.

Procedures (each runs interactively with a dialog, or non-interactively from the PDB):
    plug-in-brushwork-upscale-image      Image > brushwork > Upscale Image…
    plug-in-brushwork-upscale-selection  Image > brushwork > Upscale Selection…
    plug-in-brushwork-stylize            Filters > brushwork > Stylize…
    plug-in-brushwork-train-style        Filters > brushwork > Train Style from Selection…
    plug-in-brushwork-settings           Filters > brushwork > Settings…

This is the entry file GIMP runs (it must be named like its folder, ``brushwork/brushwork.py``):
it registers the procedures, shows a procedure's dialog when it runs interactively and turns
the outcome into PDB return values. What each procedure does is in procedures.py, every call
into GIMP's image API in gimp_host.py, the dialogs in dialogs.py.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.append(os.path.join(HERE, "vendor"))  # pyzmq copied by the installer, if GIMP's Python lacks it

import gi  # noqa: E402

gi.require_version("Gimp", "3.0")
from gi.repository import Gimp, GLib, GObject  # noqa: E402

import dialogs  # noqa: E402
import gimp_host  # noqa: E402
import procedures  # noqa: E402
import protocol  # noqa: E402
import settings as settings_file  # noqa: E402

PREFIX = "plug-in-brushwork-"
IMAGE_MENU = "<Image>/Image/brushwork"
FILTERS_MENU = "<Image>/Filters/brushwork"
RW = GObject.ParamFlags.READWRITE


def _choice(*items):
    choice = Gimp.Choice.new()
    for i, (nick, label) in enumerate(items):
        choice.add(nick, i, label, "")
    return choice


def _add_scale(procedure):
    procedure.add_choice_argument("scale", "Sc_ale", "Upscale factor: 2, 4 or 8",
                                  _choice(("2", "2×"), ("4", "4×"), ("8", "8×")), "4", RW)


def _add_model(procedure):
    procedure.add_string_argument("model", "_Model", "Super-resolution model name; empty: the daemon picks "
                                  "one for the scale", "", RW)


def _define_upscale_image(procedure):
    procedure.set_menu_label("_Upscale Image…")
    procedure.set_documentation("Upscale the image with a super-resolution network",
                                "Scales the whole image by 2, 4 or 8; every layer (or only the chosen ones) "
                                "goes through the brushwork daemon's super-resolution model, the others "
                                "are scaled by GIMP. Alpha is kept. One undo step.", None)
    procedure.add_menu_path(IMAGE_MENU)
    _add_scale(procedure)
    procedure.add_choice_argument("layers", "_Which layers", "Which layers the network upscales",
                                  _choice(("all", "Every layer"), ("active", "Chosen layers only")), "all", RW)
    _add_model(procedure)
    return ["scale", "layers", "model"]


def _define_upscale_selection(procedure):
    procedure.set_menu_label("Upscale _Selection…")
    procedure.set_documentation("Upscale the selected area into a new image or layer",
                                "Sends the selection's bounding box of the active layer to the daemon's "
                                "super-resolution model and puts the result into a new image or a new "
                                "layer on top.", None)
    procedure.add_menu_path(IMAGE_MENU)
    _add_scale(procedure)
    procedure.add_choice_argument("output", "Out_put", "Where the upscaled pixels go",
                                  _choice(("new-image", "New image"), ("new-layer", "New layer")),
                                  "new-image", RW)
    _add_model(procedure)
    procedure.add_image_return_value("image", "Image", "The image holding the upscaled layer", False, RW)
    procedure.add_layer_return_value("layer", "Layer", "The new layer with the upscaled pixels", False, RW)
    return ["scale", "output", "model"]


def _define_stylize(procedure):
    procedure.set_menu_label("_Stylize…")
    procedure.set_documentation("Paint the layer in a learned style",
                                "Runs a brushwork style network (Johnson et al. 2016) on the chosen layers, "
                                "inside the selection if there is one.", None)
    procedure.add_menu_path(FILTERS_MENU)
    procedure.add_string_argument("style", "St_yle", "Style model name (see `brushwork models`)", "", RW)
    procedure.add_double_argument("strength", "S_trength", "Blend between original (0) and stylized (1)",
                                  *protocol.STRENGTH_RANGE, 1.0, RW)
    procedure.add_boolean_argument("preserve-colors", "_Preserve colours",
                                   "Keep the original colours, take only the style's luminance", False, RW)
    procedure.add_boolean_argument("draft", "_Draft (fast lite net)",
                                   "Run the style's lite net instead: several times faster, a little less faithful "
                                   "(a style without one is an error naming the command that makes one)", False, RW)
    return ["style", "strength", "preserve-colors", "draft"]


def _define_train_style(procedure):
    procedure.set_menu_label("_Train Style from Selection…")
    procedure.set_documentation("Train a new style model from the selected area",
                                "Sends the selection (or the layer) as a style image to the daemon, which "
                                "trains a new style network from it on the chosen folder of photos (a daemon "
                                "on this machine reads it; one on another machine trains on the photos given "
                                "to `brushwork serve --content DIR` there). Interactively the time it takes, "
                                "measured on the daemon's device, is shown before it starts, and a window "
                                "stops it early keeping what it has learnt. More training options: train_options "
                                f"(and lite_options for the lite version) in {settings_file.FILE_NAME}.", None)
    procedure.add_menu_path(FILTERS_MENU)
    procedure.add_string_argument("name", "_Name", "Name of the new style, e.g. Blue Period (its model file "
                                  "becomes blue_period)", "my_style", RW)
    procedure.add_string_argument("display-name", "_Display name", "Name shown in menus", "", RW)
    procedure.add_int_argument("iterations", "_Iterations", "Training iterations; 0: the daemon's default",
                               0, protocol.TRAIN_OPTIONS["iterations"].high, 0, RW)
    procedure.add_string_argument("photos", "_Photos folder", "Folder of your photos to train on (read by a "
                                  "daemon on this machine); empty: the daemon's own (brushwork serve --content)",
                                  "", RW)
    procedure.add_double_argument("time-limit", "Stop _after (minutes)", "Stop training after this long and keep "
                                  "what it has learnt (a partly trained style); 0: no limit",
                                  0.0, protocol.TRAIN_OPTIONS["time_limit"].high / 60, 0.0, RW)
    procedure.add_boolean_argument("lite", "Also make a lite (fast) _version",
                                   "Afterwards, distil a smaller net that copies the new style and stylises "
                                   "several times faster (named NAME_lite)", False, RW)
    procedure.add_choice_argument("lite-recipe", "Lite version: _quick or full", "How the lite version is made: "
                                  "quickly (good enough for drafts) or with the bundled lite nets' recipe (pixels "
                                  "first, then the style's textures; close to the style itself)",
                                  _choice(*protocol.LITE_RECIPES), "single", RW)
    return ["name", "display-name", "iterations", "photos", "time-limit", "lite", "lite-recipe"]


def _define_settings(procedure):
    procedure.set_menu_label("S_ettings…")
    procedure.set_documentation("Where the brushwork plug-in finds its daemon",
                                "Stores the daemon endpoint, whether (and which) daemon to start when none answers, "
                                "the reply timeout and the key files for a daemon on another machine in "
                                f"{settings_file.FILE_NAME} in GIMP's config folder.",
                                None)
    procedure.add_menu_path(FILTERS_MENU)
    procedure.add_menu_path(IMAGE_MENU)
    procedure.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.ALWAYS)
    procedure.add_string_argument("endpoint", "_Endpoint", "Daemon endpoint, e.g. tcp://127.0.0.1:5557; "
                                  "empty: the local default socket", "", RW)
    procedure.add_boolean_argument("manage-daemon", "Start the daemon _when none answers",
                                   "Run `brushwork serve` on the endpoint when no daemon answers", True, RW)
    procedure.add_string_argument("daemon-path", "_brushwork program", "The `brushwork` executable to start; "
                                  "empty: the one recorded at install time, else the one on PATH", "", RW)
    procedure.add_double_argument("timeout", "_Timeout (s)", "Longest silence from a busy daemon",
                                  5.0, 3600.0, 60.0, RW)
    procedure.add_string_argument("server-key", "Server _key file", "A daemon on another machine: its public key "
                                  "file (server.key); empty: no keys", "", RW)
    procedure.add_string_argument("client-key", "Client ke_y file", "A daemon on another machine: this machine's "
                                  "secret key file (NAME.key_secret); empty: no keys", "", RW)
    return ["endpoint", "manage-daemon", "daemon-path", "timeout", "server-key", "client-key"]


PROCEDURES = {
    # name: (define, run, dialog title)
    PREFIX + "upscale-image": (_define_upscale_image, procedures.upscale_image, "Upscale Image (brushwork)"),
    PREFIX + "upscale-selection": (_define_upscale_selection, procedures.upscale_selection,
                                   "Upscale Selection (brushwork)"),
    PREFIX + "stylize": (_define_stylize, procedures.stylize, "Stylize (brushwork)"),
    PREFIX + "train-style": (_define_train_style, procedures.train_style, "Train Style (brushwork)"),
    PREFIX + "settings": (_define_settings, procedures.save_settings, "brushwork Settings"),
}
_FIELDS = {}  # procedure name -> its arguments, as the define function lists them


def _load_settings_into(config):
    """Show the stored settings in the Settings dialog."""
    current = procedures.load_settings()
    for argument, key in procedures.SETTINGS_ARGUMENTS.items():
        config.set_property(argument, current[key])


def _error(procedure, message):
    error = GLib.Error.new_literal(GLib.quark_from_string("brushwork"), message, 0)
    return procedure.new_return_values(Gimp.PDBStatusType.EXECUTION_ERROR, error)


def _run(procedure, run_mode, image, drawables, config, data):
    """Common entry: dialog when interactive, then the procedure; errors become PDB errors."""
    name = procedure.get_name()
    define, run, title = PROCEDURES[name]
    interactive = run_mode == Gimp.RunMode.INTERACTIVE
    try:
        if interactive:
            if run is procedures.save_settings:
                _load_settings_into(config)
            if not dialogs.run(procedure, config, title, _FIELDS[name], procedures.load_settings(),
                               gimp_host.config_dir(), procedures.source_size(run, image, drawables)):
                return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
        args = {field: config.get_property(field) for field in _FIELDS[name]}
        returned = run(args, image, drawables, interactive)
    except protocol.Cancelled:
        return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
    except (protocol.BrushworkError, procedures.Failure, ValueError) as e:
        return _error(procedure, f"brushwork: {e}")
    except Exception as e:  # a bug: still answer the PDB, with the cause
        return _error(procedure, f"brushwork: internal error {type(e).__name__}: {e}")
    finally:
        gimp_host.progress_end()
    gimp_host.flush_displays()
    if returned is not None:  # upscale-selection: the image and layer it made
        result_image, result_layer = returned
        return Gimp.ValueArray.new_from_values([GObject.Value(Gimp.PDBStatusType, Gimp.PDBStatusType.SUCCESS),
                                                GObject.Value(Gimp.Image, result_image),
                                                GObject.Value(Gimp.Layer, result_layer)])
    return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())


class Brushwork(Gimp.PlugIn):
    def do_query_procedures(self):
        return list(PROCEDURES)

    def do_set_i18n(self, name):
        return False

    def do_create_procedure(self, name):
        procedure = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, _run, None)
        procedure.set_image_types("RGB*, GRAY*")
        procedure.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE
                                       | Gimp.ProcedureSensitivityMask.DRAWABLES)
        procedure.set_attribution("brushwork authors", "brushwork authors", "2026")
        _FIELDS[name] = PROCEDURES[name][0](procedure)
        return procedure


if __name__ == "__main__":
    Gimp.main(Brushwork.__gtype__, sys.argv)
