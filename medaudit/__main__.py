"""``python -m medaudit``."""

import sys

from medaudit.cli import main

sys.exit(main())
