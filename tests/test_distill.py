"""``brushwork train distill``: teacher targets cached once, resume, export of a lite net the
engine runs, the grid term, and clear errors (a tiny random teacher keeps it fast)."""

import json

import numpy as np
import pytest
import torch

from backend.engine import Engine
from backend.model_store import ModelStore
from helpers import make_model, random_image, training_photos
from trainer.cli import main
from trainer.distill import VGG_MARGIN, DistillLoss
from trainer.distill_targets import TargetPool, fill_blown_patches, phase_pattern
from trainer.losses import phase_patterns

TINY = ["--recipe", "single", "--size", "32", "--pool", "4", "--batch", "2", "--channels", "4", "--blocks", "1",
        "--precision", "fp32", "--device", "cpu"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A folder of three photos and one of a tiny teacher (8 channels, 1 block) and an SR model."""
    root = tmp_path_factory.mktemp("distill")
    teachers = root / "teachers"
    make_model(teachers, "tiny_style", architecture={"channels": 8, "blocks": 1}, seed=3,
               data={"held_out": []})
    make_model(teachers, "tiny_sr", kind="sr", scale=2, architecture={"channels": 8, "blocks": 1})
    return root, training_photos(root / "photos"), teachers


def distill(setup, run, *extra):
    root, photos, teachers = setup
    return main(["train", "distill", "--teacher", "tiny_style", "--content", str(photos), "--models", str(teachers),
                 "--run-dir", str(root / run), "--out", str(root / run / "models"), *TINY, *extra])


def test_distill_caches_the_teachers_targets_and_exports_a_lite_net_the_engine_runs(setup):
    root, _, teachers = setup
    assert distill(setup, "run", "--iterations", "2", "--checkpoint-every", "1") == 0
    record = json.loads((root / "run" / "targets" / "targets.json").read_text())
    assert record["done"] == 4 and record["identity"]["teacher"] == "tiny_style"
    pairs = np.load(root / "run" / "targets" / "targets.npy")
    assert pairs.shape == (4, 2, 3, 32, 32) and pairs.dtype == np.uint8
    # a target is the teacher as the engine runs it (mirrored edges, own statistics), to 8 bits
    photo = pairs[1, 0].transpose(1, 2, 0).astype(np.float32) / 255
    teacher = Engine(ModelStore(teachers, include_bundled=False, include_user=False), "cpu", "fp32")
    expected = teacher.stylize(photo, None, "tiny_style")[0]
    assert np.abs(pairs[1, 1].transpose(1, 2, 0) / 255 - expected).max() <= 1 / 255 + 1e-6

    store = ModelStore(root / "run" / "models", include_bundled=False, include_user=False)
    info = store.get("tiny_style_lite")
    meta = info.metadata
    assert meta["teacher"] == "tiny_style" and meta["recipe"]["teacher"] == "tiny_style"
    assert meta["mirror_edges"] is False      # it learnt line-free edges: the engine runs it plain
    assert meta["architecture"] == {"type": "style", "channels": 4, "blocks": 1}
    assert meta["recipe"]["iterations"] == 2 and meta["recipe"]["pool"] == 4
    assert meta["recipe"]["teacher_blown_patches_filled"] == 0
    assert set(meta["recipe"]["final_losses"]) == {"total", "l1", "grid", "gram"}
    out, _ = Engine(store, "cpu", "fp32").stylize(random_image(40, 36), None, "tiny_style_lite")
    assert out.shape == (40, 36, 3) and np.isfinite(out).all()
    assert (root / "run" / "preview.png").is_file() and (root / "run" / "loss.png").is_file()


def test_distill_resumes_without_making_the_targets_again(setup):
    root = setup[0]
    assert distill(setup, "resume", "--iterations", "2", "--checkpoint-every", "1") == 0
    cache = root / "resume" / "targets" / "targets.npy"
    made = cache.stat().st_mtime_ns
    assert distill(setup, "resume", "--iterations", "3", "--resume") == 0
    assert cache.stat().st_mtime_ns == made
    meta = json.loads((root / "resume" / "models" / "tiny_style_lite.json").read_text())
    assert meta["recipe"]["iterations"] == 3 and " && " in meta["recipe"]["command"]   # both runs
    # other crop settings do not mix with the cached targets
    assert distill(setup, "resume", "--iterations", "4", "--resume", "--pool", "6") == 1


@pytest.mark.parametrize("teacher, says", [("no_such_style", "there is no model of that name"),
                                           ("tiny_sr", "it is an sr model")])
def test_distill_refuses_a_teacher_that_is_not_a_style_model(setup, capsys, teacher, says):
    root, photos, teachers = setup
    status = main(["train", "distill", "--teacher", teacher, "--content", str(photos), "--models", str(teachers),
                   "--run-dir", str(root / "bad"), "--out", str(root / "bad" / "models"), *TINY])
    error = capsys.readouterr().err
    assert status == 1 and says in error and "tiny_style" in error
    assert not (root / "bad").exists()


def test_the_grid_term_charges_a_pattern_fixed_to_the_4_px_grid():
    target = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    pattern = torch.zeros(3, 4, 4)
    pattern[:, ::2, ::2] = 0.04          # a screen door: a brighter pixel in every 2 x 2
    loss = DistillLoss(l1=0, grid=1)
    clean, _ = loss(target, target)
    spotted, parts = loss(target + pattern.repeat(1, 8, 8), target)
    shifted, _ = loss(target + 0.04, target)     # a uniform shift is not a pattern
    assert float(clean) == 0 and float(spotted) > 0.01 and float(shifted) < 1e-6 and set(parts) == {"grid"}


def test_phase_pattern_finds_a_pattern_added_to_random_images():
    rng = np.random.default_rng(1)
    images = rng.random((128, 3, 32, 32))
    pattern = rng.normal(0, 0.05, (3, 4, 4))
    pattern -= pattern.mean(axis=(1, 2), keepdims=True)
    found = phase_pattern(images + np.tile(pattern, (8, 8)))
    assert np.abs(found - pattern).max() < 0.015 < np.abs(pattern).max()


def test_the_gram_term_charges_missing_texture_not_misplaced_texture():
    from trainer.vgg import LossNetwork

    generator = torch.Generator().manual_seed(1)
    target = torch.rand(1, 3, 64, 64, generator=generator)              # a fine, busy texture
    loss = DistillLoss(l1=0, grid=0, gram=1e-9, loss_net=LossNetwork("caffe"))
    moved, _ = loss(torch.roll(target, shifts=(5, 7), dims=(2, 3)), target)   # the same strokes elsewhere
    smooth, _ = loss(torch.nn.functional.avg_pool2d(target, 5, 1, 2, count_include_pad=False), target)
    flat, parts = loss(target.mean(dim=(2, 3), keepdim=True).expand_as(target), target)
    assert set(parts) == {"gram"}
    assert float(moved) < 0.1 * float(smooth) < 0.1 * float(flat)
    with pytest.raises(ValueError, match="loss network"):
        DistillLoss(gram=1.0)


def test_the_feature_term_charges_misplaced_texture_as_the_gram_term_does_not():
    from trainer.vgg import LossNetwork

    target = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    loss = DistillLoss(l1=0, grid=0, feature=1e-9, loss_net=LossNetwork("caffe"))
    same, parts = loss(target, target)
    moved, _ = loss(torch.roll(target, shifts=(5, 7), dims=(2, 3)), target)
    flat, _ = loss(target.mean(dim=(2, 3), keepdim=True).expand_as(target), target)
    assert set(parts) == {"feature"} and float(same) == 0
    assert float(moved) > 0.5 * float(flat) > 0     # the same strokes elsewhere are nearly as wrong as none
    with pytest.raises(ValueError, match="loss network"):
        DistillLoss(feature=1.0)


def test_distill_without_the_gram_term_continues_with_it(setup):
    root = setup[0]
    assert distill(setup, "gram", "--iterations", "1", "--gram-weight", "0") == 0
    first = root / "gram" / "models" / "tiny_style_lite.json"
    assert set(json.loads(first.read_text())["recipe"]["final_losses"]) == {"total", "l1", "grid"}
    assert distill(setup, "gram2", "--iterations", "1", "--gram-weight", "1e-9", "--init", str(first)) == 0
    assert distill(setup, "gram3", "--iterations", "1", "--widths", "4", "8", "8", "4", "4", "--init", str(first)) == 1
    assert distill(setup, "wide", "--iterations", "1", "--widths", "4", "8", "16", "12", "4", "--init", str(first)) == 0
    wide = json.loads((root / "wide" / "models" / "tiny_style_lite.json").read_text())
    assert wide["architecture"]["widths"] == [4, 8, 16, 12, 4] and wide["recipe"]["init"]["model"] == "tiny_style_lite"
    meta = json.loads((root / "gram2" / "models" / "tiny_style_lite.json").read_text())
    assert set(meta["recipe"]["final_losses"]) == {"total", "l1", "grid", "gram"}
    assert meta["recipe"]["distill_weights"]["gram"] == 1e-9
    assert meta["recipe"]["init"]["sha256"] == json.loads(first.read_text())["sha256"]
    assert distill(setup, "feature", "--iterations", "1", "--gram-weight", "0", "--feature-weight", "1e-6",
                   "--init", str(first)) == 0
    meta = json.loads((root / "feature" / "models" / "tiny_style_lite.json").read_text())
    assert set(meta["recipe"]["final_losses"]) == {"total", "l1", "grid", "feature"}


def test_distill_makes_a_student_of_the_widths_asked_for(setup):
    root = setup[0]
    assert distill(setup, "narrow", "--iterations", "1", "--widths", "4", "8", "8", "4", "2") == 0
    store = ModelStore(root / "narrow" / "models", include_bundled=False, include_user=False)
    assert store.get("tiny_style_lite").metadata["architecture"] == {
        "type": "style", "channels": 4, "blocks": 1, "widths": [4, 8, 8, 4, 2]}
    out, _ = Engine(store, "cpu", "fp32").stylize(random_image(40, 36), None, "tiny_style_lite")
    assert out.shape == (40, 36, 3) and np.isfinite(out).all()


def test_the_objective_term_is_the_teachers_eq5_of_the_output_for_the_photo():
    from trainer.gatys import build_objective

    generator = torch.Generator().manual_seed(2)
    style, photo, output, teacher = (torch.rand(1, 3, 48, 48, generator=generator) for _ in range(4))
    objective = build_objective(style)
    loss = DistillLoss(l1=0, grid=0, objective=1e-6, loss_net=objective.loss_net, teacher_objective=objective)
    total, parts = loss(output, torch.cat([teacher, photo], dim=1))
    assert set(parts) == {"objective"}
    seen = (..., slice(8, -8), slice(8, -8))        # the VGG terms leave out VGG_MARGIN px along each side
    assert float(total) == pytest.approx(1e-6 * float(objective(output[seen], photo[seen])[0]), rel=1e-5)
    # it scores the output for the photo, whatever the teacher made of it
    assert float(loss(output, torch.cat([1 - teacher, photo], dim=1))[0]) == pytest.approx(float(total), rel=1e-5)
    assert float(loss(output, torch.cat([teacher, 1 - photo], dim=1))[0]) != pytest.approx(float(total), rel=1e-3)
    with pytest.raises(ValueError, match="teacher's objective"):
        DistillLoss(objective=1.0, loss_net=objective.loss_net)


def test_the_content_term_is_the_objectives_content_term_alone():
    from trainer.gatys import build_objective

    generator = torch.Generator().manual_seed(3)
    style, photo, teacher = (torch.rand(1, 3, 48, 48, generator=generator) for _ in range(3))
    objective = build_objective(style)
    loss = DistillLoss(l1=0, grid=0, content=2.0, loss_net=objective.loss_net, teacher_objective=objective)
    target = torch.cat([teacher, photo], dim=1)
    kept, parts = loss(photo, target)               # the photo itself keeps all of its structure
    moved, _ = loss(torch.roll(photo, shifts=(5, 7), dims=(2, 3)), target)
    assert set(parts) == {"content"} and float(kept) == 0
    seen = (..., slice(8, -8), slice(8, -8))
    assert float(moved) == pytest.approx(2.0 * objective.terms(torch.roll(photo, (5, 7), (2, 3))[seen],
                                                               photo[seen])["content"], rel=1e-4)
    with pytest.raises(ValueError, match="teacher's objective"):
        DistillLoss(content=1.0, loss_net=objective.loss_net)


def test_only_the_l1_and_grid_terms_see_the_crops_edges():
    from trainer.vgg import LossNetwork

    target = torch.rand(1, 3, 48, 48, generator=torch.Generator().manual_seed(5))
    loss = DistillLoss(l1=1, grid=0, gram=1e-9, feature=1e-9, loss_net=LossNetwork("caffe"))
    lined = target.clone()
    lined[..., :VGG_MARGIN, :] = 1.0                 # a bright band along the top edge
    _, parts = loss(lined, target)
    assert float(parts["l1"]) > 0.01 and float(parts["gram"]) == 0 and float(parts["feature"]) == 0
    lined[..., VGG_MARGIN, :] = 1.0                  # one line further in, the VGG terms see it
    _, parts = loss(lined, target)
    assert float(parts["gram"]) > 0 and float(parts["feature"]) > 0


def test_the_targets_keep_their_photos_pattern_not_the_teachers():
    rng = np.random.default_rng(4)
    photos = rng.random((6, 3, 32, 32)) * 0.5 + 0.25
    ramp = np.linspace(-0.1, 0.1, 32)[None, None, :, None]       # brighter towards the bottom: a pattern of its own
    screen_door = np.zeros((6, 3, 32, 32))
    screen_door[:, :, ::4, ::4] = 0.08
    teacher = np.clip(photos[:, ::-1] + ramp + screen_door, 0, 1)     # the teacher's colours, its screen door
    array = np.stack([photos + ramp, teacher], axis=1)
    array = np.round(array * 255).astype(np.uint8)
    made, targets = TargetPool(array, np.zeros((3, 4, 4))).pairs(range(6))
    assert (phase_patterns(targets, 4) - phase_patterns(made, 4)).abs().max() < 1.5 / 255
    assert 0.02 < phase_patterns(torch.from_numpy(array[:, 1] / 255), 4).abs().max()
    assert phase_patterns(made, 4).abs().max() > 0.01         # the photos' own pattern (the ramp) is kept


def test_a_targets_flat_white_patch_is_filled_from_around_it():
    rng = np.random.default_rng(5)
    photo = np.repeat(rng.uniform(0.25, 0.75, (96, 96, 1)), 3, axis=2).astype(np.float32)
    output = np.clip(photo[..., ::-1] * 0.8 + 0.1, 0, 1)          # the teacher's texture
    unchanged, count = fill_blown_patches(output, photo)
    assert count == 0 and unchanged is output
    yy, xx = np.mgrid[0:96, 0:96]
    hole = (yy - 48) ** 2 + (xx - 40) ** 2 <= 18 ** 2
    holed = output.copy()
    holed[hole] = 1.0
    filled, count = fill_blown_patches(holed, photo)
    assert count == 1
    assert abs(filled[hole].mean() - output.mean()) < 0.05          # the texture's mean level, not white
    far = (yy - 48) ** 2 + (xx - 40) ** 2 > 22 ** 2
    np.testing.assert_array_equal(filled[far], holed[far])           # the rest untouched


def test_distill_with_the_objective_term_needs_the_teachers_style_image(setup, capsys):
    root, photos, _ = setup
    assert distill(setup, "objective", "--iterations", "1", "--objective-weight", "1e-6") == 1
    assert "pass --style-image" in capsys.readouterr().err
    assert distill(setup, "objective", "--iterations", "1", "--objective-weight", "1e-6",
                   "--style-image", str(sorted(photos.iterdir())[0])) == 0
    recipe = json.loads((root / "objective" / "models" / "tiny_style_lite.json").read_text())["recipe"]
    assert set(recipe["final_losses"]) == {"total", "l1", "grid", "gram", "objective"}
    assert recipe["distill_weights"]["objective"] == 1e-6
