#!/usr/bin/env python3
"""brushwork for GIMP 3: neural style transfer and super-resolution through the brushwork daemon.

Procedures (each runs interactively with a dialog, or non-interactively from the PDB):
    plug-in-brushwork-upscale-image      Image > brushwork > Upscale Image…
    plug-in-brushwork-upscale-selection  Image > brushwork > Upscale Selection…
    plug-in-brushwork-stylize            Filters > brushwork > Stylize…
    plug-in-brushwork-train-style        Filters > brushwork > Train Style from Selection…
    plug-in-brushwork-settings           Filters > brushwork > Settings…

All daemon calls finish before the image is touched, so a failed or cancelled call leaves
the image as it was; the edits of one call form one undo step.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.append(os.path.join(HERE, "vendor"))  # pyzmq copied by the installer, if GIMP's Python lacks it

import gi  # noqa: E402

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp, GLib, GObject  # noqa: E402

import connection  # noqa: E402
import dialogs  # noqa: E402
import gimp_pixels  # noqa: E402
import model_list  # noqa: E402
import protocol  # noqa: E402
import settings as settings_file  # noqa: E402

PREFIX = "plug-in-brushwork-"
IMAGE_MENU = "<Image>/Image/brushwork"
FILTERS_MENU = "<Image>/Filters/brushwork"
RW = GObject.ParamFlags.READWRITE


class Failure(Exception):
    """A problem to show the user as the procedure's error message."""


# ---- pixels ---------------------------------------------------------------------------

def _format_for(drawable):
    precision = drawable.get_image().get_precision().value_name.replace("GIMP_PRECISION_", "")
    return gimp_pixels.pixel_format(precision, drawable.has_alpha())


def _read(drawable, rect):
    """Pixels of ``rect`` (drawable coordinates) in the drawable's own precision: (bytes, babl, fmt)."""
    babl, fmt = _format_for(drawable)
    x, y, w, h = rect
    data = drawable.get_buffer().get(Gegl.Rectangle.new(x, y, w, h), 1.0, babl, Gegl.AbyssPolicy.CLAMP)
    return data, babl, fmt


def _write_shadow(drawable, rect, babl, pixels):
    """Write through the shadow buffer and merge it: undoable, and limited to the selection."""
    x, y, w, h = rect
    shadow = drawable.get_shadow_buffer()
    shadow.set(Gegl.Rectangle.new(x, y, w, h), babl, bytes(pixels))
    shadow.flush()
    drawable.merge_shadow(True)
    drawable.update(x, y, w, h)


def _write_new(drawable, babl, pixels):
    """Fill a freshly created layer (no undo needed before it is inserted)."""
    buffer = drawable.get_buffer()
    buffer.set(Gegl.Rectangle.new(0, 0, drawable.get_width(), drawable.get_height()), babl, bytes(pixels))
    buffer.flush()


def _first(drawables):
    if not drawables:
        raise Failure("no layer chosen: select the layer to work on")
    return drawables[0]


def _leaf_layers(layers):
    for layer in layers:
        if layer.is_group():
            yield from _leaf_layers(layer.get_children())
        else:
            yield layer


# ---- daemon calls ---------------------------------------------------------------------

def _settings():
    return settings_file.load(Gimp.directory())


def _connect():
    Gimp.progress_init("Connecting to the brushwork daemon…")
    return connection.connect(_settings(), Gimp.directory(), waiting=Gimp.progress_pulse)


def _model_name(client, text, kind):
    """The daemon's name for the model ``text`` names (its name or display name); "" stays ""."""
    if not text.strip():
        return ""
    models = client.info().get("models", [])
    model_list.remember(Gimp.directory(), models)
    return model_list.resolve(text, models, kind)


def _progress(label, step, steps):
    """A client progress callback that maps one job's tiles onto part ``step`` of ``steps``."""
    Gimp.progress_set_text(label)

    def update(done, total, message):
        fraction = done / total if total else 0.0
        Gimp.progress_update((step + fraction) / steps)
    return update


# ---- procedures -----------------------------------------------------------------------

def upscale_image(run_mode, config, image, drawables):
    """Scale the image by 2/4/8; the network upscales every (or each chosen) layer."""
    scale = gimp_pixels.parse_scale(config.get_property("scale"))
    layers = list(_leaf_layers(image.get_layers() if config.get_property("layers") == "all" else drawables))
    layers = [layer for layer in layers if isinstance(layer, Gimp.Layer)]
    if not layers:
        raise Failure("no layer to upscale: pick a layer, or choose 'every layer'")
    client = _connect()
    model = _model_name(client, config.get_property("model"), "sr") or None
    results = []
    for i, layer in enumerate(layers):
        w, h = layer.get_width(), layer.get_height()
        data, babl, fmt = _read(layer, (0, 0, w, h))
        r = client.upscale(data, w, h, fmt, scale=scale, model=model,
                           progress=_progress(f"Upscaling {layer.get_name()}", i, len(layers)))
        gimp_pixels.check_result(r, fmt, w, h, scale)
        results.append((layer, babl, r))
    image.undo_group_start()
    try:
        saved_selection = None if Gimp.Selection.is_empty(image) else Gimp.Selection.save(image)
        Gimp.Selection.none(image)  # merge_shadow honours the selection; the whole layer is wanted
        image.scale(image.get_width() * scale, image.get_height() * scale)
        for layer, babl, r in results:
            _write_shadow(layer, (0, 0, r.width, r.height), babl, r.pixels)
        if saved_selection is not None:
            image.select_item(Gimp.ChannelOps.REPLACE, saved_selection)
            image.remove_channel(saved_selection)
    finally:
        image.undo_group_end()


def upscale_selection(run_mode, config, image, drawables):
    """Upscale the selection's bounding box of the active layer into a new image or layer.

    Returns (image, layer) holding the result: the PDB return values ``image`` and ``layer``.
    """
    scale = gimp_pixels.parse_scale(config.get_property("scale"))
    drawable = _first(drawables)
    rect = gimp_pixels.selection_rect(drawable.mask_intersect())
    if rect is None:
        raise Failure("the selection does not touch the active layer")
    data, babl, fmt = _read(drawable, rect)
    client = _connect()
    r = client.upscale(data, rect[2], rect[3], fmt, scale=scale,
                       model=_model_name(client, config.get_property("model"), "sr") or None,
                       progress=_progress("Upscaling the selection", 0, 1))
    gimp_pixels.check_result(r, fmt, rect[2], rect[3], scale)
    layer_type = _layer_type(image, drawable.has_alpha())
    name = f"{drawable.get_name()} ×{scale}"
    if config.get_property("output") == "new-image":
        target = Gimp.Image.new_with_precision(r.width, r.height, image.get_base_type(), image.get_precision())
        profile = image.get_color_profile()
        if profile is not None:
            target.set_color_profile(profile)
        layer = Gimp.Layer.new(target, name, r.width, r.height, layer_type, 100, Gimp.LayerMode.NORMAL)
        _write_new(layer, babl, r.pixels)
        target.insert_layer(layer, None, 0)
        if run_mode == Gimp.RunMode.INTERACTIVE:
            Gimp.Display.new(target)
        return target, layer
    image.undo_group_start()
    try:
        layer = Gimp.Layer.new(image, name, r.width, r.height, layer_type, 100, Gimp.LayerMode.NORMAL)
        _write_new(layer, babl, r.pixels)
        if isinstance(drawable, Gimp.Layer):  # just above the source layer
            image.insert_layer(layer, drawable.get_parent(), image.get_item_position(drawable))
        else:
            image.insert_layer(layer, None, 0)
        ox, oy = drawable.get_offsets()[1:]
        layer.set_offsets(ox + rect[0], oy + rect[1])
    finally:
        image.undo_group_end()
    return image, layer


def _layer_type(image, alpha):
    gray = image.get_base_type() == Gimp.ImageBaseType.GRAY
    if gray:
        return Gimp.ImageType.GRAYA_IMAGE if alpha else Gimp.ImageType.GRAY_IMAGE
    return Gimp.ImageType.RGBA_IMAGE if alpha else Gimp.ImageType.RGB_IMAGE


def stylize(run_mode, config, image, drawables):
    """Stylize each chosen drawable inside the selection (all of it without one)."""
    style = config.get_property("style").strip()
    if not style:
        raise Failure("choose a style model (the 'style' argument is empty)")
    jobs = [(d, rect) for d in drawables
            if (rect := gimp_pixels.selection_rect(d.mask_intersect())) is not None]
    if not jobs:
        raise Failure("the selection does not touch the chosen layer" if drawables else "no layer chosen")
    client = _connect()
    style = _model_name(client, style, "style")
    results = []
    for i, (drawable, rect) in enumerate(jobs):
        data, babl, fmt = _read(drawable, rect)
        r = client.stylize(data, rect[2], rect[3], fmt, style, strength=config.get_property("strength"),
                           preserve_colors=config.get_property("preserve-colors"),
                           progress=_progress(f"Stylizing {drawable.get_name()}", i, len(jobs)))
        gimp_pixels.check_result(r, fmt, rect[2], rect[3])
        results.append((drawable, rect, babl, r))
    image.undo_group_start()
    try:
        for drawable, rect, babl, r in results:
            _write_shadow(drawable, rect, babl, r.pixels)
    finally:
        image.undo_group_end()


def train_style(run_mode, config, image, drawables):
    """Ask the daemon to train a style model from the selected pixels, on the chosen folder of
    photos (or the daemon's own). Interactively, the time it takes (measured on the daemon's
    device) is shown first, and a window offers to stop early and keep the model."""
    name = config.get_property("name").strip()
    if not name:
        raise Failure("give the new style a name")
    drawable = _first(drawables)
    rect = gimp_pixels.selection_rect(drawable.mask_intersect())
    if rect is None:
        raise Failure("the selection does not touch the active layer")
    data, _, fmt = _read(drawable, rect)
    photos = config.get_property("photos").strip()
    minutes = config.get_property("time-limit")
    options = dict(settings_file.load_train_options(Gimp.directory()),
                   iterations=config.get_property("iterations") or None,
                   content=os.path.abspath(os.path.expanduser(photos)) if photos else None,
                   time_limit=minutes * 60 if minutes else None)
    client = _connect()
    stop = None
    if run_mode == Gimp.RunMode.INTERACTIVE:
        Gimp.progress_set_text("Measuring how fast the daemon trains (the first time takes a minute)…")
        estimate = client.estimate_training(data, rect[2], rect[3], fmt, name, progress=_training_progress(name),
                                            **options)
        if not _confirm_training(name, estimate):
            raise protocol.Cancelled("training not started")
        stop = StopWindow(name)
    try:
        info = client.train_style(data, rect[2], rect[3], fmt, name,
                                  display_name=config.get_property("display-name") or None,
                                  progress=_training_progress(name), should_stop=stop, **options)
    finally:
        if stop is not None:
            stop.close()
    Gimp.message(f"brushwork: trained style {info.get('display_name') or info['name']}{model_list.training_note(info)}; "
                 "it is in the Stylize style list now")


def estimate_text(name, estimate):
    """The measured time of a training, for the artist to decide on."""
    seconds, speed = estimate.get("seconds") or 0, estimate["s_per_iteration"]
    photos = f" on {estimate['photos']:,} photos" if estimate.get("photos") is not None else ""
    return (f"Training the style {name}{photos} takes about {protocol.describe_duration(seconds)} "
            f"({estimate.get('iterations') or '?'} iterations, {speed:.2g} s each, measured on "
            f"{estimate.get('hardware') or 'the daemon'}). A window lets you stop it at any time and keep "
            "what it has learnt.")


def _confirm_training(name, estimate):
    """Show the measured time; True when the artist starts the training."""
    from gi.repository import Gtk
    dialog = Gtk.MessageDialog(message_type=Gtk.MessageType.QUESTION, text=f"Train the style {name}?",
                               secondary_text=estimate_text(name, estimate))
    dialog.add_button("_Cancel", Gtk.ResponseType.CANCEL)
    dialog.add_button("_Start Training", Gtk.ResponseType.OK)
    answer = dialog.run()
    dialog.destroy()
    return answer == Gtk.ResponseType.OK


class StopWindow:
    """A small window with "Stop and keep" while a style trains; the client polls it (``should_stop``),
    which also keeps the window responsive."""

    def __init__(self, name):
        from gi.repository import Gtk
        self.stopped = False
        self.dialog = Gtk.Dialog(title=f"Training {name} (brushwork)")
        self.dialog.get_content_area().add(Gtk.Label(label="The style trains on the daemon. Stop it now to keep "
                                                           "what it has learnt so far (a partly trained style)."))
        self.dialog.add_button("_Stop and Keep", Gtk.ResponseType.OK)
        self.dialog.connect("response", self._on_response)
        self.dialog.show_all()

    def _on_response(self, dialog, response):
        from gi.repository import Gtk
        if response == Gtk.ResponseType.OK:
            self.stopped = True
            dialog.set_response_sensitive(response, False)

    def __call__(self):
        from gi.repository import Gtk
        while Gtk.events_pending():
            Gtk.main_iteration()
        return self.stopped

    def close(self):
        self.dialog.destroy()


def _training_progress(name):
    """A client progress callback showing the daemon's training messages (loss, time left)."""
    def update(done, total, message):
        Gimp.progress_set_text(f"Training style {name}: {message}" if message else f"Training style {name}")
        if total:
            Gimp.progress_update(done / total)
        else:
            Gimp.progress_pulse()
    return update


def save_settings(run_mode, config, image, drawables):
    """Store the procedure's arguments as the plug-in's settings (``train_options`` stay as they are)."""
    try:
        train_options = settings_file.load_train_options(Gimp.directory())
    except ValueError:  # an unreadable file is replaced
        train_options = None
    path = settings_file.save(Gimp.directory(), {
        "endpoint": config.get_property("endpoint").strip(),
        "manage_daemon": config.get_property("manage-daemon"),
        "daemon_path": config.get_property("daemon-path").strip(),
        "timeout_s": config.get_property("timeout"),
        "server_key": config.get_property("server-key").strip(),
        "client_key": config.get_property("client-key").strip(),
    }, train_options)
    if run_mode == Gimp.RunMode.INTERACTIVE:
        Gimp.message(f"brushwork settings saved to {path}")


# ---- dialogs --------------------------------------------------------------------------

def _source_size(name, image, drawables):
    """(width, height) an upscale dialog scales: the image, or the selection on the active layer."""
    if name == PREFIX + "upscale-image":
        return image.get_width(), image.get_height()
    if name == PREFIX + "upscale-selection" and drawables:
        rect = gimp_pixels.selection_rect(drawables[0].mask_intersect())
        return (rect[2], rect[3]) if rect is not None else None
    return None


def _load_settings_into(config):
    current = _settings()
    config.set_property("endpoint", current["endpoint"])
    config.set_property("manage-daemon", current["manage_daemon"])
    config.set_property("daemon-path", current["daemon_path"])
    config.set_property("timeout", current["timeout_s"])
    config.set_property("server-key", current["server_key"])
    config.set_property("client-key", current["client_key"])


# ---- registration ---------------------------------------------------------------------

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
    return ["style", "strength", "preserve-colors"]


def _define_train_style(procedure):
    procedure.set_menu_label("_Train Style from Selection…")
    procedure.set_documentation("Train a new style model from the selected area",
                                "Sends the selection (or the layer) as a style image to the daemon, which "
                                "trains a new style network from it on the chosen folder of photos (a daemon "
                                "on this machine reads it; one on another machine trains on the photos given "
                                "to `brushwork serve --content DIR` there). Interactively the time it takes, "
                                "measured on the daemon's device, is shown before it starts, and a window "
                                "stops it early keeping what it has learnt. More training options: "
                                f"train_options in {settings_file.FILE_NAME}.", None)
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
    return ["name", "display-name", "iterations", "photos", "time-limit"]


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
    PREFIX + "upscale-image": (_define_upscale_image, upscale_image, "Upscale Image (brushwork)"),
    PREFIX + "upscale-selection": (_define_upscale_selection, upscale_selection, "Upscale Selection (brushwork)"),
    PREFIX + "stylize": (_define_stylize, stylize, "Stylize (brushwork)"),
    PREFIX + "train-style": (_define_train_style, train_style, "Train Style (brushwork)"),
    PREFIX + "settings": (_define_settings, save_settings, "brushwork Settings"),
}
_FIELDS = {}


def _error(procedure, message):
    error = GLib.Error.new_literal(GLib.quark_from_string("brushwork"), message, 0)
    return procedure.new_return_values(Gimp.PDBStatusType.EXECUTION_ERROR, error)


def _run(procedure, run_mode, image, drawables, config, data):
    """Common entry: dialog when interactive, then the procedure; errors become PDB errors."""
    name = procedure.get_name()
    define, run, title = PROCEDURES[name]
    try:
        if run_mode == Gimp.RunMode.INTERACTIVE:
            if name == PREFIX + "settings":
                _load_settings_into(config)
            if not dialogs.run(procedure, config, title, _FIELDS[name], _settings(), Gimp.directory(),
                               _source_size(name, image, drawables)):
                return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
        returned = run(run_mode, config, image, drawables)
    except protocol.Cancelled:
        return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
    except (protocol.BrushworkError, Failure, ValueError) as e:
        return _error(procedure, f"brushwork: {e}")
    except Exception as e:  # a bug: still answer the PDB, with the cause
        return _error(procedure, f"brushwork: internal error {type(e).__name__}: {e}")
    finally:
        Gimp.progress_end()
    Gimp.displays_flush()
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
