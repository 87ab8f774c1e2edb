"""The Train dialog: what the new style learns from, and how long that takes, before it starts.

It asks for the style's name, the folder of photos to train on (when the daemon runs on this
machine it reads the artist's own; a daemon on another machine trains on the photos it was
started with) and the iterations, and shows the time those take on the daemon's device,
measured there (``Controller.estimate_training``). Start stays disabled until that estimate
is known. "Also make a lite (fast) version" distils one from the new style once it is saved;
"Make lite version" distils one of an installed style instead, on the same photos
(``Controller.make_lite_version``); either quickly or with the full recipe ("Lite version").
While a training runs, the docker's Train button stops it and keeps the model.
"""

import os

from .brushwork_client import protocol
from .qt import (QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel,
                 QLineEdit, QPushButton, QSpinBox, QStandardPaths, QVBoxLayout)

ITERATIONS = protocol.TRAIN_OPTIONS["iterations"]


def lite_teachers(models):
    """The installed styles a lite version can be made of: those that are not lite versions themselves."""
    return [model for model in models if model.get("kind") == "style" and not model.get("teacher")
            and not (model.get("recipe") or {}).get("teacher")]


class TrainDialog(QDialog):
    def __init__(self, controller, snapshot, parent=None):
        super().__init__(parent)
        self.setObjectName("brushwork_train_dialog")
        self.setWindowTitle("brushwork: Train style from selection")
        self.controller, self.snapshot = controller, snapshot
        self.training = None     # info()["training"]: where the daemon's photos come from
        self.estimate = None     # the daemon's measured speed
        s = controller.settings
        layout = QVBoxLayout(self)
        form = QFormLayout()
        self.name = QLineEdit(s.train_name or "my_style")
        form.addRow("New style", self.name)
        self.folder = QLineEdit(s.train_content)
        self.folder.setPlaceholderText("a folder of your photos (a few dozen or more)")
        self.folder.editingFinished.connect(self._measure)
        choose = QPushButton("Choose…")
        choose.clicked.connect(self._choose_folder)
        row = QHBoxLayout()
        row.addWidget(self.folder, 1)
        row.addWidget(choose)
        form.addRow("Photos", row)
        self.iterations = QSpinBox()
        self.iterations.setRange(ITERATIONS.low, ITERATIONS.high)
        self.iterations.setSingleStep(500)
        self.iterations.setGroupSeparatorShown(True)
        self.iterations.setValue(s.train_iterations)
        self.iterations.valueChanged.connect(self._show_estimate)
        form.addRow("Iterations", self.iterations)
        self.lite = QCheckBox("Also make a lite (fast) version")
        self.lite.setChecked(s.train_lite)
        self.lite.setToolTip("Afterwards, a smaller net learns to copy the new style (see Lite version): it "
                             "stylises several times faster, for drafts.")
        form.addRow("", self.lite)
        self.lite_recipe = QComboBox()
        for recipe, label in protocol.LITE_RECIPES:
            self.lite_recipe.addItem(label, recipe)
        self.lite_recipe.setCurrentIndex(self.lite_recipe.findData(s.lite_recipe))
        self.lite_recipe.setToolTip("How a lite version is made. Quick: good enough for drafts. Full: step by step, "
                                    "pixels first, then the style's textures; close to the style itself. Stop keeps "
                                    "what it has learnt either way.")
        form.addRow("Lite version", self.lite_recipe)
        self.teacher = QComboBox()
        for model in lite_teachers(controller.models):
            self.teacher.addItem(model.get("display_name") or model["name"], model["name"])
        self.make_lite_button = QPushButton("Make lite version")
        self.make_lite_button.setEnabled(False)
        self.make_lite_button.setToolTip("Make a lite (fast) version of the chosen installed style on the photos "
                                         "above, instead of training a new style")
        self.make_lite_button.clicked.connect(self._make_lite)
        row = QHBoxLayout()
        row.addWidget(self.teacher, 1)
        row.addWidget(self.make_lite_button)
        form.addRow("Or a lite version of", row)
        layout.addLayout(form)
        self.estimate_label = QLabel("asking the daemon how fast it trains…")
        self.estimate_label.setWordWrap(True)
        layout.addWidget(self.estimate_label)
        buttons = QDialogButtonBox()
        self.start_button = buttons.addButton("Start training", QDialogButtonBox.ButtonRole.AcceptRole)
        self.start_button.setEnabled(False)
        buttons.addButton(QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self._start)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.rejected.connect(self._give_up)
        controller.status_changed.connect(self._show_error)

    def showEvent(self, event):
        super().showEvent(event)
        if self.training is None and not self.controller.busy:
            self._measure()

    # ---- choices ----------------------------------------------------------------------------

    def content(self):
        """The chosen folder, or "" (the daemon's own photos)."""
        return self.folder.text().strip()

    def _choose_folder(self):
        start = self.content() or QStandardPaths.writableLocation(QStandardPaths.StandardLocation.PicturesLocation)
        folder = QFileDialog.getExistingDirectory(self, "Photos to train on", start)
        if folder:
            self.folder.setText(folder)
            self._measure()

    def _options(self):
        content = self.content() if self.training is None or self.training.get("client_content") else ""
        return {**self.controller.settings.train_options, "iterations": self.iterations.value(),
                "content": os.path.abspath(os.path.expanduser(content)) if content else None}

    # ---- the estimate -----------------------------------------------------------------------

    def _measure(self):
        """Ask the daemon for its speed (measured there the first time) and check the folder."""
        if self.controller.busy:
            self.estimate_label.setText("brushwork is busy with another job: choose the folder again when it is done")
            return
        self.estimate = None
        self.start_button.setEnabled(False)
        self.estimate_label.setText("measuring how fast the daemon trains (the first time takes a minute)…")
        self.controller.estimate_training(self.snapshot, self.name.text().strip() or "my_style", self._options(),
                                          self._on_estimate)

    def _on_estimate(self, outcome):
        self.training, self.estimate = outcome
        if not self.training.get("client_content"):
            self.folder.setEnabled(False)
            self.folder.setPlaceholderText("the daemon's own photos (it runs on another machine)")
        self._show_estimate()

    def _show_estimate(self):
        if self.estimate is None:
            return
        iterations, speed = self.iterations.value(), self.estimate["s_per_iteration"]
        photos = self.estimate.get("photos")
        lines = [f"{iterations:,} iterations take about {protocol.describe_duration(iterations * speed)} "
                 f"({speed:.2g} s each, measured on {self.estimate.get('hardware') or 'the daemon'})."]
        usable = bool(self.content() and self.training.get("client_content")) or self.training.get("content")
        if photos is not None:
            lines.append(f"Training on {photos:,} photos.")
        if not usable:
            lines.append("Choose a folder of photos to train on." if self.training.get("client_content") else
                         "This daemon has no photos to train on: start it with `brushwork serve --content DIR`.")
        lines.append("The Train button in the docker stops it at any time and keeps what it has learnt.")
        self.estimate_label.setText(" ".join(lines))
        self.start_button.setEnabled(bool(usable))
        self.make_lite_button.setEnabled(bool(usable) and self.teacher.count() > 0)

    def _show_error(self, message, error):
        """A failed estimate (reported as the document's status) is shown here too."""
        if error and self.isVisible():
            self.estimate_label.setText(message)
            self.start_button.setEnabled(False)
            self.make_lite_button.setEnabled(False)

    # ---- closing ----------------------------------------------------------------------------

    def _start(self):
        name = self.name.text().strip() or "my_style"
        self.controller.update_settings(train_name=name, train_iterations=self.iterations.value(),
                                        train_content=self.content(), train_lite=self.lite.isChecked(),
                                        lite_recipe=self.lite_recipe.currentData())
        options = self._options()
        if self.lite.isChecked():
            options["lite"] = self.controller.settings.lite_request()
        self._close()
        self.controller.start_training(self.snapshot, name, options)

    def _make_lite(self):
        self.controller.update_settings(train_content=self.content(), lite_recipe=self.lite_recipe.currentData())
        options = {"content": self._options()["content"], **self.controller.settings.lite_request()}
        self._close()
        self.controller.make_lite_version(self.snapshot.document, self.teacher.currentData(), options)

    def _close(self):
        self.controller.status_changed.disconnect(self._show_error)
        self.accept()

    def _give_up(self):
        self.controller.status_changed.disconnect(self._show_error)
        if self.estimate is None:
            self.controller.cancel()   # the measuring job
