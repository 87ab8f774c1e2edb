"""The editor plug-ins' ``train_options`` setting: extra train_style options from the settings file,
and the training fields' limits, all from the vendored protocol's description of each option."""

import json

import pytest

from backend import protocol
from installed_plugins import gimp_module, krita_module

gimp_settings = gimp_module("settings")
krita_settings = krita_module("settings")

TINY = {"size": 32, "style_size": 32, "channels": 8, "blocks": 1, "lr": 0.002, "zoom": 1.5, "flip": False, "border": 8}


def test_krita_keeps_known_numeric_options_and_drops_the_rest():
    loaded = krita_settings.from_dict({"train_options": dict(TINY, vgg_weights="/etc/passwd", batch=True,
                                                             seed="7", name=3)})
    assert loaded.train_options == TINY
    assert krita_settings.from_dict({"train_options": {"flip": 1, "zoom": True}}).train_options == {}
    assert krita_settings.from_dict({"train_options": [1, 2]}).train_options == {}
    assert krita_settings.Settings().train_options == {}


def test_krita_train_options_round_trip(tmp_path):
    path = tmp_path / "brushwork" / "settings.json"
    krita_settings.save(krita_settings.Settings(train_iterations=5, train_options=TINY), path)
    loaded = krita_settings.load(path)
    assert (loaded.train_iterations, loaded.train_options) == (5, TINY)


def test_gimp_reads_train_options_and_the_settings_procedure_keeps_them(tmp_path):
    assert gimp_settings.load_train_options(tmp_path) == {}
    gimp_settings.save(tmp_path, {"endpoint": "tcp://127.0.0.1:6000"}, TINY)
    assert gimp_settings.load_train_options(tmp_path) == TINY
    assert gimp_settings.load(tmp_path)["endpoint"] == "tcp://127.0.0.1:6000"
    gimp_settings.save(tmp_path, {"endpoint": ""})
    assert gimp_settings.load_train_options(tmp_path) == {}


@pytest.mark.parametrize("options", [{"vgg_weights": "/etc/passwd"}, {"size": "32"}, {"blocks": True}, {"flip": 1}, [32]])
def test_gimp_bad_train_options_name_the_file(tmp_path, options):
    (tmp_path / "brushwork.json").write_text(json.dumps({"endpoint": "", "train_options": options}))
    with pytest.raises(ValueError, match="brushwork.json: train_options must map some of size, style_size"):
        gimp_settings.load_train_options(tmp_path)
    assert gimp_settings.load(tmp_path)["endpoint"] == ""   # the other procedures still work


def test_the_plugins_forward_every_training_option_their_dialogs_do_not_ask_for():
    asked = {"iterations", "time_limit"}
    assert set(krita_settings.TRAIN_OPTIONS) == set(gimp_settings.TRAIN_OPTIONS) == set(protocol.TRAIN_OPTIONS) - asked
    assert krita_settings.Settings().train_iterations == protocol.TRAIN_OPTIONS["iterations"].editor_default


def test_krita_options_of_the_wrong_kind_are_dropped_whatever_their_range():
    """The plug-in checks kinds; ranges are the daemon's to check (it says which and why)."""
    loaded = krita_settings.from_dict({"train_options": {"size": 30, "blocks": 99.5, "flip": "yes", "border": True}})
    assert loaded.train_options == {"size": 30, "blocks": 99.5}


def test_krita_lite_settings_keep_known_distillation_options_and_drop_the_rest():
    loaded = krita_settings.from_dict({"train_lite": True, "lite_options": {"pool": 64, "size": 96, "zoom": 2.0,
                                                                            "iterations": "9", "blocks": True}})
    assert loaded.train_lite is True and loaded.lite_options == {"pool": 64, "size": 96}
    assert krita_settings.Settings().lite_options == {} and krita_settings.Settings().train_lite is False


@pytest.mark.parametrize("recipe, sent", [
    ("single", {"pool": 64, "iterations": 500, "lr": 0.002, "recipe": "single"}),
    ("two-step", {"pool": 64, "recipe": "two-step"}),     # the full recipe sets the iterations and learning rates
    ("fast", {"pool": 64, "iterations": 500, "lr": 0.002, "recipe": "single"}),   # unknown: the quick one
])
def test_krita_asks_for_a_lite_version_with_the_chosen_recipe(recipe, sent):
    loaded = krita_settings.from_dict({"lite_recipe": recipe,
                                       "lite_options": {"pool": 64, "iterations": 500, "lr": 0.002, "recipe": "x"}})
    assert loaded.lite_request() == sent
    assert protocol.check_distill_option("recipe", sent["recipe"]) == sent["recipe"]


def test_gimp_lite_options_leave_the_recipe_to_the_train_style_argument(tmp_path):
    assert set(gimp_settings.LITE_OPTIONS) == set(protocol.DISTILL_OPTIONS) - {"recipe"}
    (tmp_path / "brushwork.json").write_text(json.dumps({"endpoint": "", "lite_options": {"recipe": "two-step"}}))
    with pytest.raises(ValueError, match="lite_options must map some of"):
        gimp_settings.load_lite_options(tmp_path)
