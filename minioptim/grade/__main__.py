"""``python -m minioptim.grade ASSIGNMENT FILE``."""

import sys

from .cli import main

sys.exit(main())
