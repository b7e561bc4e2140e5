"""Copy or move a whole workspace (database and job folders) to another folder.

Qt-free, so the Settings dialog runs it in a worker and tests call it directly.
The database is copied with SQLite's backup API (consistent even while the
app holds it open in WAL mode); every other file is copied as it is. Paths
stored in the database that point inside the old folder are rewritten to the
new one, so a job opens there with its paint, models, segmentations and
meshes. The old folder is only emptied (``move=True``) once the copy is
complete; a failed or cancelled copy removes what it wrote and leaves the
old workspace untouched.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from app.core.progress import Cancelled, ProgressContext, StageError
from app.core.statuses import RUNNING

DB_NAME = "strata.db"
_DB_FILES = {DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", f"{DB_NAME}-journal"}
#: (table, column) pairs that hold one path.
_PATH_COLUMNS = (("model", "path"), ("segmentation", "path"), ("mesh", "path"))


@dataclass(frozen=True)
class RelocateResult:
    """What a copy or move did."""

    source: Path
    target: Path
    files: int
    bytes: int
    jobs: int
    moved: bool


def is_workspace(root: str | os.PathLike) -> bool:
    """Whether ``root`` holds a Strata database."""
    return (Path(root) / DB_NAME).is_file()


def workspace_has_data(root: str | os.PathLike) -> bool:
    """Whether ``root`` holds a database or any job folder."""
    path = Path(root)
    jobs = path / "jobs"
    return is_workspace(path) or (jobs.is_dir() and any(jobs.iterdir()))


def _inside(child: Path, parent: Path) -> bool:
    try:
        child.relative_to(parent)
    except ValueError:
        return False
    return True


def _check_target(source: Path, target: Path) -> None:
    if not is_workspace(source):
        raise StageError(f"{source}: no Strata workspace here (no {DB_NAME})")
    if target == source:
        raise StageError(f"{target}: this is already the workspace folder")
    if _inside(target, source) or _inside(source, target):
        raise StageError(f"{target}: the new folder cannot be inside the old one, or hold it")
    if target.exists() and not target.is_dir():
        raise StageError(f"{target}: exists and is not a folder")
    if target.is_dir() and workspace_has_data(target):
        raise StageError(f"{target}: already holds a Strata workspace; choose an empty folder")


def _running_jobs(db_path: Path) -> list[int]:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    try:
        marks = ",".join("?" for _ in RUNNING)
        rows = conn.execute(
            f"SELECT id FROM job WHERE status IN ({marks})", [s.value for s in RUNNING]
        ).fetchall()
    except sqlite3.DatabaseError:
        return []
    finally:
        conn.close()
    return [int(r[0]) for r in rows]


def _files_to_copy(source: Path) -> list[Path]:
    files = []
    for folder, dirs, names in os.walk(source):
        dirs.sort()
        for name in sorted(names):
            path = Path(folder) / name
            if path.parent == source and name in _DB_FILES:
                continue
            files.append(path)
    return files


def _rewrite(value: str, old: str, new: str) -> str:
    if value == old or value.startswith(old + os.sep):
        return new + value[len(old):]
    return value


def _rewrite_paths(db_path: Path, old_root: Path, new_root: Path) -> int:
    """Point paths stored in the copied database at the new folder; returns the job count."""
    old, new = str(old_root), str(new_root)
    conn = sqlite3.connect(str(db_path), timeout=10)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        with conn:
            for table, column in _PATH_COLUMNS:
                if table not in tables:
                    continue
                for row_id, value in conn.execute(f"SELECT id, {column} FROM {table}").fetchall():
                    if value and _rewrite(value, old, new) != value:
                        conn.execute(
                            f"UPDATE {table} SET {column} = ? WHERE id = ?", (_rewrite(value, old, new), row_id)
                        )
            for row_id, sources in conn.execute("SELECT id, sources FROM job").fetchall():
                if not sources:
                    continue
                items = json.loads(sources)
                changed = [_rewrite(str(s), old, new) for s in items]
                if changed != items:
                    conn.execute("UPDATE job SET sources = ? WHERE id = ?", (json.dumps(changed), row_id))
        return int(conn.execute("SELECT COUNT(*) FROM job").fetchone()[0])
    finally:
        conn.close()


def _backup_database(source_db: Path, target_db: Path) -> None:
    src = sqlite3.connect(f"file:{source_db}?mode=ro", uri=True, timeout=10)
    dst = sqlite3.connect(str(target_db))
    try:
        src.backup(dst)
        dst.execute("PRAGMA journal_mode=wal")
    finally:
        dst.close()
        src.close()


def _remove_copied(target: Path, created_root: bool) -> None:
    if created_root:
        shutil.rmtree(target, ignore_errors=True)
        return
    for entry in list(target.iterdir()):
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _empty_old(source: Path, files: list[Path]) -> None:
    for path in files:
        path.unlink(missing_ok=True)
    for name in _DB_FILES:
        (source / name).unlink(missing_ok=True)
    for folder, _dirs, _names in os.walk(source, topdown=False):
        if Path(folder) != source:
            try:
                Path(folder).rmdir()
            except OSError:
                pass


def relocate_workspace(
    source: str | os.PathLike,
    target: str | os.PathLike,
    ctx: ProgressContext | None = None,
    move: bool = False,
) -> RelocateResult:
    """Copy the workspace at ``source`` into the empty folder ``target``.

    With ``move`` the old folder's Strata files are removed once the copy is
    complete. Raises :class:`StageError` (naming the folder and the problem)
    for a bad target or a job still running, and :class:`Cancelled` when
    ``ctx`` was cancelled; in both cases the old workspace is untouched and
    nothing is left behind in ``target``.
    """
    ctx = ctx or ProgressContext()
    src = Path(source).expanduser().resolve()
    dst = Path(target).expanduser().resolve()
    _check_target(src, dst)
    running = _running_jobs(src / DB_NAME)
    if running:
        ids = ", ".join(str(i) for i in running)
        raise StageError(f"{src}: job(s) {ids} are running; cancel them or let them finish before moving")
    files = _files_to_copy(src)
    total = sum(p.lstat().st_size for p in files) or 1
    created_root = not dst.exists()
    try:
        dst.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StageError(f"{dst}: cannot create the folder ({exc.strerror or exc})") from exc
    done = 0
    try:
        ctx.report(0.0, "copying the database")
        _backup_database(src / DB_NAME, dst / DB_NAME)
        for path in files:
            ctx.check_cancelled()
            out = dst / path.relative_to(src)
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, out, follow_symlinks=False)
            done += path.lstat().st_size
            ctx.report(0.95 * done / total, f"copying {path.relative_to(src)}")
        for folder, dirs, _names in os.walk(src):
            for name in dirs:
                (dst / Path(folder).relative_to(src) / name).mkdir(parents=True, exist_ok=True)
        jobs = _rewrite_paths(dst / DB_NAME, src, dst)
    except Cancelled:
        _remove_copied(dst, created_root)
        raise
    except OSError as exc:
        _remove_copied(dst, created_root)
        where = exc.filename or dst
        raise StageError(f"{where}: copying the workspace failed ({exc.strerror or exc})") from exc
    except sqlite3.DatabaseError as exc:
        _remove_copied(dst, created_root)
        raise StageError(f"{src / DB_NAME}: cannot copy the database ({exc})") from exc
    if move:
        ctx.report(0.97, "removing the old copy")
        _empty_old(src, files)
    ctx.report(1.0, "done")
    return RelocateResult(src, dst, len(files), done, jobs, move)
