"""Malicious model files and model names: nothing is unpickled, nothing escapes the model folders,
nothing huge is allocated on a file's say-so, and the daemon keeps serving."""

import ast
import hashlib
import json
import pickle
import resource

import numpy as np
import pytest
import safetensors.torch
import torch

from backend import protocol
from backend.client import Client
from backend.model_store import ModelStore
from daemon_process import REPO, start_daemon, stop_daemon
from helpers import make_model


class WritesMarker:
    """Unpickling this creates the file ``path`` (as a real exploit would run any code)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def store_of(directory):
    return ModelStore(directory, include_bundled=False, include_user=False)


def disguise_as_model(directory, name, data):
    """Write ``data`` as ``name``'s weights, with metadata copied from a real model and a matching sha256."""
    meta = json.loads(make_model(directory, name).read_text())
    (directory / f"{name}.safetensors").write_bytes(data)
    meta["sha256"] = hashlib.sha256(data).hexdigest()
    (directory / f"{name}.json").write_text(json.dumps(meta))


def plant_pickles(directory, marker):
    """Pickled code-running objects under every model-ish extension; return the names posing as models."""
    payload = pickle.dumps(WritesMarker(marker))
    torch_payload = directory / "torch_payload.tmp"
    torch.save({"weight": WritesMarker(marker)}, torch_payload)
    disguise_as_model(directory, "pickled", payload)
    disguise_as_model(directory, "torch_saved", torch_payload.read_bytes())
    for suffix in (".pt", ".pth", ".ckpt", ".bin", ".pkl"):
        (directory / f"pickled{suffix}").write_bytes(payload)
    torch_payload.unlink()
    return ["pickled", "torch_saved"]


def test_the_pickle_payload_really_runs_code_when_unpickled(tmp_path):
    """The control for the tests below: unpickling the payload creates the marker."""
    marker = tmp_path / "control-marker"
    pickle.loads(pickle.dumps(WritesMarker(marker)))
    assert marker.exists()


def test_pickles_posing_as_models_are_problems_and_never_run(tmp_path):
    marker = tmp_path / "marker"
    make_model(tmp_path, "good")
    names = plant_pickles(tmp_path, marker)
    store = store_of(tmp_path)
    assert [m.name for m in store.list()] == ["good"]
    for name in names:
        problem = next(p for p in store.problems if f"{name}.json" in p)
        assert "not a valid safetensors file" in problem
    for name in names:
        with pytest.raises(protocol.BrushworkError) as err:
            store.load(name)
        assert err.value.code == "unknown_model"
    assert not marker.exists()


def test_the_daemon_lists_bad_files_as_problems_refuses_bad_names_and_keeps_serving(tmp_path):
    models = tmp_path / "models"
    marker = tmp_path / "marker"
    make_model(models, "mosaic")
    names = plant_pickles(models, marker)
    truncated = make_model(models, "truncated").with_suffix(".safetensors")
    truncated.write_bytes(truncated.read_bytes()[:500])
    proc = start_daemon(tmp_path, f"ipc://{tmp_path}/d.sock", models, "--no-bundled")
    try:
        with Client(f"ipc://{tmp_path}/d.sock", timeout=30) as client:
            info = client.info()
            assert [m["name"] for m in info["models"]] == ["mosaic"]
            for name in [*names, "truncated"]:
                assert any(f"{name}.json" in p and "not a valid safetensors file" in p for p in info["problems"])
            pixels = np.zeros((16, 16, 4), np.uint8)
            fmt = {"dtype": "u8", "channels": "RGBA"}
            for model in ["pickled", "truncated", "../mosaic", "/etc/passwd", "mosaic/../mosaic", "mosaic\\x", ""]:
                with pytest.raises(protocol.BrushworkError) as err:
                    client.stylize(pixels, 16, 16, fmt, model)
                assert err.value.code == "unknown_model", (model, err.value.message)
            assert client.stylize(pixels, 16, 16, fmt, "mosaic").width == 16
    finally:
        assert stop_daemon(proc) == 0
    assert not marker.exists()


def _edit(json_path, **changes):
    meta = json.loads(json_path.read_text())
    meta.update(changes)
    json_path.write_text(json.dumps(meta))


ESCAPES = {
    "name climbs out": (dict(name="../../evil"), "invalid model name"),
    "absolute weights": (dict(weights="/etc/passwd"), "plain file name"),
    "weights climb out": (dict(weights="../../outside.safetensors"), "plain file name"),
    "backslash weights": (dict(weights="..\\outside.safetensors"), "plain file name"),
    "control characters": (dict(display_name="Mosaic\x1b[2J"), "control characters"),
    "huge display name": (dict(display_name="x" * 10000), "at most 200 characters"),
    "unknown architecture key": (dict(architecture={"type": "style", "channels": 32, "blocks": 5,
                                                    "module": "os.system"}), "unknown architecture keys"),
    "absurd width": (dict(architecture={"type": "style", "channels": 100000, "blocks": 5}), "from 1 to 256"),
}


@pytest.mark.parametrize("case", sorted(ESCAPES))
def test_metadata_that_tries_to_escape_or_abuse_is_refused(tmp_path, case):
    changes, expected = ESCAPES[case]
    (tmp_path / "outside.safetensors").write_bytes(b"")
    models = tmp_path / "models"
    _edit(make_model(models, "evil"), **changes)
    store = store_of(models)
    assert store.list() == []
    assert len(store.problems) == 1 and expected in store.problems[0], store.problems


def test_links_out_of_the_model_folder_are_not_followed(tmp_path):
    """A weights or thumbnail link to a file elsewhere (a secret the `info` reply would send) is refused."""
    from PIL import Image
    secret = tmp_path / "secret"
    secret.mkdir()
    make_model(secret, "elsewhere")
    Image.new("RGB", (4, 4)).save(secret / "private.png")
    models = tmp_path / "models"
    linked = make_model(models, "linked")
    weights = linked.with_suffix(".safetensors")
    weights.unlink()
    weights.symlink_to(secret / "elsewhere.safetensors")
    _edit(linked, sha256=json.loads((secret / "elsewhere.json").read_text())["sha256"])
    make_model(models, "pictured")
    (models / "pictured.png").symlink_to(secret / "private.png")
    (models / "local.png").write_bytes((secret / "private.png").read_bytes())
    make_model(models, "local")
    store = store_of(models)
    assert [m.name for m in store.list()] == ["local", "pictured"]
    assert "link to a file outside the model's folder" in store.problems[0]
    assert store.get("pictured").thumbnail_path is None
    assert store.get("local").thumbnail_path == models / "local.png"


def test_an_architecture_claim_allocates_nothing_before_the_weights_fit(tmp_path):
    """Metadata asking for the largest allowed net (gigabytes) with a small file: refused, no allocation."""
    path = make_model(tmp_path, "bloated")
    _edit(path, architecture={"type": "style", "channels": 256, "blocks": 32})
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    store = store_of(tmp_path)
    assert store.list() == [] and "do not fit" in store.problems[0]
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    assert grown_mib < 500, f"the process grew by {grown_mib:.0f} MiB"


def test_tensors_of_the_wrong_dtype_are_refused(tmp_path):
    path = make_model(tmp_path, "half")
    state = safetensors.torch.load_file(path.with_suffix(".safetensors"))
    data = safetensors.torch.save({k: v.to(torch.int32) for k, v in state.items()})  # as large as float32
    path.with_suffix(".safetensors").write_bytes(data)
    _edit(path, sha256=hashlib.sha256(data).hexdigest())
    store = store_of(tmp_path)
    assert store.list() == [] and "torch.int32" in store.problems[0]


def test_an_oversized_metadata_file_is_refused(tmp_path):
    path = make_model(tmp_path, "padded")
    _edit(path, data={"padding": "x" * (2 << 20)})
    store = store_of(tmp_path)
    assert store.list() == [] and "larger than" in store.problems[0]


def test_every_torch_load_is_weights_only_and_nothing_imports_pickle():
    """Model and checkpoint files are read without unpickling code: an audit of our own sources."""
    calls, sources = 0, 0
    for folder in ("backend", "trainer", "plugin_krita", "plugin_gimp"):
        for path in (REPO / folder).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            sources += 1
            for node in ast.walk(tree):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
                    assert not {"pickle", "cPickle", "dill", "joblib"} & set(modules), f"{path}:{node.lineno}"
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load" \
                        and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch":
                    calls += 1
                    weights_only = [k.value for k in node.keywords if k.arg == "weights_only"]
                    assert weights_only and isinstance(weights_only[0], ast.Constant) \
                        and weights_only[0].value is True, f"{path}:{node.lineno}: torch.load without weights_only=True"
    assert sources > 20 and calls >= 2  # the audit saw the code it is meant to check
