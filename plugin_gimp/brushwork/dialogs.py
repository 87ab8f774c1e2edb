"""The procedures' dialogs (GimpUi): model drop-downs, the daemon's state, what Draft runs, the upscaled size; and
Train Style's question before it starts and its "Stop and Keep" window.

A dialog opens at once: it asks the daemon for its models for at most a second and never
starts one (that happens when the user presses OK). While no daemon answers it says so and
still lists the models the daemon served last time, by their display names.
"""

import gi

gi.require_version("GimpUi", "3.0")
gi.require_version("Gtk", "3.0")
from gi.repository import GimpUi, Gtk  # noqa: E402

import gimp_pixels  # noqa: E402
import model_list  # noqa: E402
import protocol  # noqa: E402
from client import Client  # noqa: E402

PROBE_TIMEOUT_S = 1.0  # a daemon answers info at once, even while it computes


def daemon_models(settings, config_dir):
    """``(models, problem)``: the daemon's models, or the last known ones and a sentence saying
    that no daemon answers and what happens next."""
    endpoint = settings["endpoint"] or protocol.default_endpoint()
    try:
        with Client(endpoint, timeout=PROBE_TIMEOUT_S, server_key=settings["server_key"] or None,
                    client_key=settings["client_key"] or None) as client:
            models = client.info()["models"]
    except (protocol.BrushworkError, ValueError, OSError) as exc:
        return model_list.last_known(config_dir), _unreachable(settings, endpoint, exc)
    model_list.remember(config_dir, models)
    return models, None


def _unreachable(settings, endpoint, exc):
    if settings["server_key"] or settings["client_key"]:
        return (f"The brushwork daemon at {endpoint} does not answer ({exc}). Check its address and the key "
                "files in Filters > brushwork > Settings.")
    if settings["manage_daemon"]:
        return (f"No brushwork daemon answers at {endpoint}. It will be started when you press OK "
                "(the first start takes up to a minute).")
    return (f"No brushwork daemon answers at {endpoint}. Start it with `brushwork serve`, or let the plug-in "
            "start it (Filters > brushwork > Settings).")


def _prepend(dialog, widget):
    """Put ``widget`` above the dialog's generated fields."""
    widget.show_all()
    box = dialog.get_content_area()
    box.pack_start(widget, False, False, 6)
    box.reorder_child(widget, 0)


def _model_combo(config, prop, mnemonic, choices):
    """A labelled drop-down of ``choices`` (name, display name) bound to the string argument ``prop``;
    a display name already in ``prop`` selects its model."""
    store = Gtk.ListStore(str, str)
    for name, text in choices:
        store.append([name, text])
    current = config.get_property(prop)
    if current not in [name for name, _ in choices]:
        by_display = {text.casefold(): name for name, text in choices}
        config.set_property(prop, by_display.get(current.strip().casefold(), choices[0][0]))
    combo = GimpUi.prop_string_combo_box_new(config, prop, store, 0, 1)
    label = Gtk.Label.new_with_mnemonic(mnemonic)
    label.set_mnemonic_widget(combo)
    row = Gtk.Box(orientation=Gtk.Orientation.HORIZONTAL, spacing=12)
    row.pack_start(label, False, False, 0)
    row.pack_start(combo, True, True, 0)
    return row


def _result_size_label(config, width, height):
    """A label showing ``width`` × ``height`` times the chosen scale, following the scale."""
    label = Gtk.Label(xalign=0.0)

    def update(*_):
        scale = gimp_pixels.parse_scale(config.get_property("scale"))
        label.set_text(f"Result: {width * scale} × {height * scale} pixels")
    config.connect("notify::scale", update)
    update()
    return label


def _draft_note_label(config, models):
    """A label saying what Draft does for the chosen style (its lite net, or how to make one), following it."""
    label = Gtk.Label(xalign=0.0, wrap=True, max_width_chars=60)

    def update(*_):
        label.set_text(model_list.draft_note(models, config.get_property("style")))
    config.connect("notify::style", update)
    update()
    return label


def run(procedure, config, title, fields, settings, config_dir, source_size=None):
    """Show the procedure's dialog; True when the user pressed OK.

    ``fields`` are the arguments to show; ``style``/``model`` become drop-downs of the daemon's
    (or the last known) models, and ``draft`` a note saying what it runs for the chosen style.
    ``source_size`` (width, height) adds the upscaled size.
    """
    GimpUi.init("brushwork")
    dialog = GimpUi.ProcedureDialog(procedure=procedure, config=config, title=title)
    rows, notes = [], []
    if "style" in fields or "model" in fields:
        models, problem = daemon_models(settings, config_dir)
        if problem:
            note = Gtk.Label(label=problem, xalign=0.0, wrap=True, max_width_chars=60)
            rows.append(note)
        if "style" in fields and model_list.choices(models, "style"):
            rows.append(_model_combo(config, "style", "St_yle", model_list.choices(models, "style")))
            fields = [f for f in fields if f != "style"]
            if "draft" in fields:
                notes.append(_draft_note_label(config, models))
        elif "model" in fields and model_list.choices(models, "sr"):
            choices = [("", "Automatic (by scale)"), *model_list.choices(models, "sr")]
            rows.append(_model_combo(config, "model", "_Model", choices))
            fields = [f for f in fields if f != "model"]
    for row in reversed(rows):
        _prepend(dialog, row)
    if "strength" in fields:
        dialog.get_widget("strength", GimpUi.SpinScale.__gtype__)
    dialog.fill(fields)
    if source_size is not None:
        notes.append(_result_size_label(config, *source_size))
    for note in notes:
        note.show()
        dialog.get_content_area().pack_start(note, False, False, 6)
    accepted = dialog.run()
    dialog.destroy()
    return accepted


def estimate_text(name, estimate):
    """The measured time of a training, for the artist to decide on."""
    seconds, speed = estimate.get("seconds") or 0, estimate["s_per_iteration"]
    photos = f" on {estimate['photos']:,} photos" if estimate.get("photos") is not None else ""
    return (f"Training the style {name}{photos} takes about {protocol.describe_duration(seconds)} "
            f"({estimate.get('iterations') or '?'} iterations, {speed:.2g} s each, measured on "
            f"{estimate.get('hardware') or 'the daemon'}). A window lets you stop it at any time and keep "
            "what it has learnt.")


def confirm_training(name, estimate):
    """Show the measured time; True when the artist starts the training."""
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
        self.stopped = False
        self.dialog = Gtk.Dialog(title=f"Training {name} (brushwork)")
        self.dialog.get_content_area().add(Gtk.Label(label="The style trains on the daemon. Stop it now to keep "
                                                           "what it has learnt so far (a partly trained style)."))
        self.dialog.add_button("_Stop and Keep", Gtk.ResponseType.OK)
        self.dialog.connect("response", self._on_response)
        self.dialog.show_all()

    def _on_response(self, dialog, response):
        if response == Gtk.ResponseType.OK:
            self.stopped = True
            dialog.set_response_sensitive(response, False)

    def __call__(self):
        while Gtk.events_pending():
            Gtk.main_iteration()
        return self.stopped

    def close(self):
        self.dialog.destroy()
