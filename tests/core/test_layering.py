"""app.core, app.store, app.pipeline, app.stages and app.runner never import Qt, napari or VTK's Qt view."""

import subprocess
import sys

from tests.conftest import ROOT

FORBIDDEN = ("PySide6", "PyQt5", "PyQt6", "qtpy", "napari", "vispy", "vtkmodules.qt", "superqt")

SCRIPT = """
import importlib, pkgutil, sys
import app.core, app.store, app.pipeline, app.stages, app.runner, app.cli
for pkg in (app.core, app.store, app.pipeline, app.stages):
    for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        importlib.import_module(info.name)
from app.cli import build_parser
build_parser()
bad = sorted(m for m in sys.modules if m.split(".")[0] in {f} or m.startswith("vtkmodules.qt"))
print(",".join(bad))
"""


def test_qt_free_layers_import_no_gui_toolkit():
    names = {n for n in FORBIDDEN if "." not in n}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT.replace("{f}", repr(names))],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )
    assert out.stdout.strip() == "", f"GUI modules imported by the Qt-free layers: {out.stdout}"
