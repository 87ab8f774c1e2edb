# Driver script (run inside Krita by the test driver plug-in; the test prepends PARAMS = {...}).
# Builds a document from raw layer files, optionally selects a rectangle, triggers one of the
# brushwork plug-in's own actions, waits for the job, dumps every layer's pixels, the docker's
# status text, style gallery and the progress it showed to `out`, optionally undoes and dumps the
# layer names again, then quits.
import json
import os

import brushwork
from krita import Selection
from brushwork.qt import QByteArray, Qt

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
             "progress": shown_progress}
    with open(os.path.join(out, f"{tag}.json"), "w") as f:
        json.dump(state, f)


def when_idle(fn, waited=0):
    if controller.busy and waited < 150_000:
        after(100, lambda: when_idle(fn, waited + 100))
    else:
        fn()


def trigger():
    app.action(PARAMS["action"]).trigger()
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
