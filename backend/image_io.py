"""Read and write image files for the command line, as raw pixel buffers plus a pixel format.

Pillow handles 8-bit images (PNG, JPEG, WebP, TIFF, ...); 16-bit RGB/RGBA PNGs, which
Pillow would cut to 8 bits, go through pypng so they stay 16-bit (``u16``) end to end.
Images come back as C-contiguous H x W x C numpy arrays in RGB or RGBA (alpha kept).
"""

from pathlib import Path

import numpy as np
import png
from PIL import Image

from backend.protocol import BadPixels, BadRequest

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NO_ALPHA = {".jpg", ".jpeg", ".bmp"}
# zlib level of the PNGs we write: at 1024² level 1 takes a third of the time of Pillow's default 6
# (0.10 s against 0.32 s on a 2-core CPU, a third of a whole `brushwork stylize` with a lite net)
# for about 10 % more bytes.
PNG_COMPRESS_LEVEL = 1


def _png_bit_depth(path):
    with open(path, "rb") as f:
        head = f.read(26)
    if len(head) < 26 or not head.startswith(PNG_SIGNATURE) or head[12:16] != b"IHDR":
        return None
    return head[24]


def _read_png16(path):
    width, height, rows, info = png.Reader(filename=str(path)).asDirect()
    planes = info["planes"]
    image = np.vstack([np.asarray(row, np.uint16) for row in rows]).reshape(height, width, planes)
    if info["greyscale"]:  # grey or grey+alpha -> RGB(A)
        image = np.concatenate([image[:, :, :1]] * 3 + ([image[:, :, 1:]] if planes == 2 else []), axis=2)
    return np.ascontiguousarray(image)


def _pillow_to_array(image):
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit greyscale
        grey = np.asarray(image, dtype=np.int64)
        if grey.max(initial=0) > 65535 or grey.min(initial=0) < 0:
            raise BadPixels(f"{image.mode} image has values outside 0..65535")
        return np.ascontiguousarray(np.repeat(grey.astype(np.uint16)[:, :, None], 3, axis=2))
    if image.mode == "F":
        grey = np.asarray(image, dtype=np.float32)
        return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
    has_alpha = "A" in image.getbands() or "transparency" in image.info
    return np.asarray(image.convert("RGBA" if has_alpha else "RGB"))


def read_image(path):
    """Read an image file; return (H x W x C array, pixel format dict). Raises BrushworkError."""
    path = Path(path)
    try:
        if _png_bit_depth(path) == 16:
            array = _read_png16(path)
        else:
            with Image.open(path) as image:
                image.load()
                array = _pillow_to_array(image)
    except FileNotFoundError:
        raise BadRequest(f"{path}: no such file") from None
    except (OSError, png.Error, ValueError) as exc:
        raise BadRequest(f"{path}: cannot read image ({exc})") from None
    dtype = {np.dtype(np.uint8): "u8", np.dtype(np.uint16): "u16", np.dtype(np.float32): "f32"}[array.dtype]
    channels = "RGBA" if array.shape[2] == 4 else "RGB"
    return np.ascontiguousarray(array), {"dtype": dtype, "channels": channels, "transfer": "srgb"}


def read_mask(path, width, height):
    """Read a selection mask image (white = selected) as u8 bytes of ``width`` x ``height``."""
    try:
        with Image.open(path) as image:
            mask = image.convert("L")
    except (OSError, ValueError) as exc:
        raise BadRequest(f"{path}: cannot read mask ({exc})") from None
    if mask.size != (width, height):
        raise BadRequest(f"mask {path} is {mask.size[0]}x{mask.size[1]}, the image is {width}x{height}")
    return np.asarray(mask).tobytes()


def check_writable(path):
    """Raise BrushworkError unless Pillow knows an image format for ``path``'s extension."""
    suffix = Path(path).suffix.lower()
    Image.preinit()     # the common formats first: loading all of Pillow's plug-ins costs a CLI call 50 ms
    if suffix not in Image.EXTENSION and suffix not in Image.registered_extensions():
        raise BadRequest(f"{path}: cannot write images with extension {Path(path).suffix!r}; "
                         "use e.g. .png, .jpg, .webp or .tif")


def _to_u8(array):
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        return ((array.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    return (np.clip(array, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def write_image(path, array, quality=95):
    """Write an H x W x 3|4 array (u8, u16 or f32 in 0..1); the file type follows the extension.

    16-bit PNG stays 16-bit; other types are written as 8-bit (JPEG and BMP drop alpha).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    height, width, planes = array.shape
    try:
        if suffix == ".png" and array.dtype != np.uint8:
            if array.dtype != np.uint16:
                array = (np.clip(array, 0.0, 1.0) * 65535 + 0.5).astype(np.uint16)
            writer = png.Writer(width, height, greyscale=False, alpha=planes == 4, bitdepth=16,
                                compression=PNG_COMPRESS_LEVEL)
            with open(path, "wb") as f:
                writer.write_array(f, array.reshape(-1))
            return
        image = Image.fromarray(_to_u8(array), "RGBA" if planes == 4 else "RGB")
        if suffix in NO_ALPHA:
            image = image.convert("RGB")
        if suffix in (".jpg", ".jpeg", ".webp"):
            image.save(path, quality=quality)
        elif suffix == ".png":
            image.save(path, compress_level=PNG_COMPRESS_LEVEL)
        else:
            image.save(path)
    except (OSError, ValueError, KeyError) as exc:
        raise BadRequest(f"{path}: cannot write image ({exc})") from None
