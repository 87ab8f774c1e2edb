"""What each brushwork procedure does: read the pixels, call the daemon, check the result, write it.

Each procedure takes its arguments as a dict (``{"scale": "4", ...}``, read from GIMP's procedure
config by brushwork.py), the image and the chosen drawables, and whether it runs interactively.
GIMP's API is reached only through gimp_host. All daemon calls finish and every result is checked
before the image is touched, so a failed or cancelled call leaves the image as it was; the edits
of one call form one undo step.
"""

import os

import connection
import dialogs
import gimp_host as host
import gimp_pixels
import model_list
import protocol
import settings as settings_file


class Failure(Exception):
    """A problem to show the user as the procedure's error message."""


def load_settings():
    """The plug-in's settings (daemon endpoint, keys, ...) from GIMP's config folder."""
    return settings_file.load(host.config_dir())


def _connect():
    host.progress_start("Connecting to the brushwork daemon…")
    return connection.connect(load_settings(), host.config_dir(), waiting=host.progress_pulse)


def _models(client):
    """The daemon's models (remembered for the dialogs)."""
    models = client.info().get("models", [])
    model_list.remember(host.config_dir(), models)
    return models


def _model_name(client, text, kind):
    """The daemon's name for the model ``text`` names (its name or display name); "" stays ""."""
    if not text.strip():
        return ""
    return model_list.resolve(text, _models(client), kind)


def _progress(label, step, steps):
    """A client progress callback that maps one job's tiles onto part ``step`` of ``steps``."""
    host.progress_text(label)

    def update(done, total, message):
        fraction = done / total if total else 0.0
        host.progress_fraction((step + fraction) / steps)
    return update


def _selected(drawable):
    """The selection's pixels on ``drawable``; Failure when the selection misses it."""
    rect = host.selection_rect(drawable)
    if rect is None:
        raise Failure("the selection does not touch the active layer")
    return host.read(drawable, rect)


def _first(drawables):
    if not drawables:
        raise Failure("no layer chosen: select the layer to work on")
    return drawables[0]


def upscale_image(args, image, drawables, interactive):
    """Scale the image by 2/4/8; the network upscales every (or each chosen) layer."""
    scale = gimp_pixels.parse_scale(args["scale"])
    layers = host.layers_to_upscale(image, drawables, every_layer=args["layers"] == "all")
    if not layers:
        raise Failure("no layer to upscale: pick a layer, or choose 'every layer'")
    client = _connect()
    model = _model_name(client, args["model"], "sr") or None
    results = []
    for i, layer in enumerate(layers):
        source = host.read_whole(layer)
        _, _, width, height = source.rect
        r = client.upscale(source.pixels, width, height, source.format, scale=scale, model=model,
                           progress=_progress(f"Upscaling {source.name}", i, len(layers)))
        gimp_pixels.check_result(r, source.format, width, height, scale)
        results.append((source, r))
    host.scale_image(image, scale, results)


def upscale_selection(args, image, drawables, interactive):
    """Upscale the selection's bounding box of the active layer into a new image or layer.

    Returns (image, layer) holding the result: the PDB return values ``image`` and ``layer``.
    """
    scale = gimp_pixels.parse_scale(args["scale"])
    source = _selected(_first(drawables))
    _, _, width, height = source.rect
    client = _connect()
    r = client.upscale(source.pixels, width, height, source.format, scale=scale,
                       model=_model_name(client, args["model"], "sr") or None,
                       progress=_progress("Upscaling the selection", 0, 1))
    gimp_pixels.check_result(r, source.format, width, height, scale)
    name = f"{source.name} ×{scale}"
    if args["output"] == "new-image":
        target, layer = host.new_image(image, source, name, r)
        if interactive:
            host.show(target)
        return target, layer
    return image, host.add_layer_above(image, source, name, r)


def stylize(args, image, drawables, interactive):
    """Stylize each chosen drawable inside the selection (all of it without one); with ``draft``,
    through the style's lite net."""
    style = args["style"].strip()
    if not style:
        raise Failure("choose a style model (the 'style' argument is empty)")
    jobs = [(d, rect) for d in drawables if (rect := host.selection_rect(d)) is not None]
    if not jobs:
        raise Failure("the selection does not touch the chosen layer" if drawables else "no layer chosen")
    client = _connect()
    models = _models(client)
    style = model_list.resolve(style, models, "style")
    if args["draft"]:
        style = protocol.draft_model(models, style)   # its lite net; BadRequest naming how to make one
    results = []
    for i, (drawable, rect) in enumerate(jobs):
        source = host.read(drawable, rect)
        r = client.stylize(source.pixels, rect[2], rect[3], source.format, style, strength=args["strength"],
                           preserve_colors=args["preserve-colors"],
                           progress=_progress(f"Stylizing {source.name}", i, len(jobs)))
        gimp_pixels.check_result(r, source.format, rect[2], rect[3])
        results.append((source, r))
    host.replace_pixels(image, results)


def train_style(args, image, drawables, interactive):
    """Ask the daemon to train a style model from the selected pixels, on the chosen folder of
    photos (or the daemon's own), and with ``lite`` then its lite version (made as ``lite-recipe``
    says, with the settings file's ``lite_options``). Interactively, the time the style takes
    (measured on the daemon's device) is shown first, and a window offers to stop early and keep
    the model."""
    name = args["name"].strip()
    if not name:
        raise Failure("give the new style a name")
    source = _selected(_first(drawables))
    _, _, width, height = source.rect
    photos = args["photos"].strip()
    minutes = args["time-limit"]
    options = dict(settings_file.load_train_options(host.config_dir()),
                   iterations=args["iterations"] or None,
                   content=os.path.abspath(os.path.expanduser(photos)) if photos else None,
                   time_limit=minutes * 60 if minutes else None)
    lite_options = protocol.lite_request(settings_file.load_lite_options(host.config_dir()),  # read before training
                                         args["lite-recipe"])
    client = _connect()
    stop = None
    if interactive:
        host.progress_text("Measuring how fast the daemon trains (the first time takes a minute)…")
        estimate = client.estimate_training(source.pixels, width, height, source.format, name,
                                            progress=_training_progress(name), **options)
        if not dialogs.confirm_training(name, estimate):
            raise protocol.Cancelled("training not started")
        stop = dialogs.StopWindow(name)
    arguments = (source.pixels, width, height, source.format, name)
    keywords = dict(options, display_name=args["display-name"] or None, progress=_training_progress(name),
                    should_stop=stop)
    try:
        if args["lite"]:   # then a lite version distilled from the new style, in the same request
            info, lite, lite_error = client.train_style_and_lite(*arguments, lite=lite_options, **keywords)
        else:
            info, lite, lite_error = client.train_style(*arguments, **keywords), None, None
    finally:
        if stop is not None:
            stop.close()
    text = f"brushwork: trained style {info.get('display_name') or info['name']}{model_list.training_note(info)}"
    if lite is not None:
        text += f" and its lite version {lite.get('display_name') or lite['name']}{model_list.training_note(lite)}"
    text += "; it is in the Stylize style list now" if lite is None else "; both are in the Stylize style list now"
    if lite_error is not None:
        text += f" (its lite version was not made: {lite_error})"
    host.message(text)


def _training_progress(name):
    """A client progress callback showing the daemon's training messages (loss, time left)."""
    def update(done, total, message):
        host.progress_text(f"Training style {name}: {message}" if message else f"Training style {name}")
        if total:
            host.progress_fraction(done / total)
        else:
            host.progress_pulse()
    return update


SETTINGS_ARGUMENTS = {  # Settings procedure argument -> settings file key
    "endpoint": "endpoint", "manage-daemon": "manage_daemon", "daemon-path": "daemon_path",
    "timeout": "timeout_s", "server-key": "server_key", "client-key": "client_key",
}


def save_settings(args, image, drawables, interactive):
    """Store the procedure's arguments as the plug-in's settings (``train_options`` and
    ``lite_options`` stay as they are)."""
    kept = []
    for load in (settings_file.load_train_options, settings_file.load_lite_options):
        try:
            kept.append(load(host.config_dir()))
        except ValueError:  # an unreadable file is replaced
            kept.append(None)
    stored = {key: args[argument].strip() if isinstance(args[argument], str) else args[argument]
              for argument, key in SETTINGS_ARGUMENTS.items()}
    path = settings_file.save(host.config_dir(), stored, *kept)
    if interactive:
        host.message(f"brushwork settings saved to {path}")


def source_size(procedure, image, drawables):
    """(width, height) an upscale dialog scales: the image, or the selection on the active layer;
    None for the other procedures."""
    if procedure is upscale_image:
        return host.image_size(image)
    if procedure is upscale_selection and drawables:
        rect = host.selection_rect(drawables[0])
        return (rect[2], rect[3]) if rect is not None else None
    return None
