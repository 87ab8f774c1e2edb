"""The docker's contents, in plain Qt (no Krita calls): connection, style gallery, options, progress.

It is laid out to fit a small screen: the daemon's settings live in a dialog (the ⚙ button),
the connection line is one line, and the status area has a fixed height, so the action
buttons never move when a message appears.
"""

from .styles import draft_switch, gallery_label, gallery_styles, gallery_tooltip, thumbnail_bytes
from .qt import (QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFormLayout, QFrame, QHBoxLayout, QIcon, QLabel,
                 QLineEdit, QListView, QListWidget, QListWidgetItem, QPixmap, QProgressBar, QPushButton, QScrollArea,
                 QSize, QSizePolicy, QSlider, Qt, QVBoxLayout, QWidget)
from .settings import UPSCALE_FACTORS

THUMBNAIL_PX = 64
STATUS_LINES = 3      # the status area's fixed height, in lines of text (longer messages scroll)
SPACING_PX = 4


class DaemonSettingsDialog(QDialog):
    """Where the plug-in finds its daemon: address, CURVE key files, whether and which program to start."""

    def __init__(self, settings, parent=None):
        super().__init__(parent)
        self.setWindowTitle("brushwork daemon settings")
        form = QFormLayout(self)
        self.endpoint = QLineEdit(settings.endpoint)
        self.endpoint.setPlaceholderText("local daemon (default socket)")
        form.addRow("Address", self.endpoint)
        self.server_key = QLineEdit(settings.server_key)
        self.server_key.setPlaceholderText("server.key (remote daemon only)")
        form.addRow("Server key", self.server_key)
        self.client_key = QLineEdit(settings.client_key)
        self.client_key.setPlaceholderText("NAME.key_secret (remote daemon only)")
        form.addRow("Client key", self.client_key)
        self.manage = QCheckBox("Start `brushwork serve` when needed, stop it with Krita")
        self.manage.setChecked(settings.manage_daemon)
        form.addRow(self.manage)
        self.executable = QLineEdit(settings.brushwork_executable)
        self.executable.setPlaceholderText("as installed")
        form.addRow("Program", self.executable)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def changes(self):
        """The settings as edited, for ``Controller.update_settings``."""
        return {"endpoint": self.endpoint.text().strip(), "server_key": self.server_key.text().strip(),
                "client_key": self.client_key.text().strip(), "manage_daemon": self.manage.isChecked(),
                "brushwork_executable": self.executable.text().strip()}


class Panel(QWidget):
    def __init__(self, controller, parent=None):
        super().__init__(parent)
        self.controller = controller
        s = controller.settings
        layout = QVBoxLayout(self)
        layout.setContentsMargins(SPACING_PX, SPACING_PX, SPACING_PX, SPACING_PX)
        layout.setSpacing(SPACING_PX)

        row = QHBoxLayout()
        self.connection_label = QLabel("○ not connected")
        self.connection_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)   # one line, clipped
        self.connect_button = QPushButton("Connect")
        self.connect_button.clicked.connect(lambda: controller.refresh(start_daemon=True))
        self.settings_button = QPushButton("⚙")
        self.settings_button.setToolTip("Daemon settings: address, key files, the program to start")
        self.settings_button.clicked.connect(self.edit_daemon_settings)
        row.addWidget(self.connection_label, 1)
        row.addWidget(self.connect_button)
        row.addWidget(self.settings_button)
        layout.addLayout(row)

        self.gallery = QListWidget()
        self.gallery.setViewMode(QListView.ViewMode.IconMode)
        self.gallery.setIconSize(QSize(THUMBNAIL_PX, THUMBNAIL_PX))
        self.gallery.setResizeMode(QListView.ResizeMode.Adjust)
        self.gallery.setMovement(QListView.Movement.Static)
        self.gallery.setMinimumHeight(THUMBNAIL_PX + 2 * self.fontMetrics().lineSpacing())
        self.gallery.setToolTip("Style")
        self.gallery.currentItemChanged.connect(self._style_chosen)
        layout.addWidget(self.gallery, 1)

        options = QFormLayout()
        options.setSpacing(SPACING_PX)
        self.strength = QSlider(Qt.Orientation.Horizontal)
        self.strength.setRange(0, 100)
        self.strength.setValue(round(s.strength * 100))
        self.strength_label = QLabel(f"{self.strength.value()} %")
        # every change of the visible value (drag, click on the track, wheel, keys) is what the next job uses
        self.strength.valueChanged.connect(self._strength_changed)
        self.draft = QCheckBox("Draft (fast lite net)")
        self.draft.setChecked(s.draft)
        self.draft.toggled.connect(lambda on: controller.update_settings(draft=on))
        row = QHBoxLayout()
        row.addWidget(self.strength, 1)
        row.addWidget(self.strength_label)
        row.addWidget(self.draft)
        options.addRow("Strength", row)
        self.preserve = QCheckBox("Preserve colours")
        self.preserve.setChecked(s.preserve_colors)
        self.preserve.toggled.connect(lambda on: controller.update_settings(preserve_colors=on))
        self.output = self._combo([("New layer above", "new_layer"), ("Replace layer", "replace")], s.output,
                                  lambda v: controller.update_settings(output=v))
        row = QHBoxLayout()
        row.addWidget(self.output, 1)
        row.addWidget(self.preserve)
        options.addRow("Result", row)
        self.factor = self._combo([(f"x{f}", f) for f in UPSCALE_FACTORS], s.upscale_factor,
                                  lambda v: controller.update_settings(upscale_factor=v))
        self.layers = self._combo([("all paint layers", "all"), ("active layer", "active")], s.upscale_layers,
                                  lambda v: controller.update_settings(upscale_layers=v))
        self.layers.setToolTip("The paint layers that go through the network; Krita scales the others")
        row = QHBoxLayout()
        row.addWidget(self.factor)
        row.addWidget(self.layers, 1)
        options.addRow("Upscale", row)
        self.train_name = QLineEdit(s.train_name)
        self.train_name.setPlaceholderText("my_style")
        self.train_name.editingFinished.connect(
            lambda: controller.update_settings(train_name=self.train_name.text().strip()))
        options.addRow("New style", self.train_name)
        layout.addLayout(options)

        buttons = QHBoxLayout()
        self.stylize_button = self._button("Stylize", controller.stylize, buttons)
        self.upscale_button = self._button("Upscale", controller.upscale, buttons)
        self.upscale_button.setToolTip("Open the image, scaled by the factor, as a new document: "
                                       "the image itself stays as it is (nothing to undo there)")
        self.train_button = self._button("Train", controller.train_style, buttons)
        self.cancel_button = self._button("Cancel", controller.cancel, buttons)
        self.cancel_button.setEnabled(False)
        layout.addLayout(buttons)
        self.progress = QProgressBar()
        self.progress.setMaximumHeight(self.fontMetrics().lineSpacing() + 6)
        self.progress.reset()
        layout.addWidget(self.progress)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.status_area = QScrollArea()
        self.status_area.setWidget(self.status)
        self.status_area.setWidgetResizable(True)
        self.status_area.setFrameShape(QFrame.Shape.NoFrame)
        self.status_area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.status_area.setFixedHeight(STATUS_LINES * self.fontMetrics().lineSpacing() + 4)
        layout.addWidget(self.status_area)

        controller.connection_changed.connect(self._show_connection)
        controller.models_changed.connect(self._show_models)
        controller.progress.connect(self._show_progress)
        controller.status_changed.connect(self._show_status)
        controller.busy_changed.connect(self._show_busy)
        controller.cancelling.connect(self._show_cancelling)
        controller.training_changed.connect(self._show_training)
        self._show_models(controller.models)
        self._show_connection(*controller.connection_state)
        self._show_status(*controller.shown_status)
        if not controller.busy:
            controller.refresh(start_daemon=False)

    def edit_daemon_settings(self):
        """Open the daemon settings dialog; OK saves them (used from the next job on)."""
        dialog = DaemonSettingsDialog(self.controller.settings, self)
        if dialog.exec() == QDialog.DialogCode.Accepted:
            self.controller.update_settings(**dialog.changes())

    def _combo(self, choices, current, on_change):
        combo = QComboBox()
        for text, value in choices:
            combo.addItem(text, value)
        combo.setCurrentIndex(max(0, combo.findData(current)))
        combo.currentIndexChanged.connect(lambda i: on_change(combo.itemData(i)))
        return combo

    def _button(self, text, slot, row):
        button = QPushButton(text)
        button.clicked.connect(slot)
        row.addWidget(button)
        return button

    def _strength_changed(self, value):
        self.strength_label.setText(f"{value} %")
        self.controller.update_settings(strength=value / 100)

    def _style_chosen(self, item, _previous):
        if item is not None:
            self.controller.update_settings(style=item.data(Qt.ItemDataRole.UserRole))
        self._show_draft_switch()

    def _show_draft_switch(self):
        """The Draft switch works for the chosen style only when it has a lite net; the tooltip says why not."""
        enabled, tooltip = draft_switch(self.controller.models, self.controller.settings.style)
        self.draft.setEnabled(enabled)
        self.draft.setToolTip(tooltip)

    def _show_models(self, models):
        chosen = self.controller.settings.style
        self.gallery.blockSignals(True)
        self.gallery.clear()
        for model in gallery_styles(models):
            item = QListWidgetItem(gallery_label(model))
            item.setData(Qt.ItemDataRole.UserRole, model["name"])
            item.setToolTip(gallery_tooltip(model))
            pixmap = QPixmap()
            png = thumbnail_bytes(model)
            if png and pixmap.loadFromData(png):
                item.setIcon(QIcon(pixmap))
            self.gallery.addItem(item)
            if model["name"] == chosen:
                self.gallery.setCurrentItem(item)
        self.gallery.blockSignals(False)
        self._show_draft_switch()

    def _show_connection(self, connected, text):
        self.connection_label.setText(("● " if connected else "○ ") + text)
        self.connection_label.setToolTip(text)

    def _show_progress(self, done, total, text):
        if total > 0:
            self.progress.setRange(0, total)
            self.progress.setValue(done)
        else:
            self.progress.setRange(0, 0)   # busy indicator
        if text:
            self._show_status(text, False)

    def _show_training(self, training):
        """While a training runs, the Train button stops it and keeps the model."""
        self.train_button.setText("Stop and keep" if training else "Train")
        self.train_button.setToolTip("End the training now; the new style keeps what it has learnt so far"
                                     if training else "")
        self.train_button.setEnabled(True)

    def _show_status(self, text, error):
        self.status.setStyleSheet("color: #d04040;" if error else "")
        self.status.setText(text)

    def _show_cancelling(self):
        self.cancel_button.setEnabled(False)
        self._show_status("cancelling…", False)

    def _show_busy(self, busy):
        for button in (self.stylize_button, self.upscale_button, self.train_button, self.connect_button):
            button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)
        if not busy:
            self.progress.setRange(0, 1)
            self.progress.reset()   # idle: an empty bar, no percentage
