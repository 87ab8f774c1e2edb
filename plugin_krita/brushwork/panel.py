"""The docker's contents, in plain Qt (no Krita calls): connection, style gallery, options, progress."""

from .controller import gallery_label, gallery_tooltip, thumbnail_bytes
from .qt import (QCheckBox, QComboBox, QFormLayout, QGroupBox, QHBoxLayout, QIcon, QLabel, QLineEdit, QListView,
                 QListWidget, QListWidgetItem, QPixmap, QProgressBar, QPushButton, QSize, QSlider, Qt, QVBoxLayout,
                 QWidget)
from .settings import UPSCALE_FACTORS

THUMBNAIL_PX = 64


class Panel(QWidget):
    def __init__(self, controller, parent=None):
        super().__init__(parent)
        self.controller = controller
        s = controller.settings
        layout = QVBoxLayout(self)

        connection = QGroupBox("Daemon")
        form = QFormLayout(connection)
        self.connection_label = QLabel("not connected")
        self.connection_label.setWordWrap(True)
        self.connect_button = QPushButton("Connect")
        self.connect_button.clicked.connect(lambda: controller.refresh(start_daemon=True))
        row = QHBoxLayout()
        row.addWidget(self.connection_label, 1)
        row.addWidget(self.connect_button)
        form.addRow(row)
        self.endpoint = QLineEdit(s.endpoint)
        self.endpoint.setPlaceholderText("local daemon (default socket)")
        self.endpoint.editingFinished.connect(lambda: controller.update_settings(endpoint=self.endpoint.text().strip()))
        form.addRow("Address", self.endpoint)
        self.server_key = self._key_field(s.server_key, "server.key (remote daemon only)", "server_key")
        form.addRow("Server key", self.server_key)
        self.client_key = self._key_field(s.client_key, "NAME.key_secret (remote daemon only)", "client_key")
        form.addRow("Client key", self.client_key)
        self.manage = QCheckBox("Start `brushwork serve` when needed, stop it with Krita")
        self.manage.setChecked(s.manage_daemon)
        self.manage.toggled.connect(lambda on: controller.update_settings(manage_daemon=on))
        form.addRow(self.manage)
        self.executable = QLineEdit(s.brushwork_executable)
        self.executable.setPlaceholderText("as installed")
        self.executable.editingFinished.connect(
            lambda: controller.update_settings(brushwork_executable=self.executable.text().strip()))
        form.addRow("Program", self.executable)
        layout.addWidget(connection)

        self.gallery = QListWidget()
        self.gallery.setViewMode(QListView.ViewMode.IconMode)
        self.gallery.setIconSize(QSize(THUMBNAIL_PX, THUMBNAIL_PX))
        self.gallery.setResizeMode(QListView.ResizeMode.Adjust)
        self.gallery.setMovement(QListView.Movement.Static)
        self.gallery.setMinimumHeight(THUMBNAIL_PX + 40)
        self.gallery.currentItemChanged.connect(self._style_chosen)
        layout.addWidget(QLabel("Style"))
        layout.addWidget(self.gallery, 1)

        options = QFormLayout()
        self.strength = QSlider(Qt.Orientation.Horizontal)
        self.strength.setRange(0, 100)
        self.strength.setValue(round(s.strength * 100))
        self.strength_label = QLabel(f"{self.strength.value()} %")
        self.strength.valueChanged.connect(lambda v: self.strength_label.setText(f"{v} %"))
        self.strength.sliderReleased.connect(
            lambda: controller.update_settings(strength=self.strength.value() / 100))
        row = QHBoxLayout()
        row.addWidget(self.strength, 1)
        row.addWidget(self.strength_label)
        options.addRow("Strength", row)
        self.preserve = QCheckBox("Preserve colours")
        self.preserve.setChecked(s.preserve_colors)
        self.preserve.toggled.connect(lambda on: controller.update_settings(preserve_colors=on))
        options.addRow(self.preserve)
        self.output = self._combo([("New layer above", "new_layer"), ("Replace layer", "replace")], s.output,
                                  lambda v: controller.update_settings(output=v))
        options.addRow("Result", self.output)
        self.factor = self._combo([(f"x{f}", f) for f in UPSCALE_FACTORS], s.upscale_factor,
                                  lambda v: controller.update_settings(upscale_factor=v))
        self.layers = self._combo([("all paint layers", "all"), ("active layer", "active")], s.upscale_layers,
                                  lambda v: controller.update_settings(upscale_layers=v))
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
        self.train_button = self._button("Train", controller.train_style, buttons)
        self.cancel_button = self._button("Cancel", controller.cancel, buttons)
        self.cancel_button.setEnabled(False)
        layout.addLayout(buttons)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        layout.addWidget(self.progress)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.status)

        controller.connection_changed.connect(self._show_connection)
        controller.models_changed.connect(self._show_models)
        controller.progress.connect(self._show_progress)
        controller.message.connect(lambda text: self._show_status(text, error=False))
        controller.error.connect(lambda text: self._show_status(text, error=True))
        controller.busy_changed.connect(self._show_busy)
        controller.training_changed.connect(self._show_training)
        self._show_models(controller.models)
        if not controller.busy:
            controller.refresh(start_daemon=False)

    def _key_field(self, path, placeholder, setting):
        """A line edit for a key file path, saved to ``setting`` when editing ends."""
        field = QLineEdit(path)
        field.setPlaceholderText(placeholder)
        field.editingFinished.connect(lambda: self.controller.update_settings(**{setting: field.text().strip()}))
        return field

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

    def _style_chosen(self, item, _previous):
        if item is not None:
            self.controller.update_settings(style=item.data(Qt.ItemDataRole.UserRole))

    def _show_models(self, models):
        chosen = self.controller.settings.style
        self.gallery.blockSignals(True)
        self.gallery.clear()
        for model in models:
            if model.get("kind") != "style":
                continue
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

    def _show_connection(self, connected, text):
        self.connection_label.setText(("● " if connected else "○ ") + text)

    def _show_progress(self, done, total, text):
        if total > 0:
            self.progress.setRange(0, total)
            self.progress.setValue(done)
        else:
            self.progress.setRange(0, 0)   # busy indicator
        if text:
            self.status.setStyleSheet("")
            self.status.setText(text)

    def _show_training(self, training):
        """While a training runs, the Train button stops it and keeps the model."""
        self.train_button.setText("Stop and keep" if training else "Train")
        self.train_button.setToolTip("End the training now; the new style keeps what it has learnt so far"
                                     if training else "")
        self.train_button.setEnabled(True)

    def _show_status(self, text, error):
        self.status.setStyleSheet("color: #d04040;" if error else "")
        self.status.setText(text)

    def _show_busy(self, busy):
        for button in (self.stylize_button, self.upscale_button, self.train_button, self.connect_button):
            button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)
        if not busy:
            self.progress.setRange(0, 1)
            self.progress.setValue(1 if not self.controller.last_error else 0)
