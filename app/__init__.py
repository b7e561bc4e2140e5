"""Strata: tomography scans to labelled volumes and meshes."""

import os as _os

# OpenMP threads that spin while waiting starve each other on a busy machine
# (measured: a U-Net training step 10x slower). Set here, before anything loads torch,
# so every entry point (main.py, the `strata` script, tests, the frozen app) gets it.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
