"""Every call into Krita's API lives here; the rest of the plug-in never imports ``krita`` (``qt`` only
reads which Qt binding it is built on).

Undo in Krita 5.1's Python API (checked in Krita 5.1.5): ``setPixelData`` is *not* recorded,
``addChildNode``, ``Node.remove`` and ``Document.scaleImage`` are, one undo step each, and
there is no way to group steps. So results are written into nodes that are not yet part of
the document (a new layer, or a ``duplicate()`` of the layer that then takes its place):

* stylize, new layer: 1 undo step; stylize, replace: 2 (insert the copy, remove the original);
* upscale: 1 (scale the image) + 2 per processed layer. Writing the upscaled pixels into the
  layers the scale just enlarged would make it one step, but undoing "Scale Image" then brings
  back the original size with the upscaled pixels (measured in Krita 5.1.5), so it is not done.
"""

from collections import namedtuple

from krita import DockWidget, DockWidgetFactory, DockWidgetFactoryBase, Extension, Krita

from .pixels import Rect, UnsupportedImage, bytes_per_pixel, pixel_format, request_region, selection_mask
from .qt import QByteArray, QTimer

# What a job needs from the document, captured in the GUI thread before the job starts.
Snapshot = namedtuple("Snapshot", "document node region format pixels mask")

ACTIONS = (  # id, menu text, controller method
    ("brushwork_stylize", "brushwork: Stylize", "stylize"),
    ("brushwork_upscale", "brushwork: Upscale image", "upscale"),
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
    # Krita makes the added layer active from its event queue: give the source back its place after that
    QTimer.singleShot(0, lambda: _activate(snapshot.document, node))
    return layer


def _activate(document, node):
    """Make ``node`` the active layer if its document is still the active one and the node still in it."""
    if Krita.instance().activeDocument() == document and node.parentNode() is not None:
        document.setActiveNode(node)


def replace_layer_pixels(snapshot, pixels, scale=1):
    """Put ``pixels`` over the snapshot's region (times ``scale``) into a copy of its layer that replaces it.

    With ``scale`` > 1 the copy is cleared first (the image was just scaled, the pixels are
    the whole layer at the new size).
    """
    _check_alive(snapshot)
    node = snapshot.node
    copy = node.duplicate()
    if scale > 1:
        bounds = copy.bounds()
        clear_size = bounds.width() * bounds.height() * bytes_per_pixel(snapshot.format)
        copy.setPixelData(QByteArray(bytes(clear_size)), *bounds.getRect())
    copy.setPixelData(QByteArray(bytes(pixels)), *snapshot.region.scaled(scale))
    was_active = snapshot.document.activeNode() == node
    node.parentNode().addChildNode(copy, node)
    node.remove()
    if was_active:
        snapshot.document.setActiveNode(copy)
    snapshot.document.refreshProjection()
    return copy


def scale_image(document, factor):
    """Scale the whole image (every layer, bicubic; resolution in ppi kept) by ``factor``: one undo step."""
    resolution = int(document.resolution())
    document.scaleImage(document.width() * factor, document.height() * factor, resolution, resolution, "Bicubic")
    document.waitForDone()


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
