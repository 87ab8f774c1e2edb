"""The procedures' dialogs in real GIMP 3.0 and 3.2 (gimp-console under Xvfb).

Each case calls a procedure INTERACTIVELY; a probe loaded into the plug-in's Python
(dialog_probe/sitecustomize.py, on PYTHONPATH for this run only) records what the real dialog
shows once it is on screen, and cancels it. One GIMP run per version covers every case.
"""

import json
import shutil
from pathlib import Path

import pytest
from gimp_cases import Case
from gimp_harness import DEAD_ENDPOINT, install_plugin, run_cases

from backend.client import Client
from plugin_gimp.installer import bundled_models

pytestmark = pytest.mark.gimp

U8 = "U8_NON_LINEAR"
LAYER = [(20, 16, True, (0, 0))]


def dialog_cases(endpoint, daemon_program):
    up = {"endpoint": endpoint, "manage_daemon": False}
    down = {"endpoint": DEAD_ENDPOINT, "manage_daemon": False}
    down_managed = {"endpoint": DEAD_ENDPOINT, "manage_daemon": True, "daemon_path": daemon_program}

    def case(name, procedure, settings_file, args=None, selection=None):
        return Case(name, U8, procedure, args or {}, LAYER, (20, 16), selection=selection,
                    settings_file=settings_file, interactive=True)
    return [  # in this order: the first runs before the daemon ever answered
        case("stylize_down_first", "stylize", down),
        case("stylize_down_managed", "stylize", down_managed),
        case("stylize_up", "stylize", up, {"style": "mosaic"}),
        case("stylize_down_later", "stylize", down),
        case("stylize_draft", "stylize", up, {"style": "udnie", "draft": True}),
        case("upscale_image", "upscale-image", up, {"scale": "4"}),
        case("upscale_selection", "upscale-selection", up, {"scale": "2"}, selection=(3, 2, 12, 10)),
        case("train_style", "train-style", up),
        case("settings", "settings", up),
    ]


@pytest.fixture(scope="module")
def dialogs(gimp_chroot, gimp_daemon, gimp_job_dir):
    """{case name: what the probe saw in its dialog}, the GIMP results, and the job folder."""
    host, inside = gimp_job_dir
    install_plugin(gimp_chroot, host / "home")
    probe = host / "probe"
    shutil.copytree(Path(__file__).with_name("dialog_probe"), probe)
    program = host / "fake-brushwork"   # records that something tried to start a daemon
    program.write_text(f"#!/bin/sh\ntouch {inside}/daemon-started\n")
    program.chmod(0o755)
    cases = dialog_cases(gimp_daemon, f"{inside}/fake-brushwork")
    inputs = {}
    for case in cases:
        inputs.update(case.inputs())
    results = run_cases(gimp_chroot, gimp_job_dir, gimp_daemon, [c.spec for c in cases], inputs, display=True,
                        env=[f"PYTHONPATH={inside}/probe", f"BRUSHWORK_DIALOG_PROBE={inside}/probe"])
    seen = {c.name: json.loads((probe / f"{c.name}.json").read_text())
            for c in cases if (probe / f"{c.name}.json").exists()}
    print("\ndialog on screen after (s, from the plug-in's start): "
          + ", ".join(f"{name} {record['opened_after_s']:.2f}" for name, record in seen.items()))
    with Client(gimp_daemon) as client:
        models = client.info()["models"]
    styles = {m["name"] for m in models if m["kind"] == "style"}
    # a lite net whose teacher is listed is that style's Draft switch, not an entry of its own
    daemon_styles = [[m["name"], m["display_name"]] for m in models
                     if m["kind"] == "style" and m.get("teacher") not in styles]
    return seen, results, host, daemon_styles


def record(dialogs, name):
    seen, results, _, _ = dialogs
    assert name in seen, f"{name}: no dialog appeared ({results.get(name)})"
    assert results[name]["status"] == "CANCEL", results[name]
    return seen[name]


def style_combo(seen):
    combos = [c for c in seen["combos"] if c["type"] == "StringComboBox"]
    assert len(combos) == 1, f"no style drop-down: {seen}"
    return combos[0]


@pytest.mark.parametrize("name", ["stylize_down_first", "stylize_down_later"])
def test_stylize_dialog_without_daemon_says_so_and_keeps_the_style_list(dialogs, name):
    seen = record(dialogs, name)
    assert any("No brushwork daemon answers at " + DEAD_ENDPOINT in label for label in seen["labels"]), seen
    rows = style_combo(seen)["rows"]
    if name == "stylize_down_first":  # never answered yet: the bundled styles, by display name
        assert rows == [[m["name"], m["display_name"]] for m in bundled_models() if m["kind"] == "style"]
    else:  # the styles the daemon served in stylize_up (the test's mosaic among them)
        assert rows == dialogs[3] and ["mosaic", "Mosaic"] in rows
    assert seen["entries"] == [], "a text box instead of the style list"


def test_stylize_dialog_never_starts_the_daemon(dialogs):
    """With 'start the daemon' on, the dialog says it will start on OK, and does not start it itself."""
    seen = record(dialogs, "stylize_down_managed")
    assert any("It will be started when you press OK" in label for label in seen["labels"]), seen
    assert not (dialogs[2] / "daemon-started").exists()


def test_stylize_dialog_lists_the_daemons_styles(dialogs):
    seen = record(dialogs, "stylize_up")
    assert style_combo(seen)["rows"] == dialogs[3]
    assert not any("No brushwork daemon" in label for label in seen["labels"])


def test_stylize_dialog_has_the_draft_switch_and_says_what_it_runs(dialogs):
    seen = record(dialogs, "stylize_draft")
    assert "_Draft (fast lite net)" in seen["labels"], seen["labels"]
    assert "udnie_lite" not in str(style_combo(seen)["rows"])
    assert any(label.startswith("Draft runs udnie_lite, a lite net") for label in seen["labels"]), seen["labels"]
    others = record(dialogs, "stylize_up")   # its style, the test model mosaic, has no lite net
    assert any("`brushwork train distill --teacher" in label for label in others["labels"]), others["labels"]


@pytest.mark.parametrize("name, before, after", [("upscale_image", "80 × 64", "160 × 128"),
                                                 ("upscale_selection", "24 × 20", "96 × 80")])
def test_upscale_dialog_shows_the_resulting_size(dialogs, name, before, after):
    seen = record(dialogs, name)
    assert f"Result: {before} pixels" in seen["labels"], seen["labels"]
    assert f"Result: {after} pixels" in seen["labels_at_scale_8"], seen["labels_at_scale_8"]


@pytest.mark.parametrize("name", ["stylize_up", "stylize_draft", "upscale_image", "upscale_selection", "train_style",
                                  "settings"])
def test_dialog_mnemonics_are_unique(dialogs, name):
    seen = record(dialogs, name)
    keys = {}
    for key, label in seen["mnemonics"]:
        keys.setdefault(key, []).append(label)
    assert len(seen["mnemonics"]) >= 4, seen["mnemonics"]   # the fields' and the buttons'
    assert {k: v for k, v in keys.items() if len(v) > 1} == {}


def test_train_style_dialog_offers_a_lite_version(dialogs):
    """Train Style's "Also make a lite (fast) version" switch (off unless chosen) and how to make it,
    each with its own mnemonic."""
    seen = record(dialogs, "train_style")
    assert ["v", "Also make a lite (fast) _version"] in seen["mnemonics"], seen["mnemonics"]
    assert ["q", "Lite version: _quick or full"] in seen["mnemonics"], seen["mnemonics"]
