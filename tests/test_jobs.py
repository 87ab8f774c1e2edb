"""The one job function (decode → engine → encode), as the daemon's worker and the CLI's in-process path run it."""

import numpy as np
import pytest
import zmq

from backend import pixels, protocol
from backend.daemon.fair_queue import Job
from backend.daemon.jobs import run_image_job, run_queued_job
from backend.daemon.request_checks import check_stylize, check_upscale
from backend.engine import Engine
from backend.model_store import ModelStore
from helpers import make_model, random_image

LIMITS = {"max_pixels": 1_000_000, "max_bytes": 1 << 24, "queue": 4}
U16 = {"dtype": "u16", "channels": "RGBA", "transfer": "srgb"}


def no_progress(done, total):
    pass


def not_cancelled():
    return False


@pytest.fixture(scope="module")
def engine(models_dir):
    return Engine(ModelStore(models_dir, include_bundled=False, include_user=False), device="cpu", precision="fp32")


def test_a_queued_request_gets_what_the_in_process_call_with_its_options_gets(engine):
    image = pixels.encode(random_image(24, 20, 3), np.linspace(0, 1, 24 * 20, dtype=np.float32).reshape(24, 20), U16)
    header = {"id": "r1", "kind": "stylize", "width": 20, "height": 24, "format": U16, "model": "mosaic",
              "strength": 0.5, "preserve_colors": True}
    frames = [zmq.Frame(image.tobytes())]
    check_stylize(header, frames, LIMITS, engine.store)
    reply, (out,) = run_queued_job(engine, Job(b"A", header, frames), no_progress, not_cancelled)
    local = run_image_job(engine, "stylize", image, 20, 24, U16, None,
                          {"model": "mosaic", "strength": 0.5, "preserve_colors": True}, no_progress, not_cancelled)
    assert reply == {"kind": "result", "width": 20, "height": 24, "format": U16}
    np.testing.assert_array_equal(out, local)
    assert not np.array_equal(local, image)                           # the style did something
    np.testing.assert_array_equal(local[:, :, 3], image[:, :, 3])     # ... and alpha went through untouched


def test_an_upscale_whose_model_changed_scale_while_it_waited_is_refused(tmp_path):
    make_model(tmp_path, "sr", "sr", 4, seed=1)
    store = ModelStore(tmp_path, include_bundled=False, include_user=False)
    store.refresh()   # the daemon's first scan
    fmt = {"dtype": "u8", "channels": "RGB", "transfer": "srgb"}
    header = {"id": "r1", "kind": "upscale", "width": 8, "height": 8, "format": fmt, "model": "sr"}
    frames = [zmq.Frame(bytes(8 * 8 * 3))]
    check_upscale(header, frames, LIMITS, store)
    assert header["scale"] == 4
    make_model(tmp_path, "sr", "sr", 2, seed=2)   # replaced by an x2 model before the job ran
    store.refresh()
    with pytest.raises(protocol.BadRequest, match="changed while the request waited"):
        run_queued_job(Engine(store, device="cpu", precision="fp32"), Job(b"A", header, frames), no_progress,
                       not_cancelled)
