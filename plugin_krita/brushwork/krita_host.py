"""Every call into Krita's API lives here; the rest of the plug-in never imports ``krita`` (``qt`` only
reads which Qt binding it is built on).

Undo in Krita's Python API (checked in Krita 5.1 to 6.0): ``setPixelData`` is *not* recorded,
``addChildNode``, ``Node.remove`` and ``Document.scaleImage`` are, one undo step each, and
there is no way to group steps. So results are written into nodes that are not yet part of
the document (a new layer, or a ``duplicate()`` of the layer that then takes its place):

* stylize, new layer: 1 undo step; stylize, replace: 2 (insert the copy, remove the original);
* upscale: 0 in the image, whose upscaled version opens as a new document with an empty undo
  history (see ``upscale_into_new_document``). In place it would take 1 step (scale the image)
  + 2 per processed layer; writing the upscaled pixels into the layers the scale just enlarged
  would make it one step, but undoing "Scale Image" then brings back the original size with
  the upscaled pixels (measured in Krita 5.1.5).
"""

import os
import shutil
import tempfile
from collections import namedtuple

from krita import DockWidget, DockWidgetFactory, DockWidgetFactoryBase, Extension, InfoObject, Krita

from .pixels import Rect, UnsupportedImage, bytes_per_pixel, pixel_format, request_region, selection_mask
from .qt import QByteArray, QTimer

# What a job needs from the document, captured in the GUI thread before the job starts.
Snapshot = namedtuple("Snapshot", "document node region format pixels mask")

ACTIONS = (  # id, menu text, controller method
    ("brushwork_stylize", "brushwork: Stylize", "stylize"),
    ("brushwork_upscale", "brushwork: Upscale into a new image", "upscale"),
    ("brushwork_train_style", "brushwork: Train style from selection", "train_style"),
    ("brushwork_cancel", "brushwork: Cancel", "cancel"),
)
DOCKER_ID = "brushwork_docker"


def active_document():
    """The active document, or UnsupportedImage when none is open."""
    document = Krita.instance().activeDocument()
    if document is None:
        raise UnsupportedImage("open an image first")
    return document


def document_key(document):
    """A key that stays the same for a document while it is open (its root node's unique id)."""
    return document.rootNode().uniqueId().toString()


def _paint_layer(node):
    if node is None:
        raise UnsupportedImage("select a paint layer first")
    if node.type() != "paintlayer":
        raise UnsupportedImage(f"the active layer {node.name()!r} is a {node.type()}; brushwork works on paint "
                               "layers (convert it with Layer > Convert > to Paint Layer)")
    return node


def _format(node):
    return pixel_format(node.colorModel(), node.colorDepth(), node.colorProfile())


def _canvas(document):
    return Rect(0, 0, document.width(), document.height())


def _selection_bounds(document):
    selection = document.selection()
    if selection is None:
        return None
    return Rect(selection.x(), selection.y(), selection.width(), selection.height())


def snapshot_active_layer(use_selection=True):
    """The active paint layer's pixels over layer bounds ∩ selection, plus the selection mask."""
    document = active_document()
    node = _paint_layer(document.activeNode())
    fmt = _format(node)
    selection = document.selection() if use_selection else None
    bounds = _selection_bounds(document) if selection is not None else None
    region = request_region(Rect(*node.bounds().getRect()), _canvas(document), bounds)
    pixels = bytes(node.pixelData(*region))
    mask = selection_mask(bytes(selection.pixelData(*region)), region) if selection is not None else None
    return Snapshot(document, node, region, fmt, pixels, mask)


def main_window():
    """Krita's active main window (a QMainWindow), to parent dialogs; None without one."""
    window = Krita.instance().activeWindow()
    return window.qwindow() if window is not None else None


def snapshot_selection():
    """The visible image (all layers merged) inside the selection's bounds, for training a style."""
    document = active_document()
    bounds = _selection_bounds(document)
    if bounds is None:
        raise UnsupportedImage("select the part of the image to learn the style from first")
    region = request_region(bounds, _canvas(document))
    fmt = pixel_format(document.colorModel(), document.colorDepth(), document.colorProfile())
    document.refreshProjection()
    return Snapshot(document, None, region, fmt, bytes(document.pixelData(*region)), None)


def snapshot_layers(active_only):
    """Snapshots of the paint layers to upscale (every one in the document, or just the active one)."""
    document = active_document()
    nodes = [_paint_layer(document.activeNode())] if active_only else list(_paint_layers(document.rootNode()))
    if not nodes:
        raise UnsupportedImage("the image has no paint layers to upscale")
    snapshots = []
    for node in nodes:
        region = Rect(*node.bounds().getRect()).intersect(_canvas(document))
        if not region.is_empty:
            snapshots.append(Snapshot(document, node, region, _format(node), bytes(node.pixelData(*region)), None))
    if not snapshots:
        raise UnsupportedImage("every paint layer is empty: there are no pixels to upscale")
    return snapshots


def _paint_layers(parent):
    for node in parent.childNodes():
        if node.type() == "paintlayer":
            yield node
        yield from _paint_layers(node)


def _check_alive(snapshot):
    if snapshot.document not in Krita.instance().documents():
        raise UnsupportedImage("the image was closed while brushwork was working; nothing was changed")
    if snapshot.node is not None and snapshot.node.parentNode() is None:
        raise UnsupportedImage(f"the layer {snapshot.node.name()!r} was deleted while brushwork was working")


def add_layer_above(snapshot, pixels, name):
    """Insert a new paint layer holding ``pixels`` (over the snapshot's region) above its layer.

    The snapshot's layer stays the active one, so the next Stylize works on the same source.
    """
    _check_alive(snapshot)
    node = snapshot.node
    layer = snapshot.document.createNode(name, "paintlayer")
    layer.setColorSpace(node.colorModel(), node.colorDepth(), node.colorProfile())
    layer.setPixelData(QByteArray(bytes(pixels)), *snapshot.region)
    node.parentNode().addChildNode(layer, node)
    snapshot.document.refreshProjection()
    # Krita adds the layer in its image thread and then makes it active from the event queue: wait for
    # the image, so that activation is queued before ours, and give the source back its place after it
    snapshot.document.waitForDone()
    QTimer.singleShot(0, lambda: _activate(snapshot.document, node))
    return layer


def _activate(document, node):
    """Make ``node`` the active layer if its document is still the active one and the node still in it."""
    if Krita.instance().activeDocument() == document and node.parentNode() is not None:
        document.setActiveNode(node)


def replace_layer_pixels(snapshot, pixels):
    """Put ``pixels`` over the snapshot's region into a copy of its layer that replaces it."""
    _check_alive(snapshot)
    node = snapshot.node
    copy = node.duplicate()
    copy.setPixelData(QByteArray(bytes(pixels)), *snapshot.region)
    was_active = snapshot.document.activeNode() == node
    node.parentNode().addChildNode(copy, node)
    node.remove()
    if was_active:
        snapshot.document.setActiveNode(copy)
    snapshot.document.refreshProjection()
    return copy


def upscale_into_new_document(snapshots, results, factor):
    """Open the snapshots' image, scaled by ``factor``, as a new document (the image itself is left
    as it is): every layer scaled by Krita (bicubic; resolution in ppi kept), the snapshots'
    layers holding ``results`` instead. Returns the new document, shown in a new view.

    It is built in a copy of the image that Krita never shows (``Document.clone``): scaled and
    filled there, saved as a .kra in a temporary folder and opened from it, like any file: so it
    keeps every layer (groups, masks, vector, filter and fill layers, their properties, guides),
    its undo history is empty (undoing there cannot bring back the small size with the upscaled
    pixels) and it has no file name (saving asks where).
    """
    check_documents_alive(snapshots)
    source = snapshots[0].document
    window = Krita.instance().activeWindow()
    if window is None:
        raise UnsupportedImage("open a Krita window first")
    title = f"{document_title(source)} x{factor}"
    paths = [_node_path(snapshot.node) for snapshot in snapshots]
    scratch = source.clone()
    try:
        resolution = int(source.resolution())
        scratch.scaleImage(source.width() * factor, source.height() * factor, resolution, resolution, "Bicubic")
        scratch.waitForDone()
        for snapshot, path, pixels in zip(snapshots, paths, results):
            layer = _node_at(scratch.rootNode(), path)
            bounds = layer.bounds()
            clear_size = bounds.width() * bounds.height() * bytes_per_pixel(snapshot.format)
            layer.setPixelData(QByteArray(bytes(clear_size)), *bounds.getRect())
            layer.setPixelData(QByteArray(bytes(pixels)), *snapshot.region.scaled(factor))
        scratch.setName(title)
        scratch.refreshProjection()
        scratch.waitForDone()
        result = _reopen(scratch)
    finally:
        scratch.close()
    result.setName(title)
    result.setFileName("")           # saving asks for a name (never the temporary file's)
    result.setModified(True)         # and closing it asks to save, like any new image
    window.addView(result)
    _keep(result)
    return result


_opened = []   # the Documents openDocument gave us (Krita creates them as owners of their image)


def _keep(document):
    """Hold on to a Document from ``openDocument``: it owns its image, so it is not left to
    Python's garbage collector while a view shows that image; closed ones are let go."""
    documents = Krita.instance().documents()
    _opened[:] = [d for d in _opened if d in documents] + [document]


def _reopen(document):
    """``document`` saved to a temporary .kra and opened from it: a new Document with no history."""
    app = Krita.instance()
    batch = app.batchmode()
    folder = tempfile.mkdtemp(prefix="brushwork-upscale-")
    path = os.path.join(folder, "upscaled.kra")
    app.setBatchmode(True)   # no dialogs while saving and opening it
    try:
        if not document.exportImage(path, InfoObject()):
            raise UnsupportedImage(f"Krita could not write the upscaled image to {path}; nothing was changed")
        opened = app.openDocument(path)
        if opened is None:
            raise UnsupportedImage(f"Krita could not open the upscaled image {path}; nothing was changed")
        opened.waitForDone()
        return opened
    finally:
        app.setBatchmode(batch)
        shutil.rmtree(folder, ignore_errors=True)


def document_title(document):
    """The name Krita shows for a document: its title, else its file name, else "Untitled"."""
    return document.name() or os.path.splitext(os.path.basename(document.fileName()))[0] or "Untitled"


def _node_path(node):
    """Child indices from the root down to ``node``."""
    path = []
    parent = node.parentNode()
    while parent is not None:
        path.insert(0, [child.uniqueId() for child in parent.childNodes()].index(node.uniqueId()))
        node, parent = parent, parent.parentNode()
    return path


def _node_at(root, path):
    node = root
    for index in path:
        node = node.childNodes()[index]
    return node


def check_documents_alive(snapshots):
    """Raise UnsupportedImage when a snapshot's image or layer is gone."""
    for snapshot in snapshots:
        _check_alive(snapshot)


def on_application_closing(callback):
    """Call ``callback()`` when Krita is about to quit."""
    Krita.instance().notifier().applicationClosing.connect(callback)


class BrushworkExtension(Extension):
    """Registers the plug-in's actions (Tools > Scripts; shortcuts in Settings > Configure Krita)."""

    def __init__(self, parent, controller):
        super().__init__(parent)
        self.controller = controller

    def setup(self):
        pass

    def createActions(self, window):
        for action_id, text, method in ACTIONS:
            action = window.createAction(action_id, text, "tools/scripts")
            action.triggered.connect(getattr(self.controller, method))


class BrushworkDocker(DockWidget):
    """Settings > Dockers > brushwork: hosts the plain-Qt panel."""

    controller = None   # set by register() before Krita creates any docker

    def __init__(self):
        super().__init__()
        from .panel import Panel
        self.setWindowTitle("brushwork")
        self.setWidget(Panel(self.controller))

    def canvasChanged(self, canvas):
        """Show the messages of the document now active."""
        view = canvas.view() if canvas is not None else None
        document = view.document() if view is not None else None
        self.controller.show_document(document_key(document) if document is not None else None)


class NoticeDocker(DockWidget):
    """Stands in for the brushwork docker when the plug-in cannot run; shows why."""

    notice = ""

    def __init__(self):
        super().__init__()
        from .qt import QLabel
        self.setWindowTitle("brushwork")
        label = QLabel(self.notice)
        label.setWordWrap(True)
        self.setWidget(label)

    def canvasChanged(self, canvas):
        pass


def register_notice(app, message):
    """Register a docker that only shows ``message`` (e.g. a missing dependency)."""
    NoticeDocker.notice = message
    app.addDockWidgetFactory(DockWidgetFactory(DOCKER_ID, DockWidgetFactoryBase.DockPosition.DockRight, NoticeDocker))


def register(app, controller):
    """Add the extension and the docker factory to Krita (called once, when Krita loads the plug-in)."""
    BrushworkDocker.controller = controller
    app.addExtension(BrushworkExtension(app, controller))
    app.addDockWidgetFactory(DockWidgetFactory(DOCKER_ID, DockWidgetFactoryBase.DockPosition.DockRight, BrushworkDocker))
    on_application_closing(controller.shutdown)
