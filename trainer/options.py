"""The trainer's command-line options: ``train style``, ``train sr``, ``train distill``, ``eval sr``, ``eval style``
and ``brushwork stylize --optimize``.

The training options the editors can set too (``--iterations``, ``--size``, ``--zoom``, ...) are
described once, in ``backend.protocol.TRAIN_OPTIONS``; :func:`add_train_option` adds one.
This module imports neither torch nor the training code, so that building the ``brushwork``
parser (for ``--help``, ``models``, ``stylize`` through a daemon, ...) stays fast; the
commands import their modules only when they run (see :mod:`trainer.cli`).
"""

from pathlib import Path

from backend.protocol import DISTILL_OPTIONS, SR_SCALES, TRAIN_OPTIONS

VGG_FLAVOURS = ("caffe", "torchvision")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
LBFGS_INITS = ("noise", "content")
LBFGS_ITERATIONS = 300     # brushwork stylize --optimize
LBFGS_SIZE = 512
STYLE_SIZE = TRAIN_OPTIONS["style_size"].default   # longer side of the style image, in training and the baseline
GRAM_WEIGHT = 3e-10          # train distill: the Gram term against the teacher (docs/models.md, "Lite nets")


def add_train_option(parser, name, **changes):
    """Add training option ``name`` (flag, type, default and help from ``protocol.TRAIN_OPTIONS``, or
    ``protocol.DISTILL_OPTIONS`` for distillation's own) to ``parser``; ``changes`` set another
    default or help where a command means a little else."""
    option = TRAIN_OPTIONS.get(name) or DISTILL_OPTIONS[name]
    if option.kind is bool:
        return parser.add_argument(option.flag, action="store_true", help=changes.get("help", option.help))
    arguments = {"type": option.kind, "default": option.default, "help": option.help}
    if option.metavar:
        arguments["metavar"] = option.metavar
    if option.choices:
        arguments["choices"] = option.choices
    return parser.add_argument(option.flag, **{**arguments, **changes})


def add_vgg_arguments(parser):
    parser.add_argument("--vgg", choices=VGG_FLAVOURS, default="caffe",
                        help="loss network weights: the paper's Caffe VGG-16 (default) or torchvision's "
                             "ImageNet VGG-16 (downloaded by torchvision on first use)")
    parser.add_argument("--vgg-weights", type=Path, default=None, metavar="PATH",
                        help="VGG-16 state dict (conv1_1..conv4_3, torchvision layout) for the chosen flavour")


def add_holdout_arguments(parser):
    parser.add_argument("--holdout", type=int, default=0, metavar="K",
                        help="hold K images (seeded choice) out of training; listed in the model's metadata (data.held_out)")
    parser.add_argument("--holdout-list", type=Path, default=None, metavar="FILE",
                        help="text file naming images never to train on (one file name or path a line)")


def add_loop_arguments(parser, iterations, batch):
    """Options every training command has."""
    add_train_option(parser, "iterations", default=iterations)
    add_train_option(parser, "batch", default=batch)
    add_train_option(parser, "lr")
    parser.add_argument("--warmup", type=int, default=0, metavar="N",
                        help="raise the learning rate linearly from 0 over the first N iterations (default 0)")
    parser.add_argument("--lr-final", type=float, default=None, metavar="LR",
                        help="decay the learning rate to LR by the last iteration (cosine; default: constant, "
                             "as the paper)")
    add_train_option(parser, "seed")
    add_train_option(parser, "checkpoint_every")
    parser.add_argument("--keep-checkpoints", type=int, default=3, metavar="N",
                        help="keep the newest N checkpoints, deleting older ones (0: keep all; default 3)")
    parser.add_argument("--resume", nargs="?", const="latest", default=None, metavar="PATH",
                        help="continue from a checkpoint (default: the latest one in the run dir)")
    parser.add_argument("--run-dir", type=Path, default=None, metavar="D",
                        help="where checkpoints, previews and the loss curve go "
                             "(default: <user data dir>/brushwork/runs/<name>)")
    parser.add_argument("--out", type=Path, default=None, metavar="MODELS_DIR",
                        help="models dir to export into (default: the user models dir the daemon reads)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="auto: bf16 on GPUs and bf16-capable CPUs, else fp16 on older GPUs, else fp32")
    parser.add_argument("--loader-threads", type=int, default=None, metavar="N",
                        help="threads making the next batches during a step (default: 4 on a GPU, 0 on a CPU)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the net: about a quarter faster per step on an H100, after "
                             "about 40 s of compiling")
    add_train_option(parser, "channels")
    add_train_option(parser, "blocks")
    parser.add_argument("--init", default=None, metavar="MODEL",
                        help="start from this model's weights (a model name or a model .json path; same "
                             "architecture, or more --blocks, which start as the identity, or for a style net "
                             "more channels (--widths), copies of its own) instead of random ones: fine-tuning. "
                             "The recipe records it")
    add_train_option(parser, "time_limit")
    parser.add_argument("--estimate", action="store_true",
                        help="only time a few iterations on this device, print how long --iterations would "
                             "take, and exit without writing anything")
    parser.add_argument("--progress-json", action="store_true",
                        help="also print one JSON line per progress update on stdout, and stop early, "
                             "saving the model, on reading the line 'stop' on stdin")


def add_train_style_arguments(parser):
    """Options of ``train style``."""
    parser.add_argument("--style", type=Path, required=True, metavar="IMG", help="the style image")
    parser.add_argument("--content", type=Path, required=True, metavar="DIR",
                        help="folder of content photos (searched recursively; jpg/jpeg/png/webp)")
    parser.add_argument("--name", help="model name (default: from the style file name)")
    parser.add_argument("--display-name", help="name shown in the editors (default: from --name)")
    for name in ("size", "style_size", "content_weight", "style_weight", "tv_weight", "zoom", "flip", "border"):
        add_train_option(parser, name)
    add_holdout_arguments(parser)
    add_vgg_arguments(parser)
    add_loop_arguments(parser, iterations=40000, batch=4)


def add_train_sr_arguments(parser):
    """Options of ``train sr``."""
    parser.add_argument("--scale", type=int, choices=SR_SCALES, required=True, help="upscaling factor")
    parser.add_argument("--loss", choices=("feat", "pixel"), default="feat",
                        help="feat: feature loss at relu2_2 (sharper); pixel: per-pixel loss (higher PSNR)")
    parser.add_argument("--data", type=Path, required=True, metavar="DIR",
                        help="folder of high-resolution photos (recursive; jpg/jpeg/png/webp)")
    parser.add_argument("--name", help="model name (default: sr_x<scale>_<loss>)")
    parser.add_argument("--display-name", help="name shown in the editors")
    add_train_option(parser, "size", default=288, help="HR patch size, divisible by the scale (default %(default)s)")
    parser.add_argument("--blur", type=float, default=1.0, metavar="SIGMA",
                        help="Gaussian blur before bicubic downsampling (default 1.0, the paper's); "
                             "0: antialiased bicubic alone, the degradation SR benchmarks measure")
    parser.add_argument("--residual", action="store_true",
                        help="learn only the detail added to a bicubic upscale (global skip, as VDSR; "
                             "not in the paper, trains much faster)")
    parser.add_argument("--upsample", choices=("nearest", "bilinear"), default="nearest",
                        help="how the net's x2 stages resize (default nearest); bilinear makes it harder for a "
                             "feature-loss net to paint blocks locked to the low-resolution grid (not in the paper)")
    add_holdout_arguments(parser)
    add_train_option(parser, "content_weight", help="feature loss weight (--loss feat)")
    parser.add_argument("--pixel-weight", type=float, default=None,
                        help="pixel loss weight; with --loss feat it adds a pixel term (default 0 there)")
    add_train_option(parser, "tv_weight")
    parser.add_argument("--grid-weight", type=float, default=None,
                        help="weight of the grid loss: the error pattern repeating every scale pixels "
                             "(default 0; not in the paper)")
    add_vgg_arguments(parser)
    add_loop_arguments(parser, iterations=200000, batch=4)


def add_train_distill_arguments(parser):
    """Options of ``train distill``."""
    parser.add_argument("--teacher", required=True, metavar="MODEL", help="the style model to reproduce")
    parser.add_argument("--content", type=Path, required=True, metavar="DIR",
                        help="folder of content photos (searched recursively; jpg/jpeg/png/webp); those the "
                             "teacher's metadata lists as held out are left out too")
    parser.add_argument("--name", help="model name (default: the teacher's name + '_lite')")
    parser.add_argument("--display-name", help="name shown in the editors (default: the teacher's + ' (lite)')")
    parser.add_argument("--models", action="append", metavar="DIR",
                        help="extra model directory to find the teacher in (repeatable)")
    add_train_option(parser, "recipe")
    add_train_option(parser, "size")
    add_train_option(parser, "pool")
    parser.add_argument("--zoom", type=float, default=2.0, metavar="Z",
                        help="crops of random side, from the whole photo (shorter side = --size) to Z times "
                             "closer (default 2; 1: off)")
    parser.add_argument("--no-flip", action="store_true", help="do not mirror half the crops left to right")
    parser.add_argument("--l1-weight", type=float, default=1.0, help="weight of the L1 loss to the teacher (default 1)")
    parser.add_argument("--grid-weight", type=float, default=10.0,
                        help="weight of the grid loss: the student's error pattern repeating every 4 pixels "
                             "(default 10)")
    parser.add_argument("--widths", type=int, nargs=5, default=None, metavar="W",
                        help="the student's layer widths: its encoder's three convolutions and its decoder's two "
                             "upsampling stages (default: --channels c as the paper's c, 2c, 4c, 2c, c)")
    parser.add_argument("--gram-weight", type=float, default=GRAM_WEIGHT,
                        help="weight of the Gram loss: the student's VGG-16 texture statistics (Gram matrices at "
                             "relu1_2 ... relu4_3, as the style loss) against the teacher's output's on the same "
                             "crop; it costs a VGG pass each step (default %(default)s; 0: off)")
    parser.add_argument("--feature-weight", type=float, default=0.0,
                        help="weight of the feature loss: the student's VGG-16 features at relu2_2 (the content "
                             "layer) against the teacher's output's on the same crop; it shares the Gram term's "
                             "VGG pass (default 0: off)")
    parser.add_argument("--objective-weight", type=float, default=0.0,
                        help="weight of the teacher's own objective (Eq. 5: its VGG, loss weights and style "
                             "image) of the student's output for the photo; it shares the Gram term's VGG pass "
                             "(default 0: off)")
    parser.add_argument("--content-weight", type=float, default=0.0,
                        help="weight of the content term of the teacher's objective on its own (the student's "
                             "relu2_2 features against the photo's, at the teacher's content weight), added to "
                             "the objective term: more keeps more of the photo at some cost in style (default 0: off)")
    parser.add_argument("--style-image", default=None,
                        help="the teacher's style image, for the objective term (default: the one in the "
                             "teacher's metadata)")
    add_holdout_arguments(parser)
    add_loop_arguments(parser, iterations=20000, batch=4)


def add_eval_sr_arguments(parser):
    """Options of ``eval sr``."""
    parser.add_argument("--model", default=None,
                        help="SR model name (default / 'bicubic': evaluate only the bicubic baseline)")
    parser.add_argument("--bicubic-only", action="store_true", help="evaluate only the bicubic baseline")
    parser.add_argument("--data", nargs="+", required=True, metavar="DIR",
                        help="directories (or files) of high-resolution test images, e.g. shared/data/sr/Set5")
    parser.add_argument("--scale", type=int, default=None, help="upscaling factor (default: the model's, else 4)")
    parser.add_argument("--out-dir", default=None, metavar="DIR",
                        help="where to write the Markdown table and grids (default: a new folder "
                             "<user data dir>/brushwork/runs/eval-sr-MODEL-DATE-TIME)")
    parser.add_argument("--models", action="append", metavar="DIR", help="extra model directory (repeatable)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")


def add_eval_style_arguments(parser):
    """Options of ``eval style``."""
    parser.add_argument("--model", default=None, help="style model name")
    parser.add_argument("--content", nargs="+", required=True, metavar="DIR", help="content images or directories")
    parser.add_argument("--sizes", nargs="+", type=int, default=[256, 512], help="square sizes (default 256 512)")
    parser.add_argument("--iterations", nargs="+", type=int, default=[50, 100, 200, 300, 500],
                        help="L-BFGS iteration counts to report (one run per image; default 50 100 200 300 500)")
    parser.add_argument("--init", choices=LBFGS_INITS, default="noise",
                        help="L-BFGS start: white noise (the paper's, default) or the content image")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial noise")
    parser.add_argument("--style-image", default=None,
                        help="style image (default: the one in the model's metadata)")
    parser.add_argument("--style-size", type=int, default=None,
                        help=f"longer side of the style image (default: the model's training value, else {STYLE_SIZE})")
    parser.add_argument("--vgg", choices=VGG_FLAVOURS, default="caffe",
                        help="VGG flavour when no --model is given (a model uses its own)")
    parser.add_argument("--vgg-weights", default=None, metavar="PATH", help="VGG-16 state dict")
    parser.add_argument("--baselines", default=None, metavar="FILE",
                        help="JSON file of L-BFGS runs: runs of the same objective, content image, size, "
                             "start, seed and iteration count are read from it instead of run again, and new "
                             "ones are added (one eval per file at a time)")
    parser.add_argument("--out-dir", default=None, metavar="DIR",
                        help="where to write the table and the plot (default: a new folder "
                             "<user data dir>/brushwork/runs/eval-style-MODEL-DATE-TIME)")
    parser.add_argument("--models", action="append", metavar="DIR", help="extra model directory (repeatable)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")


def add_optimize_arguments(parser):
    """Add the ``--optimize`` options (the Gatys et al. baseline) to ``brushwork stylize``'s ``parser``."""
    group = parser.add_argument_group("optimisation baseline (Gatys et al., as in Johnson et al. Sec. 4.1)")
    group.add_argument("--optimize", action="store_true",
                       help="optimise the image with L-BFGS instead of running a feed-forward model")
    group.add_argument("--style-image", metavar="S", help="style image (required with --optimize)")
    group.add_argument("--iterations", type=int, default=LBFGS_ITERATIONS,
                       help=f"L-BFGS iterations (default {LBFGS_ITERATIONS})")
    group.add_argument("--size", type=int, default=LBFGS_SIZE,
                       help=f"longer side of the output in pixels (default {LBFGS_SIZE})")
    group.add_argument("--style-size", type=int, default=STYLE_SIZE,
                       help=f"longer side the style image is scaled to (default {STYLE_SIZE}, as in training)")
    group.add_argument("--init", choices=LBFGS_INITS, default="noise",
                       help="start from white noise (the paper's baseline, default) or the content image")
    group.add_argument("--seed", type=int, default=0, help="seed of the initial noise")
    for term in ("content", "style", "tv"):
        group.add_argument(f"--{term}-weight", type=float, default=None,
                           help=f"weight of the {term} loss (default: the training default for --vgg)")
    add_vgg_arguments(group)
