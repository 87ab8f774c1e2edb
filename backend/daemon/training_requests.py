"""What a training request may ask for, checked before anything runs: a ``train_style`` request's
options and the lite version it may ask for afterwards (``lite``), a ``distill`` request's
teacher and options, the names and the content folder, and the style image. Each check raises
the fitting protocol error.
What the options are: ``protocol.TRAIN_OPTIONS`` and ``protocol.DISTILL_OPTIONS``; the editors'
defaults for both are here. See docs/protocol.md.
"""

from pathlib import Path

import numpy as np

from backend import pixels, protocol
from backend.model_files import MAX_TEXT
from backend.protocol import (DISTILL_OPTIONS, LITE_SUFFIX, MAX_DISTILL_TARGETS_BYTES, RECIPE_SETS, TRAIN_OPTIONS,
                              BrushworkError)

MIN_STYLE_SIDE = TRAIN_OPTIONS["style_size"].low   # the trainer's smallest style image
# What the editors' trainings and distillations use unless a request (or `brushwork serve`) says
# otherwise. Unless a request sets ``border``, a style net also runs on its input mirrored out by
# its reach (edge_hiding_border: 60 pixels for 5 blocks), so that it cannot paint lines along the edge.
EDITOR_DEFAULTS = {name: option.editor_default for name, option in TRAIN_OPTIONS.items()
                   if option.editor_default is not None}
DISTILL_DEFAULTS = {name: option.editor_default for name, option in DISTILL_OPTIONS.items()
                    if option.editor_default is not None}
COMMON_FIELDS = {"v", "id", "kind", "name", "display_name", "content"}
STYLE_FIELDS = COMMON_FIELDS | {"width", "height", "format", "mask", "estimate", "lite"}
DISTILL_FIELDS = COMMON_FIELDS | {"teacher"}


def _check_fields(header, fields, options, kind):
    unknown = sorted(set(header) - fields - set(options))
    if unknown:
        raise protocol.BadRequest(f"unknown {kind} field(s) {unknown}; the options are {sorted(options)}")


def _names(text, display):
    """(model name, display name or None) from a request's ``name`` (free text: 'Blue Period' ->
    'blue_period', which is also the display name unless ``display`` is given)."""
    from trainer.export import model_name

    if not isinstance(text, str) or not text.strip():
        raise protocol.BadRequest("'name' (the new model's name) must be a non-empty string")
    if display is not None and not isinstance(display, str):
        raise protocol.BadRequest("'display_name' must be a string")
    try:
        name = model_name(text)
    except ValueError as exc:
        raise protocol.BadRequest(str(exc)) from None
    display = (display or "").strip() or (text.strip() if text.strip() != name else None)
    longest = MAX_TEXT["display_name"]   # what the model store accepts in a model's metadata
    if display is not None and (len(display) > longest or display.startswith("-")):
        raise protocol.BadRequest(f"the display name {display[:40]!r} must have at most {longest} characters "
                                  "and not start with '-'")
    return name, display


def _lite_name(name):
    """``name`` + '_lite', if that is a valid model name."""
    from trainer.export import check_model_name

    try:
        return check_model_name(name + LITE_SUFFIX)
    except ValueError:
        raise protocol.BadRequest(f"the lite version's name {name + LITE_SUFFIX!r} would be too long: "
                                  "choose a shorter name") from None


def training_options(header):
    """The trainer options of a ``train_style`` header, checked; raises BadRequest.

    ``name`` may be free text: it becomes a model name ('Blue Period' -> 'blue_period')
    and, unless ``display_name`` is given, the display name.
    """
    _check_fields(header, STYLE_FIELDS, TRAIN_OPTIONS, "train_style")
    name, display = _names(header.get("name"), header.get("display_name"))
    options = {"name": name, "display_name": display}
    options.update((key, protocol.check_train_option(key, header[key]))
                   for key in TRAIN_OPTIONS if header.get(key) is not None)
    return {k: v for k, v in options.items() if v is not None}


def _checked_distill_options(values, where):
    if not isinstance(values, dict):
        raise protocol.BadRequest(f"{where} must be an object of distillation options, got {values!r}"
                                  [:protocol.MAX_QUOTE])
    unknown = sorted(set(values) - set(DISTILL_OPTIONS))
    if unknown:
        raise protocol.BadRequest(f"unknown distillation option(s) {unknown} in {where}; the options are "
                                  f"{sorted(DISTILL_OPTIONS)}")
    return {key: protocol.check_distill_option(key, value) for key, value in values.items() if value is not None}


def lite_options(header, style_name):
    """The distillation a ``train_style`` header asks for after the style (``lite``: true, or an
    object of distillation options), as its options without the defaults; None when it asks for none.
    (An estimate ignores it: it times the style's training.)"""
    lite = header.get("lite")
    if lite is None or lite is False:
        return None
    options = {} if lite is True else _checked_distill_options(lite, "'lite'")
    return {"name": _lite_name(style_name), **options}


def distill_request(header, store):
    """(teacher's ModelInfo, distillation options without the defaults) of a ``distill`` header:
    the teacher an installed style model, the name ``name`` or the teacher's + '_lite'."""
    _check_fields(header, DISTILL_FIELDS, DISTILL_OPTIONS, "distill")
    teacher = find_teacher(store, header.get("teacher"))
    if header.get("name") is None:
        name, display = _lite_name(teacher.name), header.get("display_name")
        if display is not None and not isinstance(display, str):
            raise protocol.BadRequest("'display_name' must be a string")
    else:
        name, display = _names(header["name"], header.get("display_name"))
    if name == teacher.name:
        raise protocol.BadRequest(f"the lite net cannot be named {name!r}, as its teacher: it would replace it")
    options = _checked_distill_options({key: header[key] for key in DISTILL_OPTIONS if key in header},
                                       "the request")
    return teacher, {"name": name, **({"display_name": display.strip()} if display and display.strip() else {}),
                     **options}


def find_teacher(store, name):
    """The ModelInfo of the installed style model ``name``; BadRequest naming the style models if there is none."""
    if not isinstance(name, str) or not name:
        raise protocol.BadRequest("'teacher' (the style model to make a lite version of) must be a model name")
    try:
        info = store.get(name, refresh=False)   # the loop thread: never wait for a scan
    except BrushworkError:
        info = None
    if info is None or info.kind != "style":
        styles = ", ".join(m.name for m in store.list(refresh=False) if m.kind == "style") or "none installed"
        what = "there is no model of that name" if info is None else f"it is an {info.kind} model"
        raise protocol.BadRequest(f"teacher {name[:80]!r}: {what}; a teacher is a style model ({styles})"
                                  [:2 * protocol.MAX_QUOTE])
    return info


def distill_options(options):
    """A distillation's options over DISTILL_DEFAULTS, or for ``recipe`` "two-step" over the
    trainer's defaults (the recipe sets the schedule: RECIPE_SETS are refused). Refuses one whose
    teacher targets (``pool`` crops of ``size``², input and output) would take more than
    MAX_DISTILL_TARGETS_BYTES on the daemon's disk, or a pool smaller than a batch."""
    if options.get("recipe") == "two-step":
        given = sorted(set(RECIPE_SETS) & set(options))
        if given:
            raise protocol.BadRequest(f"the two-step recipe sets the iterations and learning rate of each of its "
                                      f"parts: leave out {given}, or ask for recipe 'single'")
    else:
        options = {**DISTILL_DEFAULTS, **options}
    pool, size = (options.get(name, DISTILL_OPTIONS[name].default) for name in ("pool", "size"))
    batch = options.get("batch", TRAIN_OPTIONS["batch"].default)
    if pool < batch:
        raise protocol.BadRequest(f"'pool' ({pool}) must be at least 'batch' ({batch})")
    if pool * 6 * size * size > MAX_DISTILL_TARGETS_BYTES:
        raise protocol.BadRequest(f"{pool} crops of {size}x{size} pixels would take "
                                  f"{pool * 6 * size * size / 2**30:.1f} GiB; at most "
                                  f"{MAX_DISTILL_TARGETS_BYTES / 2**30:g} GiB: choose a smaller pool or size")
    return options


def content_folder(folder, needed, own_folder, client_content):
    """(the content folder a request trains on, what to call it in errors): the request's ``folder``,
    if a client may name one (``client_content``), else the daemon's ``own_folder``; raises BadRequest."""
    if folder is None:
        if needed and own_folder is None:
            raise protocol.BadRequest(
                "this daemon has no content photos to train on: choose a folder of your photos in the editor "
                "(when the daemon runs on this machine), or start the daemon with `brushwork serve --content "
                "DIR` (or set BRUSHWORK_CONTENT) naming a folder of photos, e.g. a few hundred landscapes "
                "and portraits")
        return own_folder, "the folder given to `brushwork serve --content DIR`"
    if not client_content:
        raise protocol.BadRequest(
            "this daemon does not read folders named by its clients (it listens on TCP, perhaps for other "
            "machines): it trains on the photos given to `brushwork serve --content DIR` where it runs")
    if not isinstance(folder, str) or not Path(folder).expanduser().is_absolute():
        raise protocol.BadRequest(f"'content' must be the absolute path of a folder of photos, got {folder!r}")
    return Path(folder).expanduser(), f"the chosen folder {folder}"


def count_photos(content):
    """How many photos ``content`` (folder, description) holds; raises BadRequest naming it."""
    from trainer.data import find_images

    folder, source = content
    if folder is None:
        return None
    try:
        return len(find_images(folder))
    except (OSError, ValueError) as exc:
        raise protocol.BadRequest(f"content image folder: {exc} ({source})") from None


def check_name_free(store, out_dir, name):
    """Refuse a name that a model outside ``out_dir`` already has (training one there again replaces it)."""
    try:
        existing = store.get(name, refresh=False)   # the loop thread: never wait for a scan
    except BrushworkError:
        return
    if existing.json_path.parent.resolve() != out_dir:
        raise protocol.BadRequest(f"a model named {name!r} already exists in {existing.json_path.parent}; "
                                  "choose another name")


def style_image(buffer, width, height, fmt):
    """The style pixels as an H x W x 3 uint8 sRGB array: cropped to the bounding box of the
    pixels that are not fully transparent, partly transparent ones composited on white."""
    rgb, alpha = pixels.decode(buffer, width, height, fmt)
    if alpha is not None:
        rows, cols = np.flatnonzero(alpha.max(axis=1) > 0), np.flatnonzero(alpha.max(axis=0) > 0)
        if not rows.size:
            raise protocol.BadPixels("the style image is fully transparent")
        box = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
        a = alpha[box][..., None]
        rgb = rgb[box] * a + (1.0 - a)
    if min(rgb.shape[:2]) < MIN_STYLE_SIDE:
        raise protocol.BadRequest(f"the style image (its non-transparent part) is {rgb.shape[1]}x{rgb.shape[0]} "
                                  f"pixels; at least {MIN_STYLE_SIDE}x{MIN_STYLE_SIDE} are needed")
    return (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
