"""`python -m transport`: the command-line tool (see transport/cli.py)."""

import sys

from transport.cli import main

sys.exit(main())
