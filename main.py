"""Strata: with no arguments the window opens; with a subcommand, the command line."""

import os
import sys

# OpenMP threads that spin while waiting starve each other on a busy machine
# (measured: a U-Net step 10x slower); must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from app.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
