"""``python -m deeplinear`` = the ``deeplinear`` command."""

import sys

from .cli import main

sys.exit(main())
