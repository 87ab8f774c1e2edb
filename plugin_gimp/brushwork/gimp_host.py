"""Every call into GIMP's API (``Gimp``, ``Gegl``) that the procedures make lives here; procedures.py
passes GIMP's images and drawables back to these functions and never calls their methods itself.
(The entry file brushwork.py registers the procedures with GIMP; dialogs.py builds the GimpUi dialogs.)

Pixels are read in the drawable's own precision (see gimp_pixels.pixel_format), so nothing is
reduced to 8 bits. Results are written through the drawable's shadow buffer and merged, which
GIMP limits to the selection and records for undo; the edits of one procedure call are grouped
into one undo step.
"""

import contextlib
from collections import namedtuple

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp  # noqa: E402

import gimp_pixels  # noqa: E402

# Pixels read from a drawable: where they came from (drawable, name, rect in drawable coordinates),
# the babl format they were read in and their wire format, and the bytes.
Source = namedtuple("Source", "drawable name rect babl format pixels")


# ---- GIMP's config folder, messages, progress -------------------------------------------

def config_dir():
    """GIMP's config folder for this version (where the settings and the model cache live)."""
    return Gimp.directory()


def message(text):
    """Show ``text`` to the user (GIMP's message dialog or error console)."""
    Gimp.message(text)


def progress_start(text):
    """Start the progress in GIMP's status bar (a progress window when the call has no display)."""
    Gimp.progress_init(text)


def progress_text(text):
    Gimp.progress_set_text(text)


def progress_fraction(fraction):
    Gimp.progress_update(fraction)


def progress_pulse():
    Gimp.progress_pulse()


def progress_end():
    Gimp.progress_end()


def flush_displays():
    """Redraw the image windows after an edit."""
    Gimp.displays_flush()


def show(image):
    """Open a window for ``image``."""
    Gimp.Display.new(image)


# ---- what to work on ----------------------------------------------------------------------

def image_size(image):
    return image.get_width(), image.get_height()


def selection_rect(drawable):
    """The selection's bounding box on ``drawable`` (drawable coordinates; the whole drawable without
    a selection) as (x, y, width, height), or None when the selection misses it."""
    return gimp_pixels.selection_rect(drawable.mask_intersect())


def layers_to_upscale(image, drawables, every_layer):
    """The paint layers an upscale processes: every layer of the image, or the chosen ones (layers
    inside groups, never the groups themselves)."""
    chosen = image.get_layers() if every_layer else drawables
    return [layer for layer in _leaf_layers(chosen) if isinstance(layer, Gimp.Layer)]


def _leaf_layers(layers):
    for layer in layers:
        if layer.is_group():
            yield from _leaf_layers(layer.get_children())
        else:
            yield layer


# ---- reading pixels -----------------------------------------------------------------------

def read(drawable, rect):
    """The pixels of ``rect`` (drawable coordinates) in the drawable's own precision, as a Source."""
    precision = drawable.get_image().get_precision().value_name.replace("GIMP_PRECISION_", "")
    babl, fmt = gimp_pixels.pixel_format(precision, drawable.has_alpha())
    x, y, width, height = rect
    data = drawable.get_buffer().get(Gegl.Rectangle.new(x, y, width, height), 1.0, babl, Gegl.AbyssPolicy.CLAMP)
    return Source(drawable, drawable.get_name(), rect, babl, fmt, data)


def read_whole(drawable):
    """All pixels of ``drawable``, as a Source."""
    return read(drawable, (0, 0, drawable.get_width(), drawable.get_height()))


# ---- writing results ----------------------------------------------------------------------

@contextlib.contextmanager
def one_undo_step(image):
    """Group the image edits made inside the ``with`` block into one undo step."""
    image.undo_group_start()
    try:
        yield
    finally:
        image.undo_group_end()


def _write_shadow(drawable, rect, babl, pixels):
    """Write through the shadow buffer and merge it: undoable, and limited to the selection."""
    x, y, width, height = rect
    shadow = drawable.get_shadow_buffer()
    shadow.set(Gegl.Rectangle.new(x, y, width, height), babl, bytes(pixels))
    shadow.flush()
    drawable.merge_shadow(True)
    drawable.update(x, y, width, height)


def replace_pixels(image, results):
    """Write each ``(source, result)``'s pixels over the source's area (same size), inside the
    selection, as one undo step."""
    with one_undo_step(image):
        for source, result in results:
            _write_shadow(source.drawable, source.rect, source.babl, result.pixels)


def scale_image(image, scale, results):
    """Scale the image by ``scale`` (GIMP scales every layer) and write each ``(source, result)``'s
    upscaled pixels over its whole layer, as one undo step. The user's selection is kept."""
    with one_undo_step(image):
        saved_selection = None if Gimp.Selection.is_empty(image) else Gimp.Selection.save(image)
        Gimp.Selection.none(image)  # merge_shadow honours the selection; the whole layer is wanted
        image.scale(image.get_width() * scale, image.get_height() * scale)
        for source, result in results:
            _write_shadow(source.drawable, (0, 0, result.width, result.height), source.babl, result.pixels)
        if saved_selection is not None:
            image.select_item(Gimp.ChannelOps.REPLACE, saved_selection)
            image.remove_channel(saved_selection)


def _new_layer(image, source, name, result):
    """A layer of ``image`` (not yet inserted, so no undo is needed) holding ``result``'s pixels."""
    gray = image.get_base_type() == Gimp.ImageBaseType.GRAY
    alpha = source.drawable.has_alpha()
    if gray:
        layer_type = Gimp.ImageType.GRAYA_IMAGE if alpha else Gimp.ImageType.GRAY_IMAGE
    else:
        layer_type = Gimp.ImageType.RGBA_IMAGE if alpha else Gimp.ImageType.RGB_IMAGE
    layer = Gimp.Layer.new(image, name, result.width, result.height, layer_type, 100, Gimp.LayerMode.NORMAL)
    buffer = layer.get_buffer()
    buffer.set(Gegl.Rectangle.new(0, 0, result.width, result.height), source.babl, bytes(result.pixels))
    buffer.flush()
    return layer


def new_image(image, source, name, result):
    """A new image (``image``'s type, precision and colour profile) whose one layer ``name`` holds
    ``result``; returns (new image, layer)."""
    target = Gimp.Image.new_with_precision(result.width, result.height, image.get_base_type(),
                                           image.get_precision())
    profile = image.get_color_profile()
    if profile is not None:
        target.set_color_profile(profile)
    layer = _new_layer(target, source, name, result)
    target.insert_layer(layer, None, 0)
    return target, layer


def add_layer_above(image, source, name, result):
    """A new layer ``name`` holding ``result`` just above the source layer (on top for a channel or
    mask), its corner on the source area's corner, as one undo step; returns the layer."""
    drawable = source.drawable
    with one_undo_step(image):
        layer = _new_layer(image, source, name, result)
        if isinstance(drawable, Gimp.Layer):
            image.insert_layer(layer, drawable.get_parent(), image.get_item_position(drawable))
        else:
            image.insert_layer(layer, None, 0)
        ox, oy = drawable.get_offsets()[1:]
        layer.set_offsets(ox + source.rect[0], oy + source.rect[1])
    return layer
