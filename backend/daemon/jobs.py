"""Image jobs: decode the editor's pixels, run the engine, encode the result in the request's format.

:func:`run_image_job` is the one job function. The daemon's worker runs it for each queued request
(:func:`run_queued_job`), and ``brushwork stylize`` / ``upscale`` run it in-process when no daemon
answers. Each job kind (:data:`JOB_KINDS`) has a check, which the loop runs before the request is
queued (backend/daemon/request_checks.py), and reads the engine's options from the checked header.
Adding a job kind for the worker means adding one entry there (``train_style`` runs beside it instead).
"""

from typing import Callable, NamedTuple

from backend import pixels, protocol
from backend.daemon.request_checks import check_stylize, check_upscale


def _stylize_options(header, store):
    return {"model": header["model"], "strength": float(header.get("strength", 1.0)),
            "preserve_colors": bool(header.get("preserve_colors", False))}


def _upscale_options(header, store):
    if store.get(header["model"]).scale != header["scale"]:   # the model's file changed since the check
        raise protocol.BadRequest(f"model {header['model']!r} changed while the request waited; send it again")
    return {"model": header.get("model"), "scale": header["scale"],
            "histogram_match": bool(header.get("histogram_match", False))}


class JobKind(NamedTuple):
    check: Callable     # check(header, frames, limits, store): in the loop thread, before the job is queued
    options: Callable   # options(header, store): the engine method's keyword arguments, in the worker thread
    method: str         # the Engine method that runs it


JOB_KINDS = {
    "stylize": JobKind(check_stylize, _stylize_options, "stylize"),
    "upscale": JobKind(check_upscale, _upscale_options, "upscale"),
}


def run_image_job(engine, kind, image, width, height, fmt, mask, options, progress, is_cancelled):
    """Run a ``kind`` job (a key of JOB_KINDS) on ``engine`` and return the result encoded in ``fmt``.

    ``image`` holds ``width`` x ``height`` pixels in format ``fmt`` (a buffer or an array), ``mask``
    a u8 selection mask of the same size or None; ``options`` are the engine method's keyword
    arguments. ``progress(done, total)`` hears each tile and ``is_cancelled()`` is asked between them.
    """
    run = getattr(engine, JOB_KINDS[kind].method)
    rgb, alpha = pixels.decode(image, width, height, fmt)
    mask = pixels.decode_mask(mask, width, height) if mask is not None else None
    rgb, alpha = run(rgb, alpha, mask=mask, progress=progress, is_cancelled=is_cancelled, **options)
    return pixels.encode(rgb, alpha, fmt)


def run_queued_job(engine, job, progress, is_cancelled):
    """Run a queued, checked request (a :class:`~backend.daemon.fair_queue.Job`); return the
    ``result`` reply's header and frames."""
    header = job.header
    options = JOB_KINDS[job.kind].options(header, engine.store)
    mask = job.frames[1].buffer if header.get("mask") else None
    out = run_image_job(engine, job.kind, job.frames[0].buffer, header["width"], header["height"],
                        header["format"], mask, options, progress, is_cancelled)
    height, width = out.shape[:2]
    return {"kind": "result", "width": width, "height": height, "format": header["format"]}, [out]
