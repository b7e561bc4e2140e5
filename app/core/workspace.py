"""Where a workspace keeps its database and job folders."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

APP_NAME = "Strata"


def default_workspace() -> Path:
    """``STRATA_HOME`` if set, else the platform's user data folder."""
    env = os.environ.get("STRATA_HOME")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir(APP_NAME, appauthor=False))


@dataclass(frozen=True)
class Workspace:
    """Paths of one workspace folder (see DESIGN.md)."""

    root: Path

    @classmethod
    def open(cls, root: str | os.PathLike | None = None) -> "Workspace":
        """The workspace at ``root`` (default: :func:`default_workspace`), created if missing."""
        path = Path(root).expanduser() if root else default_workspace()
        path.mkdir(parents=True, exist_ok=True)
        (path / "jobs").mkdir(exist_ok=True)
        return cls(path.resolve())

    @property
    def db_path(self) -> Path:
        return self.root / "strata.db"

    def job_dir(self, job_id: int) -> Path:
        return self.root / "jobs" / str(job_id)

    def source_dir(self, job_id: int) -> Path:
        return self.job_dir(job_id) / "source"

    def volume_path(self, job_id: int) -> Path:
        return self.job_dir(job_id) / "volume.zarr"

    def annotations_path(self, job_id: int) -> Path:
        return self.job_dir(job_id) / "annotations.zarr"

    def model_dir(self, job_id: int, model_id: int) -> Path:
        return self.job_dir(job_id) / "models" / str(model_id)

    def segmentation_path(self, job_id: int, segmentation_id: int) -> Path:
        return self.job_dir(job_id) / "segmentations" / f"{segmentation_id}.zarr"

    def mesh_dir(self, job_id: int, segmentation_id: int, mesh_id: int) -> Path:
        return self.job_dir(job_id) / "meshes" / str(segmentation_id) / str(mesh_id)
