# Driver script (run inside Krita by the test driver plug-in; the test prepends PARAMS = {...}).
# Builds a document from raw layer files, optionally selects a rectangle, then runs PARAMS["steps"]
# one after another: trigger one of the brushwork plug-in's own actions and wait for its job, use
# the docker's real widgets (mouse clicks, keys, wheel), fill in the Train dialog (record its
# estimate, start, optionally press "Stop and keep"), kill the daemon the plug-in started, dump
# every layer's pixels with the docker's state, undo... Without "steps": trigger PARAMS["action"],
# dump "result", undo PARAMS["undo"] times and dump "undone". Then Krita quits.
import json
import os
import time
from importlib import import_module

import brushwork
from krita import Selection
from brushwork.qt import BINDING, QApplication, QByteArray, QPoint, QPointF, Qt, QWheelEvent

QTest = import_module(f"{BINDING}.QtTest").QTest

controller = brushwork.controller


def build_document(spec):
    doc = app.createDocument(spec["width"], spec["height"], "test", "RGBA", spec["depth"], spec["profile"], 72.0)
    app.activeWindow().addView(doc)
    background = doc.rootNode().childNodes()[0]
    previous = background
    for layer in spec["layers"]:
        node = background if layer is spec["layers"][0] else doc.createNode(layer["name"], "paintlayer")
        node.setName(layer["name"])
        with open(layer["file"], "rb") as f:
            node.setPixelData(QByteArray(f.read()), *layer["rect"])
        if node is not background:
            doc.rootNode().addChildNode(node, previous)
        node.setOpacity(layer.get("opacity", 255))
        node.setBlendingMode(layer.get("blending", "normal"))
        node.setVisible(layer.get("visible", True))
        previous = node
    doc.setActiveNode(doc.rootNode().childNodes()[spec.get("active", 0)])
    if spec.get("selection"):
        selection = Selection()
        for x, y, w, h, value in spec["selection"]:   # later rectangles overwrite earlier ones
            selection.select(x, y, w, h, value)
        doc.setSelection(selection)
    doc.refreshProjection()
    doc.waitForDone()
    if spec.get("save_as"):   # a saved image: not modified, with a file name
        doc.saveAs(spec["save_as"])
        doc.waitForDone()
    return doc


documents = [build_document(PARAMS)]
doc = documents[0]


def panel():
    for docker in app.dockers():
        if docker.objectName() == "brushwork_docker":
            return docker.widget()
    return None


# (done, total, status text, progress bar maximum, progress bar text) as the docker showed them
shown_progress = []
worker_progress = []   # (done, total) as the job's worker thread reported them, when it did
events = {}   # name -> what a step noted: a time.monotonic(), the docker's state after a click
train_state = {}   # what the Train dialog and button showed (step "train_dialog")


def record_progress(done, total, text):
    docker = panel()   # its slot ran first: the docker connected to the signal before this script
    shown_progress.append([done, total, docker.status.text(), docker.progress.maximum(), docker.progress.text()]
                          if docker else [done, total])


controller.progress.connect(record_progress)
controller.runner.progress.connect(lambda done, total, text: worker_progress.append([done, total]),
                                   Qt.ConnectionType.DirectConnection)


def dump(tag, document=None):
    """Write ``document``'s (default: the first one's) layers, projection and the docker's state."""
    document = document or doc
    layers = []
    nodes = [node for node in document.rootNode().childNodes() if node.type() != "selectionmask"]
    for index, node in enumerate(nodes):
        x, y, w, h = node.bounds().getRect()
        path = os.path.join(out, f"{tag}_{index}.raw")
        with open(path, "wb") as f:
            f.write(bytes(node.pixelData(x, y, w, h)))
        layers.append({"name": node.name(), "type": node.type(), "bounds": [x, y, w, h], "file": path,
                       "opacity": node.opacity(), "depth": node.colorDepth(), "blending": node.blendingMode(),
                       "visible": node.visible()})
    document.refreshProjection()
    projection = os.path.join(out, f"{tag}_projection.raw")
    with open(projection, "wb") as f:
        f.write(bytes(document.pixelData(0, 0, document.width(), document.height())))
    docker = panel()
    state = {"width": document.width(), "height": document.height(), "layers": layers, "projection": projection,
             "active": document.activeNode().name() if document.activeNode() else None,
             "name": document.name(), "file_name": document.fileName(), "modified": document.modified(),
             "is_active_document": app.activeDocument() == document, "documents": len(app.documents()),
             "error": controller.last_error, "status": docker.status.text() if docker else None,
             "connection": docker.connection_label.text() if docker else None,
             "gallery": [docker.gallery.item(i).data(Qt.ItemDataRole.UserRole) for i in range(docker.gallery.count())]
             if docker else None,
             "progress": shown_progress, "worker_progress": list(worker_progress), "progress_text": docker.progress.text() if docker else None,
             "cancel_enabled": docker.cancel_button.isEnabled() if docker else None,
             "strength_shown": docker.strength_label.text() if docker else None,
             "stylize_button_y": docker.stylize_button.mapTo(docker, QPoint(0, 0)).y() if docker else None,
             "panel_minimum_height": docker.minimumSizeHint().height() if docker else None,
             "docker_minimum_height": docker.parentWidget().minimumSizeHint().height() if docker else None,
             "gallery_labels": [docker.gallery.item(i).text() for i in range(docker.gallery.count())]
             if docker else None,
             "draft": {"checked": docker.draft.isChecked(), "enabled": docker.draft.isEnabled(),
                       "tooltip": docker.draft.toolTip()} if docker else None,
             "train": train_state, "events": events}
    with open(os.path.join(out, f"{tag}.json"), "w") as f:
        json.dump(state, f)


def when_idle(fn, waited=0):
    if controller.busy and waited < 150_000:
        after(100, lambda: when_idle(fn, waited + 100))
    else:
        fn()


def when(condition, fn, waited=0):
    if not condition() and waited < 150_000:
        after(20, lambda: when(condition, fn, waited + 20))
    else:
        fn()


def widget(name):
    return getattr(panel(), name)


# ---- steps: each takes its spec and a function to call when it is done ----------------------

def step_trigger(step, then):
    app.action(step["action"]).trigger()
    after(200, lambda: when_idle(then))


def step_show_docker(step, then):
    """Show the brushwork docker (laid out, so its geometry is real)."""
    dock = panel().parentWidget()
    dock.show()
    dock.raise_()
    then()


def step_activate(step, then):
    """Make the document's layer number ``index`` (bottom first) the active one."""
    doc.setActiveNode(doc.rootNode().childNodes()[step["index"]])
    then()


def step_click(step, then):
    """A left click on a docker widget, at a fraction of its size (default: the centre). ``mark``
    notes how many progress reports the job's thread had made by then, and the docker's status and
    Cancel button right after the click (before Qt delivers anything else)."""
    progress_before = len(worker_progress)
    target = widget(step["widget"])
    fx, fy = step.get("at", [0.5, 0.5])
    QTest.mouseClick(target, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     QPoint(int(target.width() * fx), int(target.height() * fy)))
    if "mark" in step:
        docker = panel()
        events[step["mark"]] = {"worker_progress": progress_before, "status": docker.status.text(),
                                "cancel_enabled": docker.cancel_button.isEnabled()}
    then()


def step_choose_style(step, then):
    """A left click on the gallery's entry of the style model ``name``."""
    gallery = panel().gallery
    item = next(gallery.item(i) for i in range(gallery.count())
                if gallery.item(i).data(Qt.ItemDataRole.UserRole) == step["name"])
    gallery.scrollToItem(item)
    QTest.mouseClick(gallery.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     gallery.visualItemRect(item).center())
    then()


def step_key(step, then):
    target = widget(step["widget"])
    target.setFocus()
    QTest.keyClick(target, getattr(Qt.Key, step["key"]))
    then()


def step_wheel(step, then):
    """One notch of the mouse wheel over a docker widget (positive: up)."""
    target = widget(step["widget"])
    centre = QPointF(target.width() / 2, target.height() / 2)
    event = QWheelEvent(centre, QPointF(target.mapToGlobal(centre.toPoint())), QPoint(0, 0),
                        QPoint(0, 120 * step.get("notches", 1)), Qt.MouseButton.NoButton,
                        Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(target, event)
    then()


def step_start(step, then):
    """Trigger an action and go on once its job has reported ``progress_total`` > 0 (or a message)."""
    app.action(step["action"]).trigger()
    minimum = step.get("tiles_done", 0)
    when(lambda: any(p[1] > 0 and p[0] >= minimum for p in shown_progress) or not controller.busy, then)


def train_dialog():
    for window in QApplication.topLevelWidgets():
        if window.objectName() == "brushwork_train_dialog" and window.isVisible():
            return window
    return None


def step_train_dialog(step, then):
    """Press Train and fill in its dialog once it showed its first estimate: ``name``, ``iterations``
    and, optionally, the photos folder ``content``, the ``lite`` check box and the ``lite_recipe``; note both estimates
    and whether Start was enabled, press Start (Cancel while it is disabled) and, with ``stop_after``,
    press the docker's "Stop and keep" once that many iterations are done, or with ``cancel_on`` its
    Cancel once a progress message holds that text. With ``make_lite`` (a
    style's name) press "Make lite version" for that style instead of Start. Goes on when the
    training has ended."""
    app.action("brushwork_train_style").trigger()
    progress_before = len(shown_progress)

    def find_dialog(waited=0):
        dialog = train_dialog()
        if dialog is not None:
            after(100, lambda: when_idle(lambda: choose_photos(dialog)))   # its first estimate
        elif waited > 20_000:
            fail("the Train dialog did not open")
        else:
            after(100, lambda: find_dialog(waited + 100))

    def choose_photos(dialog):
        train_state["first_estimate"] = dialog.estimate_label.text()
        train_state["start_enabled_first"] = dialog.start_button.isEnabled()
        dialog.name.setText(step.get("name", ""))
        dialog.iterations.setValue(step.get("iterations", 1))
        if "lite" in step:
            dialog.lite.setChecked(step["lite"])
        if "lite_recipe" in step:
            dialog.lite_recipe.setCurrentIndex(dialog.lite_recipe.findData(step["lite_recipe"]))
        if "content" in step:
            dialog.folder.setText(step["content"])
            dialog.folder.editingFinished.emit()   # as when the artist leaves the field
        after(100, lambda: when_idle(lambda: start(dialog)))

    def start(dialog):
        train_state["estimate"] = dialog.estimate_label.text()
        train_state["start_enabled"] = dialog.start_button.isEnabled()
        train_state["lite_teachers"] = [dialog.teacher.itemData(i) for i in range(dialog.teacher.count())]
        if step.get("make_lite"):
            dialog.teacher.setCurrentIndex(dialog.teacher.findData(step["make_lite"]))
            train_state["make_lite_enabled"] = dialog.make_lite_button.isEnabled()
            dialog.make_lite_button.click()
            after(100, lambda: when_idle(then))
            return
        if not dialog.start_button.isEnabled():
            dialog.reject()
            after(100, lambda: when_idle(then))
            return
        dialog.start_button.click()
        if step.get("stop_after"):
            after(100, lambda: press_when(trained(step["stop_after"]), stop_and_keep))
        elif step.get("cancel_on"):
            after(100, lambda: press_when(shown(step["cancel_on"]), panel().cancel_button.click))
        else:
            after(100, lambda: when_idle(then))

    def trained(iterations):
        return lambda: any(total and done >= iterations for done, total, *_ in shown_progress[progress_before:])

    def shown(text):
        return lambda: any(text in message for _, _, message, *_ in shown_progress[progress_before:])

    def stop_and_keep():
        train_state["button_while_training"] = panel().train_button.text()
        panel().train_button.click()

    def press_when(condition, press, waited=0):
        """``press()`` once ``condition()`` holds during the training, then go on when idle."""
        if condition():
            press()
            after(100, lambda: when_idle(then))
        elif not controller.busy or waited > 150_000:
            then()
        else:
            after(100, lambda: press_when(condition, press, waited + 100))
    after(200, find_dialog)


def step_kill_daemon(step, then):
    """Kill the daemon the plug-in started (SIGKILL, as a crash would) and wait for the docker to say so."""
    controller.connection.daemon.process.kill()
    events["killed"] = time.monotonic()

    def reported():
        events["reported"] = time.monotonic()
        then()
    when(lambda: not controller.busy, reported)


def step_wait_idle(step, then):
    when_idle(then)


def step_dump(step, then):
    """Dump the first document, or with ``"document": "active"`` the active one."""
    dump(step["tag"], app.activeDocument() if step.get("document") == "active" else None)
    then()


def step_undo(step, then):
    """Undo ``times`` steps in the active document, one after the other.

    Krita's undo stack drops an undo asked for while the image is busy (it undoes only if it
    gets the image's barrier lock at once), and after an action Krita may still be updating
    the image (more so on a loaded machine), so each undo first waits for that lock, holds it
    while triggering the undo (the lock is re-entrant, so the stack gets it too) and then waits
    for the undo's own work to finish.
    """
    target = app.activeDocument()

    def undo(left, waited=0):
        if left == 0:
            then()
        elif not target.tryBarrierLock():
            if waited > 60_000:
                fail("the image stayed busy for a minute: could not undo")
                return
            after(20, lambda: undo(left, waited + 20))
        else:
            try:
                app.action("edit_undo").trigger()
            finally:
                target.unlock()
            target.waitForDone()
            after(0, lambda: undo(left - 1))
    undo(step["times"])


def step_new_document(step, then):
    """Open a second document (same PARAMS) in a new view: the docker follows the active view."""
    documents.append(build_document(PARAMS))
    then()


def step_show_document(step, then):
    window = app.activeWindow()
    target = documents[step["index"]]
    view = next(v for v in window.views() if v.document() == target)
    window.showView(view)
    view.setVisible()
    then()


STEPS = {name[5:]: fn for name, fn in dict(globals()).items() if name.startswith("step_")}


def run_steps(steps, index=0):
    if index == len(steps):
        finish()
        return
    step = steps[index]
    STEPS[step["do"]](step, lambda: after(step.get("pause_ms", 50), lambda: run_steps(steps, index + 1)))


steps = PARAMS.get("steps")
if steps is None:
    steps = [{"do": "trigger", "action": PARAMS["action"]}, {"do": "dump", "tag": "result"}]
    if PARAMS.get("undo"):
        steps += [{"do": "undo", "times": PARAMS["undo"]}, {"do": "dump", "tag": "undone"}]
after(300, lambda: when_idle(lambda: run_steps(steps)))
