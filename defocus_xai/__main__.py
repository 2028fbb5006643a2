"""``python -m defocus_xai`` is the ``defocus-xai`` command."""

import sys

from .cli import main

sys.exit(main())
