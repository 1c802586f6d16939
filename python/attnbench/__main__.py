"""python -m attnbench: the `attnbench` command (attnbench.cli)."""
import sys

from .cli import main

# The guard matters: a 'spawn' worker of `--gpus` imports the parent's main module again
# (as __mp_main__), and must not start a second sweep when it does.
if __name__ == "__main__":
    sys.exit(main())
