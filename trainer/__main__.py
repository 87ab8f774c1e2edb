"""``python -m trainer ...``: the trainer's command line without the backend's CLI."""

import sys

from trainer.cli import main

sys.exit(main())
