"""``train distill --recipe two-step`` (the default): its parts run in order, each from the last, on one
set of teacher targets per crop size, and the final model's recipe holds the chain. The parts keep their
real settings but run 2 iterations each here (the first two and the last, on larger crops)."""

import json
import os

import pytest

from backend import protocol
from tests.helpers import make_model, training_photos
from trainer import distill_recipe
from trainer.cli import main
from trainer.progress import stop_requests

TINY = ["--size", "32", "--pool", "4", "--batch", "2", "--channels", "4", "--blocks", "1",
        "--precision", "fp32", "--device", "cpu"]


@pytest.fixture
def short_recipe(monkeypatch):
    chosen = distill_recipe.PARTS[:2] + distill_recipe.PARTS[-1:]
    parts = tuple((name, {**settings, "iterations": 2}) for name, settings in chosen)
    monkeypatch.setattr(distill_recipe, "PARTS", parts)
    return parts


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipe")
    make_model(root / "teachers", "tiny_style", architecture={"channels": 8, "blocks": 1}, seed=3,
               data={"held_out": []})
    return root, training_photos(root / "photos")


def distill(setup, *extra, into=None):
    """``train distill`` of the tiny teacher with the recipe, run dir and models in ``into`` (default: the setup's)."""
    root, photos = setup
    into = into or root
    return main(["train", "distill", "--teacher", "tiny_style", "--content", str(photos), "--models",
                 str(root / "teachers"), "--style-image", str(sorted(photos.iterdir())[0]),
                 "--run-dir", str(into / "run"), "--out", str(into / "models"), *TINY, *extra])


def test_the_parts_run_in_order_from_one_set_of_targets_and_the_recipe_holds_the_chain(setup, short_recipe):
    root = setup[0]
    assert distill(setup) == 0
    assert (root / "run" / "targets" / "targets.npy").is_file()
    assert not any((root / "run" / name / "targets").exists() for name, _ in short_recipe)
    larger = json.loads((root / "run" / "targets_x2" / "targets.json").read_text())["identity"]
    assert larger["size"] == 64 and larger["count"] == 4
    meta = json.loads((root / "models" / "tiny_style_lite.json").read_text())
    assert (root / "models" / meta["weights"]).is_file() and meta["teacher"] == "tiny_style"
    chain, recipe = [], meta["recipe"]
    while recipe is not None:
        chain.append(recipe)
        recipe = recipe.get("init", {}).get("recipe")
    assert [r["command"].rsplit("# part ", 1)[1] for r in chain] == ["step3, 3 of 3", "step2a, 2 of 3",
                                                                      "step1, 1 of 3"]
    step3, step2, step1 = (r["distill_weights"] for r in chain)
    assert step3 == {"l1": 1.0, "grid": 200.0, "gram": 1e-9, "objective": 1e-5, "content": 1e-5}
    assert step2 == {"l1": 1.0, "grid": 200.0, "gram": 3e-10, "objective": 3e-6, "content": 3e-6}
    assert step1 == {"l1": 1.0, "grid": 50.0}
    assert [(r["size"], r["batch"]) for r in chain] == [(64, 1), (32, 2), (32, 2)]
    assert chain[-1]["lr"] == 2e-3 and chain[0]["lr"] == 3e-4
    assert meta["sha256"] == json.loads((root / "run" / "step3" / "model" / "tiny_style_lite.json").read_text())[
        "sha256"]

    # --resume with every part finished trains nothing more
    finished = sorted(p.name for p in (root / "run" / "step3").glob("checkpoint_*.pt"))
    assert distill(setup, "--resume") == 0
    assert sorted(p.name for p in (root / "run" / "step3").glob("checkpoint_*.pt")) == finished


def test_a_recipe_part_left_unfinished_continues_with_resume(setup, short_recipe, tmp_path):
    assert distill(setup, "--time-limit", "0.001", into=tmp_path) == 0   # stops in the first part, after one step
    first = json.loads((tmp_path / "models" / "tiny_style_lite.json").read_text())["recipe"]
    assert first["stopped_by_time_limit"] and first["iterations"] < 2 and "init" not in first
    assert distill(setup, "--resume", into=tmp_path) == 0
    meta = json.loads((tmp_path / "models" / "tiny_style_lite.json").read_text())
    assert meta["recipe"]["command"].endswith("# part step3, 3 of 3")
    assert meta["recipe"]["init"]["recipe"]["init"]["recipe"]["iterations"] == 2   # step 1, finished


def test_the_recipe_refuses_the_options_it_sets(setup, capsys):
    assert distill(setup, "--iterations", "5", "--gram-weight", "0") == 1
    err = capsys.readouterr().err
    assert "leave out --gram-weight, --iterations, or give --recipe single" in err


def test_with_progress_json_each_part_is_announced_and_the_last_line_names_the_installed_model(setup, short_recipe,
                                                                                                tmp_path, capsys):
    """What the daemon reads when an editor asks for the recipe."""
    assert distill(setup, "--progress-json", into=tmp_path) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    announced = [(e["name"], e["number"], e["parts"]) for e in events if e["event"] == "part"]
    assert announced == [("step1", 1, 3), ("step2a", 2, 3), ("step3", 3, 3)]
    kinds = [e["event"] for e in events]
    parts = [i for i, kind in enumerate(kinds) if kind == "part"]
    targets = [i for i, kind in enumerate(kinds) if kind == "targets"]
    assert targets and all(i < parts[1] or i > parts[2] for i in targets)   # made in step 1 and step 3 only
    assert events[-1] == {"event": "done", "model": "tiny_style_lite",
                          "path": str(tmp_path / "models" / "tiny_style_lite.json")}


def test_the_parts_share_one_stop_reader_so_a_stop_ends_the_part_running():
    """Each part's run asks for the stop requests on the trainer's stdin: all get the same reader,
    so an editor's Stop is not swallowed by a finished part's."""
    read_end, write_end = os.pipe()
    with open(read_end) as stream, open(write_end, "w") as writer:
        first_part = stop_requests(stream)
        assert stop_requests(stream) is first_part
        writer.write("stop\n")
        writer.flush()
        assert first_part.wait(10)


def test_the_protocol_knows_which_distillation_options_the_recipe_sets():
    """A daemon refuses those in a two-step request (``protocol.RECIPE_SETS``) before any training starts."""
    assert set(protocol.RECIPE_SETS) == set(distill_recipe.SET_BY_RECIPE) & set(protocol.DISTILL_OPTIONS)
