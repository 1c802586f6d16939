"""python -m attnbench: the `attnbench` command (attnbench.cli)."""
import sys

from .cli import main

sys.exit(main())
