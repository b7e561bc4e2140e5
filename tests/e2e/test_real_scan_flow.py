"""A real micro-CT scan through the whole command-line flow, accuracy judged loosely against Otsu.

The shell scan has no human-made labels. Three z-slices are painted where Otsu's
threshold is unambiguous (intensities well away from it, eroded away from the
wall's edges), as a user's strokes would be; the quick model then segments the
whole scan, and its shell must hold about as many voxels as Otsu's threshold finds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
PAINTED = (56, 112, 168)
#: The quick model's shell may differ from Otsu's by this fraction of Otsu's voxel count.
TOLERANCE = 0.25


def cli(workspace: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "STRATA_HOME": str(workspace)}
    out = subprocess.run([sys.executable, str(ROOT / "main.py"), *args], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"{args[0]} failed: {out.stderr}"
    return out


def confident_paint(image: np.ndarray, threshold: float) -> np.ndarray:
    """Labels 1 (air) and 2 (shell) on :data:`PAINTED` only, where the threshold is clear; 0 elsewhere."""
    from scipy.ndimage import binary_erosion

    paint = np.zeros(image.shape, np.uint8)
    spread = float(image.std())
    for z in PAINTED:
        plane = image[z].astype(np.float32)
        shell = binary_erosion(plane > threshold + 0.5 * spread, iterations=1)
        air = binary_erosion(plane < threshold - 0.5 * spread, iterations=3)
        paint[z][air] = 1
        paint[z][shell] = 2
    return paint


@pytest.mark.usefixtures("shared_data")
def test_shell_scan_painted_on_three_slices_matches_otsu(shared_data, tmp_path):
    import tifffile
    from skimage.filters import threshold_otsu

    scan = shared_data / "microct" / "shell_225x128x128.tif"
    image = tifffile.imread(scan)
    threshold = threshold_otsu(image)
    paint = confident_paint(image, threshold)
    assert (paint == 2).sum() > 500 and (paint == 1).sum() > 5000  # both materials painted
    tifffile.imwrite(tmp_path / "paint.tif", paint)

    workspace = tmp_path / "ws"
    job = cli(workspace, "new", str(scan), "--name", "shell").stdout.strip().splitlines()[-1]
    cli(workspace, "run", "--until-idle")
    slices = "z:" + ",".join(str(z) for z in PAINTED)
    cli(workspace, "annotate", job, "--labels", str(tmp_path / "paint.tif"), "--slices", slices)
    cli(workspace, "train", job, "--model", "quick")
    status = json.loads(cli(workspace, "status", job, "--json").stdout)
    assert status["status"] == "segmented", status
    models = json.loads(cli(workspace, "models", job, "--json").stdout)
    held_out = models[0]["metrics"]["held_out"]
    assert held_out is not None  # measured on painted slices the model did not see

    cli(workspace, "export", job, "--what", "segmentation", "--format", "tiff", "--out", str(tmp_path / "seg.tif"))
    labels = tifffile.imread(tmp_path / "seg.tif")
    assert labels.shape == image.shape
    ours, otsu = int((labels == 2).sum()), int((image > threshold).sum())
    assert abs(ours - otsu) <= TOLERANCE * otsu, (ours, otsu)
    # and the two agree voxel by voxel on most of the shell
    both = int(((labels == 2) & (image > threshold)).sum())
    assert 2 * both / (ours + otsu) > 0.8, (both, ours, otsu)
    print(f"shell voxels: ours {ours}, Otsu {otsu}, Dice {2 * both / (ours + otsu):.3f}")
