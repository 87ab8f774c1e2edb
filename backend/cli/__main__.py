"""``python -m backend.cli``: the ``brushwork`` command."""

import sys

from backend.cli import main

sys.exit(main())
