"""Training images: folder scanning, crops, the SR degradation, and a resumable sample order.

Which image and which crop a training step sees is a pure function of the seed and the
global sample number (:class:`CropSampler`), so a resumed run replays exactly the same
data, and DDP ranks draw disjoint samples without any state to share.
"""

import math
import random
import threading
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


def find_images(root):
    """All images under ``root`` (recursive; jpg/jpeg/png/webp), sorted. Raises if none."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist or is not a directory")
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found under {root}")
    return paths


def open_rgb(path, min_side=None):
    """Open an image as RGB PIL. With ``min_side``, JPEGs decode at a reduced scale whose
    shorter side is still at least ``min_side`` (much faster for big photos)."""
    image = Image.open(path)
    if min_side is not None and image.format == "JPEG":
        w, h = image.size
        factor = min(w, h) / min_side
        if factor >= 2:
            image.draft("RGB", (math.ceil(w / factor), math.ceil(h / factor)))
    return image.convert("RGB")


def to_tensor(image):
    """PIL RGB -> 3 x H x W float32 tensor in [0, 1]."""
    array = np.array(image, dtype=np.uint8)
    return torch.from_numpy(array).permute(2, 0, 1).float().div_(255)


def to_image(tensor):
    """3 x H x W tensor in [0, 1] -> PIL RGB."""
    array = tensor.detach().float().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array)


def load_image(path, max_side=None):
    """Read an image as a 1 x 3 x H x W tensor in [0, 1], optionally shrunk so that its
    longer side is ``max_side`` (how the paper sizes the style image)."""
    image = Image.open(path).convert("RGB")
    if max_side is not None:
        w, h = image.size
        ratio = max_side / max(w, h)
        image = image.resize((max(1, round(w * ratio)), max(1, round(h * ratio))), Image.BICUBIC)
    return to_tensor(image)[None]


def resize_shorter_side(image, size):
    """Scale a PIL image so its shorter side is ``size`` pixels."""
    w, h = image.size
    ratio = size / min(w, h)
    return image.resize((max(size, round(w * ratio)), max(size, round(h * ratio))), Image.BICUBIC)


def crop_at(image, size, rng):
    """A ``size`` x ``size`` crop of a PIL image at a position drawn from ``rng``."""
    w, h = image.size
    left, top = rng.randint(0, w - size), rng.randint(0, h - size)
    return image.crop((left, top, left + size, top + size))


def center_crop(image, size):
    """The central ``size`` x ``size`` crop of a PIL image."""
    w, h = image.size
    left, top = (w - size) // 2, (h - size) // 2
    return image.crop((left, top, left + size, top + size))


def gaussian_kernel(sigma):
    """Normalised 1-D Gaussian taps over +-3 sigma."""
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    taps = torch.exp(-x ** 2 / (2 * sigma ** 2))
    return taps / taps.sum()


def gaussian_blur(images, sigma=1.0):
    """Separable Gaussian blur of an N x C x H x W batch (reflected borders)."""
    taps = gaussian_kernel(sigma).to(images)
    r, c = len(taps) // 2, images.shape[1]
    x = F.pad(images, (r, r, r, r), mode="reflect")
    x = F.conv2d(x, taps.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, taps.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def degrade(hr, scale, sigma=1.0):
    """The paper's SR degradation: Gaussian blur (sigma 1.0), then bicubic downsampling
    by ``scale``. ``sigma=0``: the SR benchmarks' degradation instead, antialiased bicubic
    downsampling (MATLAB's imresize, Pillow's resize). ``hr``: N x 3 x H x W in [0, 1] with
    H and W divisible by ``scale``."""
    n, c, h, w = hr.shape
    if h % scale or w % scale:
        raise ValueError(f"HR size {w}x{h} is not divisible by the scale {scale}")
    blurred = gaussian_blur(hr, sigma) if sigma > 0 else hr
    low = F.interpolate(blurred, size=(h // scale, w // scale), mode="bicubic",
                        align_corners=False, antialias=sigma == 0)
    return low.clamp_(0, 1)


class CropSampler:
    """Random training crops drawn as a pure function of ``(seed, sample number)``.

    Sample ``s`` comes from epoch ``s // n`` (a seeded permutation of the ``n`` images) at
    position ``s % n``; its crop position is seeded by ``(seed, s)``. ``resize=True``
    scales the shorter side to ``size`` first (style content); ``resize=False`` crops at
    native resolution (SR patches), upscaling only images smaller than ``size``.
    Augmentation (style content; off by default): ``zoom`` > 1 scales the shorter side to
    ``zoom * size`` instead and cuts a square of a random side between ``size`` and that,
    resized to ``size`` (content seen at scales from the whole photo to ``zoom`` x closer);
    ``flip`` mirrors half the crops left to right.
    Unreadable files are skipped (with one warning each) in favour of the next image.
    Decoded images are kept in memory up to ``cache_bytes`` (decoding, not the GPU, is
    what limits a small data set otherwise); the cache never changes which pixels a
    sample gets. Several threads may draw samples at once (trainer/prefetch.py).
    """

    def __init__(self, paths, size, seed=0, resize=True, zoom=1.0, flip=False, cache_bytes=2 << 30):
        self.paths = list(paths)
        if not self.paths:
            raise ValueError("no training images")
        if zoom < 1 or (zoom > 1 and not resize):
            raise ValueError(f"zoom must be >= 1, and needs resize=True (got {zoom})")
        self.size, self.seed, self.resize = size, seed, resize
        self.zoom, self.flip = zoom, flip
        self.bad = set()
        self._orders = {}  # epoch -> permutation, for the epochs in use
        self._cache, self._cache_left = {}, cache_bytes
        self._lock = threading.Lock()

    def _order_of(self, epoch):
        with self._lock:
            order = self._orders.get(epoch)
            if order is None:
                order = np.random.default_rng([self.seed, epoch]).permutation(len(self.paths))
                self._orders = {e: o for e, o in self._orders.items() if e >= epoch - 1}
                self._orders[epoch] = order
            return order

    def _prepared(self, path):
        """The image at ``path`` decoded and sized for cropping (from the cache if there)."""
        image = self._cache.get(path)
        if image is None:
            side = round(self.size * self.zoom)
            image = open_rgb(path, min_side=side if self.resize else None)  # SR keeps native pixels
            if self.resize or min(image.size) < side:
                image = resize_shorter_side(image, side)
            nbytes = image.width * image.height * 3
            with self._lock:
                if path not in self._cache and nbytes <= self._cache_left:
                    self._cache[path], self._cache_left = image, self._cache_left - nbytes
        return image

    def _crop(self, path, rng):
        image = self._prepared(path)
        if self.zoom > 1:
            side = rng.randint(self.size, min(image.size))
            crop = crop_at(image, side, rng).resize((self.size, self.size), Image.BICUBIC)
        else:
            crop = crop_at(image, self.size, rng)
        if self.flip and rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return to_tensor(crop)

    def sample(self, number):
        """Crop number ``number`` as a 3 x size x size tensor."""
        n = len(self.paths)
        epoch, position = divmod(number, n)
        order = self._order_of(epoch)
        rng = random.Random(f"{self.seed}/{number}")
        for step in range(n):
            path = self.paths[order[(position + step) % n]]
            if path in self.bad:
                continue
            try:
                return self._crop(path, rng)
            except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
                self.bad.add(path)
                warnings.warn(f"skipping unreadable image {path}: {exc}", stacklevel=2)
        raise ValueError("none of the training images could be read")

    def batch(self, first, count):
        """Samples ``first`` ... ``first + count - 1`` stacked into a count x 3 x size x size batch."""
        return torch.stack([self.sample(first + i) for i in range(count)])


def preview_crops(paths, size, count=3, resize=True):
    """Centre crops of the first ``count`` readable images, their shorter side resized to
    ``size`` first (``resize=False``: only when it is smaller, as for SR patches)."""
    crops = []
    for path in paths:
        try:
            image = open_rgb(path, size if resize else None)
            if resize or min(image.size) < size:
                image = resize_shorter_side(image, size)
            crops.append(to_tensor(center_crop(image, size)))
        except (OSError, UnidentifiedImageError, ValueError):
            continue
        if len(crops) == count:
            break
    if not crops:
        raise ValueError("none of the images could be read for the preview")
    return torch.stack(crops)


def split_holdout(paths, holdout=0, holdout_list=None, seed=0):
    """Split ``paths`` into (training, held-out). ``holdout``: number of images held out at
    random (seeded); ``holdout_list``: a text file naming held-out images (file names or
    paths, one per line, '#' comments). Raises if nothing is left to train on."""
    held = set()
    if holdout_list is not None:
        names = {line.split("#", 1)[0].strip() for line in Path(holdout_list).read_text().splitlines()}
        names.discard("")
        held |= {p for p in paths if p.name in names or str(p) in names or p.stem in names}
    if holdout:
        rest = [p for p in paths if p not in held]
        if holdout > len(rest):
            raise ValueError(f"cannot hold out {holdout} of {len(rest)} images")
        held |= set(random.Random(seed).sample(rest, holdout))
    train = [p for p in paths if p not in held]
    if not train:
        raise ValueError("every image is held out: nothing left to train on")
    return train, sorted(held)
