"""Request checks: what the daemon's loop verifies before a request is answered or queued.

Each check raises the protocol error that fits (``bad_request``, ``too_large``, ``bad_pixels``,
``unknown_model`` …), so a request that would fail fails at once, before it waits in the queue.
``limits`` is the daemon's ``{"max_pixels", "max_bytes", "queue"}``.
"""

from backend import protocol


def check_request_size(frames, max_bytes):
    """Refuse a request whose frames together exceed ``max_bytes``."""
    total = sum(len(frame) for frame in frames)
    if total > max_bytes:
        raise protocol.TooLarge(f"request is {total} bytes; this daemon accepts at most {max_bytes} "
                                "(brushwork serve --max-bytes)")


def check_header(header):
    """Check the fields every request has (``id``, ``v``, ``kind``); return ``(id, kind)``."""
    request_id, kind = header.get("id"), header.get("kind")
    if not isinstance(request_id, str) or not request_id:
        raise protocol.BadRequest("the header needs an 'id' string chosen by the client")
    if header.get("v", protocol.PROTOCOL_VERSION) != protocol.PROTOCOL_VERSION:
        raise protocol.BadRequest(f"protocol version {header.get('v')!r} not supported; this daemon speaks "
                                  f"version {protocol.PROTOCOL_VERSION}")
    if not isinstance(kind, str):
        raise protocol.BadRequest(f"'kind' must be a string naming the request, got {kind!r}")
    return request_id, kind


def _positive_int(header, key):
    value = header.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise protocol.BadRequest(f"{key!r} must be a positive integer, got {value!r}")
    return value


def check_image_request(header, frames, max_pixels, allow_mask=True):
    """Validate width/height/format/mask against the binary frames; raise the fitting error.
    Return ``(width, height, format)`` and store the normalised format in ``header``."""
    width, height = _positive_int(header, "width"), _positive_int(header, "height")
    if width * height > max_pixels:
        raise protocol.TooLarge(f"{width}x{height} is {width * height} pixels; this daemon accepts at most "
                                f"{max_pixels} (brushwork serve --max-pixels)")
    fmt = protocol.validate_format(header.get("format"))
    has_mask = header.get("mask", False)
    if not isinstance(has_mask, bool) or (has_mask and not allow_mask):
        raise protocol.BadRequest(f"'mask' must be true or false{'' if allow_mask else ' (false here)'}")
    wanted = 2 if has_mask else 1
    if len(frames) != wanted:
        raise protocol.BadRequest(f"expected {wanted} binary frame(s) after the header "
                                  f"({'pixels, mask' if has_mask else 'pixels'}), got {len(frames)}")
    expected = protocol.frame_size(width, height, fmt)
    if len(frames[0]) != expected:
        raise protocol.BadPixels(f"pixel frame has {len(frames[0])} bytes; a {width}x{height} {fmt['dtype']} "
                                 f"{fmt['channels']} image needs {expected}")
    if has_mask and len(frames[1]) != width * height:
        raise protocol.BadPixels(f"mask frame has {len(frames[1])} bytes; a {width}x{height} u8 mask needs "
                                 f"{width * height}")
    header["format"] = fmt
    return width, height, fmt


def _check_switches(header, *keys):
    """Options that are switches must be JSON booleans (a string such as "no" is not false)."""
    for key in keys:
        protocol.check_switch(key, header.get(key, False))


def check_stylize(header, frames, limits, store):
    """A ``stylize`` request: the image, a model name, ``strength`` and ``preserve_colors``."""
    check_image_request(header, frames, limits["max_pixels"])
    if not isinstance(header.get("model"), str):
        raise protocol.BadRequest("'model' (the style model's name) must be a string")
    protocol.check_strength(header.get("strength", 1.0))
    _check_switches(header, "preserve_colors")


def check_upscale(header, frames, limits, store):
    """An ``upscale`` request: resolve the SR model that will run (the named one, else the first for
    ``scale``), write its name and scale into ``header``, and check the output size against its
    scale: a request's ``scale`` must not understate the model's."""
    width, height, _ = check_image_request(header, frames, limits["max_pixels"])
    _check_switches(header, "histogram_match")
    model = header.get("model")
    if model is not None and not isinstance(model, str):
        raise protocol.BadRequest("'model' must be a string or null")
    scale = _positive_int(header, "scale") if header.get("scale") is not None else None
    info = store.resolve_sr(model, scale, refresh=False)
    header["model"], header["scale"] = info.name, info.scale
    _check_output_size(width, height, info.scale, limits["max_pixels"])


def _check_output_size(width, height, scale, max_pixels):
    if width * height * scale * scale > max_pixels:
        raise protocol.TooLarge(f"x{scale} of {width}x{height} would be {width * height * scale * scale} pixels; "
                                f"this daemon makes at most {max_pixels} (brushwork serve --max-pixels)")

