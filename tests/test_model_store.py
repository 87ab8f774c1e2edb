"""Model store: saving, loading, listing, overriding, hot reload, and rejecting broken files."""

import json
import os
import sys
import threading

import pytest
import safetensors.torch
import torch
from PIL import Image

from backend import model_files, model_store, protocol
from backend.model_files import validate_metadata
from backend.model_save import save_model
from backend.model_store import ModelStore, user_models_dir
from backend.nets import StyleNet, build_net, default_architecture
from backend.protocol import BrushworkError
from helpers import make_model


def store_of(*dirs):
    return ModelStore(list(dirs), include_bundled=False, include_user=False)


def test_save_writes_weights_metadata_and_thumbnail(tmp_path):
    json_path = make_model(tmp_path, "wave", thumbnail=Image.new("RGB", (512, 256), "red"))
    meta = json.loads(json_path.read_text())
    assert meta["name"] == "wave" and meta["kind"] == "style" and meta["scale"] == 1
    assert meta["architecture"] == {"type": "style", "channels": 32, "blocks": 5}
    assert meta["weights"] == "wave.safetensors"
    assert len(meta["sha256"]) == 64
    with Image.open(tmp_path / "wave.png") as thumb:
        assert thumb.size == (128, 64)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_loaded_net_computes_what_was_saved(tmp_path):
    torch.manual_seed(3)
    net = StyleNet().eval()
    save_model(tmp_path, "saved", net, {"display_name": "Saved"})
    loaded = store_of(tmp_path).load("saved")
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(net(x), loaded(x))


def test_listing_is_style_first_then_sr_by_scale(models_dir):
    names = [info.name for info in store_of(models_dir).list()]
    assert names == ["mosaic", "starry_night", "sr_x2", "sr_x4", "sr_x8"]


def test_get_unknown_model_names_the_available_ones(models_dir):
    with pytest.raises(BrushworkError) as err:
        store_of(models_dir).get("nope")
    assert err.value.code == "unknown_model"
    assert "mosaic" in err.value.message


def test_find_sr_by_scale(models_dir):
    store = store_of(models_dir)
    assert store.find_sr(4).name == "sr_x4"
    with pytest.raises(BrushworkError) as err:
        store.find_sr(16)
    assert err.value.code == "unknown_model"


def test_find_sr_prefers_a_pixel_loss_model_then_the_name(tmp_path):
    make_model(tmp_path, "a_feat", "sr", 4, seed=1, loss="feat")
    assert store_of(tmp_path).find_sr(4).name == "a_feat"
    make_model(tmp_path, "b_pixel", "sr", 4, seed=2, loss="pixel")
    make_model(tmp_path, "c_pixel", "sr", 4, seed=3, loss="pixel")
    assert store_of(tmp_path).find_sr(4).name == "b_pixel"


def test_the_bundled_default_upscalers_are_the_clean_ones():
    """x4: the pixel-loss net; the feature-loss one paints a crosshatch on flat areas (docs/models.md,
    benchmarks/bench_sr_flat.py)."""
    store = ModelStore(include_user=False)
    assert [store.find_sr(scale).name for scale in (2, 4, 8)] == ["sr_x2_pixel", "sr_x4_pixel", "sr_x8_feat"]


def test_later_directories_override_earlier_ones(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    make_model(first, "mosaic", seed=1, display_name="First")
    make_model(first, "only_first", seed=2)
    make_model(second, "mosaic", seed=3, display_name="Second")
    store = store_of(first, second)
    assert {i.name: i.display_name for i in store.list()} == {"mosaic": "Second", "only_first": "Only First"}
    assert store.get("mosaic").json_path.parent == second


def test_models_appear_change_and_disappear_without_restart(tmp_path):
    store = store_of(tmp_path)
    assert store.list() == []
    make_model(tmp_path, "fresh", seed=1)
    assert [i.name for i in store.list()] == ["fresh"]
    first_net = store.load("fresh")
    make_model(tmp_path, "fresh", seed=2, display_name="Retrained")
    assert store.get("fresh").display_name == "Retrained"
    second_net = store.load("fresh")
    assert second_net is not first_net
    assert not torch.equal(first_net.encoder[0][1].weight, second_net.encoder[0][1].weight)
    for suffix in (".json", ".safetensors"):
        (tmp_path / f"fresh{suffix}").unlink()
    assert store.list() == []


def test_unchanged_models_are_not_reloaded(tmp_path):
    make_model(tmp_path, "steady")
    store = store_of(tmp_path)
    assert store.load("steady") is store.load("steady")


def _corrupt_bad_json(path):
    path.with_suffix(".json").write_text("{not json")


def _corrupt_missing_weights(path):
    path.with_suffix(".safetensors").unlink()


def _corrupt_truncated(path):
    weights = path.with_suffix(".safetensors")
    weights.write_bytes(weights.read_bytes()[:1000])


def _corrupt_sha(path):
    weights = path.with_suffix(".safetensors")
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))


def _resave(path, state):
    """Write ``state`` as the weights and update the sha so only the tensors are wrong."""
    import hashlib
    data = safetensors.torch.save(state)
    path.with_suffix(".safetensors").write_bytes(data)
    meta = json.loads(path.with_suffix(".json").read_text())
    meta["sha256"] = hashlib.sha256(data).hexdigest()
    path.with_suffix(".json").write_text(json.dumps(meta))


def _corrupt_shapes(path):
    state = safetensors.torch.load_file(path.with_suffix(".safetensors"))
    state["encoder.0.1.weight"] = torch.zeros(16, 3, 9, 9)
    _resave(path, state)


def _corrupt_keys(path):
    state = safetensors.torch.load_file(path.with_suffix(".safetensors"))
    state["extra.weight"] = state.pop("encoder.0.1.weight")
    _resave(path, state)


def _edit_meta(**changes):
    def corrupt(path):
        meta = json.loads(path.with_suffix(".json").read_text())
        meta.update(changes)
        path.with_suffix(".json").write_text(json.dumps(meta))
    return corrupt


def _drop_key(path):
    meta = json.loads(path.with_suffix(".json").read_text())
    del meta["kind"]
    path.with_suffix(".json").write_text(json.dumps(meta))


CORRUPTIONS = {
    "bad json": (_corrupt_bad_json, "cannot read metadata"),
    "missing weights": (_corrupt_missing_weights, "missing"),
    "truncated weights": (_corrupt_truncated, "not a valid safetensors"),
    "sha mismatch": (_corrupt_sha, "sha256"),
    "wrong shapes": (_corrupt_shapes, "shape"),
    "wrong keys": (_corrupt_keys, "do not fit"),
    "missing key": (_drop_key, "required keys: kind"),
    "wrong type": (_edit_meta(scale="1"), "'scale' has the wrong type"),
    "bad kind": (_edit_meta(kind="gan"), "kind"),
    "scale vs kind": (_edit_meta(scale=4), "scale"),
    "weights path": (_edit_meta(weights="../elsewhere.safetensors"), "plain file name"),
    "bad name": (_edit_meta(name="Bad Name"), "invalid model name"),
    "name vs file": (_edit_meta(name="other"), "does not match the file name"),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_broken_models_are_skipped_with_a_message_naming_the_file(tmp_path, case):
    corrupt, expected = CORRUPTIONS[case]
    make_model(tmp_path, "good", seed=1)
    broken = make_model(tmp_path, "broken", seed=2)
    corrupt(broken)
    store = store_of(tmp_path)
    assert [i.name for i in store.list()] == ["good"]
    assert len(store.problems) == 1
    assert str(broken) in store.problems[0]
    assert expected in store.problems[0]


def test_a_broken_override_leaves_the_earlier_model_visible(tmp_path):
    make_model(tmp_path / "a", "mosaic", display_name="Bundled")
    _corrupt_bad_json(make_model(tmp_path / "b", "mosaic"))
    store = store_of(tmp_path / "a", tmp_path / "b")
    assert store.get("mosaic").display_name == "Bundled"
    assert len(store.problems) == 1


def test_weights_corrupted_after_listing_fail_to_load_with_model_error(tmp_path):
    path = make_model(tmp_path, "fragile")
    store = store_of(tmp_path)
    info = store.get("fragile")
    store._nets.clear()   # as if the cache had been evicted
    _corrupt_sha(path)
    os.utime(path.with_suffix(".safetensors"), ns=(1, 1))
    with pytest.raises(BrushworkError) as err:
        store.load(info)
    assert err.value.code == "model_error"
    assert "fragile" in err.value.message


def test_validate_metadata_accepts_what_save_model_writes(tmp_path):
    meta = json.loads(make_model(tmp_path, "sr_thing", "sr", 8).read_text())
    assert validate_metadata(meta) is meta
    assert meta["scale"] == 8 and meta["architecture"]["scale"] == 8


def test_sr_upsample_mode_is_checked_and_loads_the_bilinear_net(tmp_path):
    arch = {"type": "sr", "scale": 2, "channels": 8, "blocks": 1, "upsample": "bilinear"}
    save_model(tmp_path, "sr_bilinear", build_net(arch), {"kind": "sr", "scale": 2, "loss": "feat", "vgg": "caffe"})
    assert store_of(tmp_path).load("sr_bilinear").upsample_mode == "bilinear"
    meta = json.loads((tmp_path / "sr_bilinear.json").read_text())
    meta["architecture"]["upsample"] = "bicubic"
    with pytest.raises(BrushworkError, match="upsample must be one of"):
        validate_metadata(meta)


def test_style_border_round_trips_and_is_checked(tmp_path):
    arch = {"type": "style", "channels": 8, "blocks": 1, "border": 16}
    save_model(tmp_path, "bordered", build_net(arch), {"kind": "style", "loss": "style", "vgg": "caffe"})
    assert store_of(tmp_path).load("bordered").border == 16
    meta = json.loads((tmp_path / "bordered.json").read_text())
    assert meta["architecture"] == arch
    for bad in (6, -4, 256, True, "16"):
        meta["architecture"]["border"] = bad
        with pytest.raises(BrushworkError, match="border must be a multiple of 4"):
            validate_metadata(meta)
    sr = json.loads(make_model(tmp_path, "sr_thing", "sr", 2).read_text())
    sr["architecture"]["border"] = 16
    with pytest.raises(BrushworkError, match="unknown architecture keys"):
        validate_metadata(sr)


def test_style_widths_round_trip_and_are_checked(tmp_path):
    arch = {"type": "style", "channels": 8, "blocks": 1, "widths": [8, 16, 32, 16, 4]}
    save_model(tmp_path, "narrow", build_net(arch), {"kind": "style", "loss": "style", "vgg": "caffe"})
    assert store_of(tmp_path).load("narrow").widths == (8, 16, 32, 16, 4)
    meta = json.loads((tmp_path / "narrow.json").read_text())
    assert meta["architecture"] == arch
    for bad in ([8, 16, 32, 16], [8, 16, 32, 16, 0], [16, 16, 32, 16, 8], [8, 16, 32, 16, True], "8,16,32,16,8"):
        meta["architecture"]["widths"] = bad
        with pytest.raises(BrushworkError, match="widths must be 5 integers"):
            validate_metadata(meta)


def test_save_model_rejects_bad_names(tmp_path):
    with pytest.raises(BrushworkError, match="invalid model name"):
        save_model(tmp_path, "../escape", StyleNet(), {})
    assert list(tmp_path.iterdir()) == []


def test_user_models_dir_follows_the_platform(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert user_models_dir() == tmp_path / "brushwork" / "models"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert user_models_dir() == tmp_path / ".local" / "share" / "brushwork" / "models"
    monkeypatch.setattr(sys, "platform", "darwin")
    assert user_models_dir() == tmp_path / "Library" / "Application Support" / "brushwork" / "models"
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setenv("APPDATA", str(tmp_path / "Roaming"))
    assert user_models_dir() == tmp_path / "Roaming" / "brushwork" / "models"


def test_store_searches_bundled_then_user_then_extra(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    store = ModelStore([tmp_path / "extra"])
    assert store.dirs == [model_store.BUNDLED_MODELS_DIR, tmp_path / "data" / "brushwork" / "models",
                          tmp_path / "extra"]


def test_half_precision_models_store_float16_and_load_as_float32(tmp_path):
    torch.manual_seed(0)
    net = build_net(default_architecture("style")).eval()
    save_model(tmp_path / "full", "full", net, {})
    save_model(tmp_path / "half", "half", net, {}, half=True)
    tensors = safetensors.torch.load_file(tmp_path / "half" / "half.safetensors")
    assert {t.dtype for t in tensors.values() if t.is_floating_point()} == {torch.float16}
    full_size = (tmp_path / "full" / "full.safetensors").stat().st_size
    assert (tmp_path / "half" / "half.safetensors").stat().st_size < 0.55 * full_size
    loaded = ModelStore(tmp_path / "half", include_bundled=False, include_user=False).load("half")
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert (loaded(x) - net(x)).abs().max() < 0.02


# ---- hostile files: each is one problem, never more (issue 19, items 1-3) ------------------

def _deep_json(path):
    path.with_suffix(".json").write_bytes(b"[" * 200_000 + b"]" * 200_000)   # under the 1 MiB cap


def _long_integer(path):
    meta = json.loads(path.read_text())
    path.write_text(json.dumps(meta)[:-1] + ', "big": ' + "9" * 5000 + "}")


def _deep_recipe(path):
    text = json.dumps(json.loads(path.read_text()) | {"recipe": "RECIPE"})
    path.write_text(text.replace('"RECIPE"', '{"a": ' + "[" * 600 + "]" * 600 + "}"))


def _fifo(path):
    path.unlink()
    os.mkfifo(path)


def _dev_zero(path):
    path.unlink()
    path.symlink_to("/dev/zero")


def _sparse_weights(path):
    weights = path.with_suffix(".safetensors")
    weights.unlink()
    with open(weights, "wb") as f:
        f.truncate(100 * 2**30)    # 100 GB of holes: no disk used


def _nul_in_weights(path):
    meta = json.loads(path.read_text())
    path.write_text(json.dumps(dict(meta, weights="broken\u0000.safetensors")))


def _directory(path):
    path.unlink()
    path.mkdir()


def _dangling_link(path):
    path.unlink()
    path.symlink_to(path.with_name("nowhere.json"))


HOSTILE = {
    "json nested 200,000 deep": (_deep_json, "nested too deeply"),
    "integer of 5,000 digits": (_long_integer, "cannot read metadata"),
    "recipe nested 600 deep": (_deep_recipe, "more than 32 deep"),
    "a FIFO as the json": (_fifo, "not a regular file"),
    "json linked to /dev/zero": (_dev_zero, "not a regular file"),
    "100 GB sparse weights": (_sparse_weights, "larger than"),
    "a directory as the json": (_directory, "not a regular file"),
    "a NUL byte in the weights name": (_nul_in_weights, "control characters"),
    "a dangling json link": (_dangling_link, "broken.json"),
}


def list_within(store, seconds=20):
    """store.list() in a thread: (models, problems), or a failure if it blocks or raises."""
    outcome = {}

    def scan():
        try:
            outcome["models"] = store.list()
        except BaseException as exc:   # noqa: BLE001 -- reported below
            outcome["error"] = exc

    thread = threading.Thread(target=scan, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"listing the models blocked for {seconds} s"
    assert "error" not in outcome, f"listing the models raised {outcome.get('error')!r}"
    return outcome["models"], store.problems


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_model_file_is_one_problem_and_the_other_models_keep_working(tmp_path, case):
    make_model(tmp_path, "good", seed=1)
    hostile, expected = HOSTILE[case]
    hostile(make_model(tmp_path, "broken", seed=2))
    store = store_of(tmp_path)
    models, problems = list_within(store)
    assert [m.name for m in models] == ["good"], problems
    assert len(problems) == 1 and "broken" in problems[0] and expected in problems[0], problems
    protocol.encode_header({"models": [m.summary() for m in models], "problems": problems})
    assert store.load("good") is not None


def test_a_weights_file_that_grows_past_its_architecture_is_refused_before_it_is_read(tmp_path):
    path = make_model(tmp_path, "grown")
    net = model_files._empty_net(json.loads(path.read_text()))
    limit = model_files.weights_limit(net)
    weights = path.with_suffix(".safetensors")
    assert weights.stat().st_size <= limit < 2 * weights.stat().st_size + model_files.WEIGHTS_HEADER_SLACK
    with open(weights, "ab") as f:
        f.truncate(limit + 1)
    store = store_of(tmp_path)
    assert store.list() == [] and f"larger than {limit}" in store.problems[0]
