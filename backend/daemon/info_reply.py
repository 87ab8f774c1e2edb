"""The ``info`` reply: the daemon's models (with thumbnails if asked; lite nets and the styles they are
the lite versions of name each other), problems, limits and training.

It fits in ``protocol.MAX_INFO_BYTES``: what does not fit is left out (thumbnails first, then recipes
and data, then models) and ``left_out`` says so. Server paths go only to clients on this machine's
IPC socket; others get file names.
"""

import base64
import os

from backend import __version__, protocol
from backend.model_files import MAX_THUMBNAIL_BYTES, read_regular_file
from backend.protocol import BrushworkError

MAX_INFO_PROBLEMS = 200   # problems listed in one `info` reply


def info_reply(request_id, engine, store, limits, training, local, thumbnails=False):
    """The ``info`` reply to request ``request_id``, from the model store's last scan. ``training``
    is the training jobs' description; ``local``: the client is on this machine's IPC socket."""
    models = []
    for model, entry in store.summaries(refresh=False):
        if not local:
            entry["path"] = model.json_path.name
        if thumbnails and model.thumbnail_path is not None:
            try:
                png = read_regular_file(model.thumbnail_path, MAX_THUMBNAIL_BYTES)
                entry["thumbnail_png"] = base64.b64encode(png).decode("ascii")
            except BrushworkError:
                pass
        models.append(entry)
    problems = [p if local else os.path.basename(p.partition(": ")[0]) + ": " + p.partition(": ")[2]
                for p in store.problems]
    reply = {"kind": "info", "id": request_id, "version": __version__, "protocol": protocol.PROTOCOL_VERSION,
             "device": engine.device, "precision": engine.precision, "models": models,
             "problems": problems[:MAX_INFO_PROBLEMS], "limits": limits, "training": training}
    if len(problems) > MAX_INFO_PROBLEMS:
        reply["problems"].append(f"... and {len(problems) - MAX_INFO_PROBLEMS} more problems")
    return fit_info_reply(reply)


def fit_info_reply(reply, limit=protocol.MAX_INFO_BYTES):
    """``reply`` made to encode in at most ``limit`` bytes: thumbnails, then recipes and data, then
    models from the end of the list are left out until it fits, and ``left_out`` says what was."""
    def size():
        return len(protocol.encode_header(reply))

    steps = (("thumbnails", ("thumbnail_png",)), ("thumbnails, recipes and data", ("recipe", "data")))
    for what, keys in steps:
        if size() <= limit:
            return reply
        for entry in reply["models"]:
            for key in keys:
                entry.pop(key, None)
        reply["left_out"] = f"{what} (this reply would exceed {limit} bytes)"
    total = len(reply["models"])
    while size() > limit and reply["models"]:
        del reply["models"][len(reply["models"]) // 2:]
    if len(reply["models"]) < total:
        reply["left_out"] = (f"recipes, data, thumbnails and {total - len(reply['models'])} of {total} models "
                             f"(this reply would exceed {limit} bytes)")
    return reply
