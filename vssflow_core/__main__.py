"""``python -m vssflow_core``: see :mod:`vssflow_core.cli`."""
import sys

from vssflow_core.cli import main

sys.exit(main())
