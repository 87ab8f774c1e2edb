"""The daemon's styles as the docker shows them (pure Python): the gallery, the Draft switch and the
names of result layers, from the daemon's ``info`` models.

A style with a lite net (``lite`` in ``info``, docs/protocol.md) is one gallery entry; the Draft
switch runs its lite net instead. A lite net whose teacher is installed is no entry of its own.
"""

import base64

from .brushwork_client import protocol

DRAFT_SUFFIX = " (draft)"   # ends the name of a layer stylised with a style's lite net


def draft_model(models, style):
    """The lite net a draft of ``style`` runs, by ``info``'s ``models`` (``style`` itself when it is a
    lite net), or None when it has none: the full net runs then, as the disabled Draft switch says."""
    try:
        model = protocol.draft_model(models, style)
    except protocol.BadRequest:
        return None
    return model if any(m.get("name") == model for m in models) else None


def lite_command(style):
    """The command that makes a lite net of ``style``."""
    return f"`brushwork train distill --teacher {style}`"


def gallery_styles(models):
    """The styles the gallery shows, each once: a lite net whose teacher is installed is that style's
    Draft switch, not an entry of its own; one whose teacher is not installed is a style."""
    styles = [m for m in models if m.get("kind") == "style"]
    names = {m["name"] for m in styles}
    return [m for m in styles if m.get("teacher") not in names]


def draft_switch(models, style):
    """``(enabled, tooltip)`` of the Draft switch while ``style`` is chosen."""
    if not models:
        return True, "Run the chosen style's lite net, when it has one: several times faster, a little less faithful"
    if not style:
        return False, "Choose a style first"
    model = draft_model(models, style)
    if model is None:
        return False, (f"{style} has no lite net to make fast drafts with; make one with {lite_command(style)} "
                       "(docs/training.md, \"Lite nets\")")
    if model == style:
        return True, f"{style} is a lite net itself: it runs as it is"
    return True, f"Run {model}, a smaller net distilled from {style}: several times faster, a little less faithful"


def training_note(model):
    """' (partly trained: 300 of 2,000 iterations)' for a model stopped early, else ''."""
    if not model.get("partly_trained"):
        return ""
    own, planned = model.get("recipe", {}).get("iterations"), model.get("planned_iterations")
    if isinstance(own, int) and isinstance(planned, int):
        return f" (partly trained: {own:,} of {planned:,} iterations)"
    return " (partly trained)"


def gallery_label(model):
    """A style's name in the gallery, marked when it is partly trained."""
    return (model.get("display_name") or model["name"]) + training_note(model)


def gallery_tooltip(model):
    """The model name, how long it trained, and its lite net or teacher."""
    iterations = model.get("iterations")
    return (model["name"] + (f": {iterations:,} iterations" if isinstance(iterations, int) else "")
            + (f"; Draft runs its lite net {model['lite']}" if model.get("lite") else "")
            + (f"; a lite net of {model['teacher']} (not installed)" if model.get("teacher") else ""))


def thumbnail_bytes(model):
    """The PNG bytes of a model's thumbnail from ``info(thumbnails=True)``, or None."""
    data = model.get("thumbnail_png")
    if not data:
        return None
    try:
        return base64.b64decode(data)
    except ValueError:
        return None


def result_layer_name(source, style_label, style_labels, draft=False):
    """``"SOURCE (STYLE)"``, or ``"SOURCE (STYLE) (draft)"`` for a draft, where a SOURCE that is itself a
    result loses its ``" (STYLE)"`` and ``" (draft)"`` first, so stylising a stylised layer gives
    ``"Photo (Mosaic)"``, not ``"Photo (Udnie) (draft) (Mosaic)"``."""
    suffixes = [f" ({label})" for label in style_labels] + [DRAFT_SUFFIX]
    base = source
    stripped = True
    while stripped:
        stripped = False
        for suffix in suffixes:
            if base.endswith(suffix) and len(base) > len(suffix):
                base, stripped = base[:-len(suffix)], True
    return f"{base} ({style_label})" + (DRAFT_SUFFIX if draft else "")
