"""Strata: with no arguments the window opens; with a subcommand, the command line."""

import sys

from app.cli import main

if __name__ == "__main__":
    sys.exit(main())
