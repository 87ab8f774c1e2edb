"""``python -m backend`` is the ``brushwork`` command."""

import sys

from backend.cli import main

sys.exit(main())
