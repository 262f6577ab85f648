"""``python -m nica.apps.cli``: the ``nica`` command."""

import sys

from nica.apps.cli import main

sys.exit(main())
