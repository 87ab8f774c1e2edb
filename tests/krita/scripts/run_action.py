# Driver script (run inside Krita by the test driver plug-in; the test prepends PARAMS = {...}).
# Builds a document from raw layer files, optionally selects a rectangle, triggers one of the
# brushwork plug-in's own actions, waits for the job, dumps every layer's pixels, the docker's
# status text, style gallery and the progress it showed to `out`, optionally undoes and dumps the
# layer names again, then quits. With PARAMS["train_dialog"] it fills in the Train dialog, records
# its estimate and starts the training (optionally pressing "Stop and keep" after some iterations).
import json
import os

import brushwork
from krita import Selection
from brushwork.qt import QApplication, QByteArray, Qt

controller = brushwork.controller
doc = app.createDocument(PARAMS["width"], PARAMS["height"], "test", "RGBA", PARAMS["depth"],
                         PARAMS["profile"], 72.0)
app.activeWindow().addView(doc)
background = doc.rootNode().childNodes()[0]
previous = background
for spec in PARAMS["layers"]:
    node = background if spec is PARAMS["layers"][0] else doc.createNode(spec["name"], "paintlayer")
    node.setName(spec["name"])
    with open(spec["file"], "rb") as f:
        node.setPixelData(QByteArray(f.read()), *spec["rect"])
    if node is not background:
        doc.rootNode().addChildNode(node, previous)
    previous = node
doc.setActiveNode(doc.rootNode().childNodes()[PARAMS.get("active", 0)])
if PARAMS.get("selection"):
    selection = Selection()
    for x, y, w, h, value in PARAMS["selection"]:   # later rectangles overwrite earlier ones
        selection.select(x, y, w, h, value)
    doc.setSelection(selection)
doc.refreshProjection()
doc.waitForDone()


def panel():
    for docker in app.dockers():
        if docker.objectName() == "brushwork_docker":
            return docker.widget()
    return None


shown_progress = []   # (done, total, status text, progress bar maximum) as the docker showed them


def record_progress(done, total, text):
    docker = panel()   # its slot ran first: the docker connected to the signal before this script
    shown_progress.append([done, total, docker.status.text(), docker.progress.maximum()] if docker else [done, total])


controller.progress.connect(record_progress)


def dump(tag):
    layers = []
    nodes = [node for node in doc.rootNode().childNodes() if node.type() != "selectionmask"]
    for index, node in enumerate(nodes):
        x, y, w, h = node.bounds().getRect()
        path = os.path.join(out, f"{tag}_{index}.raw")
        with open(path, "wb") as f:
            f.write(bytes(node.pixelData(x, y, w, h)))
        layers.append({"name": node.name(), "type": node.type(), "bounds": [x, y, w, h], "file": path,
                       "opacity": node.opacity(), "depth": node.colorDepth()})
    docker = panel()
    state = {"width": doc.width(), "height": doc.height(), "layers": layers,
             "active": doc.activeNode().name() if doc.activeNode() else None,
             "error": controller.last_error, "status": docker.status.text() if docker else None,
             "connection": docker.connection_label.text() if docker else None,
             "gallery": [docker.gallery.item(i).data(Qt.ItemDataRole.UserRole) for i in range(docker.gallery.count())]
             if docker else None,
             "gallery_labels": [docker.gallery.item(i).text() for i in range(docker.gallery.count())]
             if docker else None,
             "progress": shown_progress, "train": train_state}
    with open(os.path.join(out, f"{tag}.json"), "w") as f:
        json.dump(state, f)


def when_idle(fn, waited=0):
    if controller.busy and waited < 150_000:
        after(100, lambda: when_idle(fn, waited + 100))
    else:
        fn()


train_state = {}   # what the Train dialog and button showed


def train_dialog():
    for widget in QApplication.topLevelWidgets():
        if widget.objectName() == "brushwork_train_dialog" and widget.isVisible():
            return widget
    return None


def fill_train_dialog(waited=0):
    dialog = train_dialog()
    if dialog is None:
        if waited > 20_000:
            fail("the Train dialog did not open")
        else:
            after(100, lambda: fill_train_dialog(waited + 100))
        return
    after(100, lambda: when_idle(lambda: choose_photos(dialog)))   # its first estimate


def choose_photos(dialog):
    spec = PARAMS["train_dialog"]
    train_state["first_estimate"] = dialog.estimate_label.text()
    train_state["start_enabled_first"] = dialog.start_button.isEnabled()
    dialog.name.setText(spec["name"])
    dialog.iterations.setValue(spec["iterations"])
    if "content" in spec:
        dialog.folder.setText(spec["content"])
        dialog.folder.editingFinished.emit()   # as when the artist leaves the field
    after(100, lambda: when_idle(lambda: start_training(dialog)))


def start_training(dialog):
    train_state["estimate"] = dialog.estimate_label.text()
    train_state["start_enabled"] = dialog.start_button.isEnabled()
    if not dialog.start_button.isEnabled():
        dialog.reject()
        after(100, lambda: when_idle(done))
        return
    dialog.start_button.click()
    stop_after = PARAMS["train_dialog"].get("stop_after")
    after(100, (lambda: stop_when_trained(stop_after)) if stop_after else (lambda: when_idle(done)))


def stop_when_trained(iterations, waited=0):
    if any(total and done_ >= iterations for done_, total, *_ in shown_progress):
        train_state["button_while_training"] = panel().train_button.text()
        panel().train_button.click()
        after(100, lambda: when_idle(done))
    elif not controller.busy or waited > 150_000:
        done()
    else:
        after(100, lambda: stop_when_trained(iterations, waited + 100))


def trigger():
    app.action(PARAMS["action"]).trigger()
    if PARAMS.get("train_dialog"):
        after(200, fill_train_dialog)
    else:
        after(200, lambda: when_idle(done))


def done():
    doc.waitForDone()
    dump("result")
    if PARAMS.get("undo"):
        for _ in range(PARAMS["undo"]):
            app.action("edit_undo").trigger()
            doc.waitForDone()
        dump("undone")
    finish()


after(300, lambda: when_idle(trigger))
