"""Watches the brushwork plug-in's dialogs in the GIMP dialog tests (on PYTHONPATH there only).

In the plug-in process (``brushwork.py ... -run``) it wraps ``GimpUi.ProcedureDialog.run``: once
the real dialog is on screen it writes what the dialog shows to
``$BRUSHWORK_DIALOG_PROBE/<case>.json`` (the case named in ``$BRUSHWORK_DIALOG_PROBE/case``),
sets the ``scale`` argument to 8 if there is one and records the labels again, then presses
Cancel. Every other Python program GIMP starts is left alone.
"""

import json
import os
import sys
import time

STARTED = time.monotonic()

if os.path.basename(sys.argv[0]) == "brushwork.py" and "-run" in sys.argv:
    import gi

    gi.require_version("Gtk", "3.0")
    gi.require_version("Gdk", "3.0")
    gi.require_version("GimpUi", "3.0")
    from gi.repository import Gdk, GimpUi, GLib, Gtk

    PROBE_DIR = os.environ["BRUSHWORK_DIALOG_PROBE"]

    def _widgets(widget):
        yield widget
        if isinstance(widget, Gtk.Container):
            children = []
            widget.forall(children.append)
            for child in children:
                yield from _widgets(child)

    def _labels(dialog):
        return [w.get_label() for w in _widgets(dialog) if isinstance(w, Gtk.Label) and w.get_visible()
                and w.get_mapped()]

    def _describe(dialog, shown_at):
        mnemonics = []
        for w in _widgets(dialog):
            if isinstance(w, Gtk.Label) and w.get_mapped() and w.get_use_underline():
                key = w.get_mnemonic_keyval()
                if key != 0xffffff:  # GDK_KEY_VoidSymbol: no mnemonic
                    mnemonics.append([chr(Gdk.keyval_to_unicode(key)).lower(), w.get_label()])
        combos = []
        for w in _widgets(dialog):
            if isinstance(w, Gtk.ComboBox) and w.get_mapped() and w.get_model() is not None:
                model = w.get_model()
                rows = [[model.get_value(it, i) if model.get_n_columns() > i else None for i in (0, 1)]
                        for it in _iterate(model)]
                combos.append({"type": type(w).__name__, "rows": rows, "active_id": w.get_active_id()})
        entries = [w.get_text() for w in _widgets(dialog) if isinstance(w, Gtk.Entry) and w.get_mapped()
                   and not isinstance(w.get_parent(), (Gtk.ComboBox, Gtk.SpinButton)) and not isinstance(w, Gtk.SpinButton)]
        return {"opened_after_s": shown_at - STARTED, "title": dialog.get_title(),
                "labels": _labels(dialog), "mnemonics": mnemonics, "combos": combos, "entries": entries}

    def _iterate(model):
        it = model.get_iter_first()
        while it is not None:
            yield it
            it = model.iter_next(it)

    def _record_and_cancel(dialog, shown_at):
        with open(os.path.join(PROBE_DIR, "case")) as f:
            case = f.read().strip()
        record = _describe(dialog, shown_at)
        config = dialog.get_property("config")
        if config.find_property("scale") is not None:
            config.set_property("scale", "8")
            record["labels_at_scale_8"] = _labels(dialog)
        with open(os.path.join(PROBE_DIR, case + ".json"), "w") as f:
            json.dump(record, f, indent=1)
        dialog.response(Gtk.ResponseType.CANCEL)
        return False

    _original_run = GimpUi.ProcedureDialog.run

    def _run(dialog):
        def when_shown(*_):
            GLib.timeout_add(300, _record_and_cancel, dialog, time.monotonic())
        dialog.connect("map", when_shown)
        return _original_run(dialog)

    GimpUi.ProcedureDialog.run = _run
