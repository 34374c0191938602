"""``python -m automl`` is the same as the ``automl`` command."""

import sys

from automl.cli import main

sys.exit(main())
