"""Strata: tomography scans to labelled volumes and meshes."""

__version__ = "0.1.0"
