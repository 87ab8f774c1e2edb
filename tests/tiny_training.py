"""Tiny training runs for the test_training*.py modules: the shared data, and ``train style`` parsed
and run as the CLI would, at sizes that take seconds on a CPU."""

from pathlib import Path

from helpers import shared_dir
from trainer import train_style
from trainer.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
SHARED = shared_dir()
STYLE = SHARED / "data" / "styles" / "udnie.jpg"
CONTENT = SHARED / "data" / "content"
WEIGHTS = SHARED / "weights" / "vgg16_caffe_relu4_3.pth"
TINY = ["--size", "48", "--style-size", "64", "--batch", "2", "--channels", "8", "--blocks", "1",
        "--precision", "fp32", "--vgg-weights", str(WEIGHTS)]


def parse(*argv):
    return build_parser().parse_args([str(a) for a in argv])


def train_style_run(tmp, *extra):
    args = parse("train", "style", "--style", STYLE, "--content", CONTENT, *TINY, "--out", tmp / "models", *extra)
    return train_style.run(args)
