"""A job's label classes: add (next value, a distinct colour), rename, recolour, delete."""

from __future__ import annotations

import re
from typing import Mapping

from app.store.jobs import JobStore
from app.store.models import LabelClass

#: Colours handed to new classes, in order, skipping those a job already uses.
PALETTE = (
    "#3c78d8", "#f1c232", "#cc0000", "#6aa84f", "#9900ff", "#ff9900", "#00b8d4", "#e91e63",
    "#8d6e63", "#7cb342", "#5c6bc0", "#ffeb3b", "#26a69a", "#ab47bc", "#ef5350", "#9e9d24",
)
MAX_VALUE = 255
_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")


class ClassError(ValueError):
    """A class change that cannot be made (empty or duplicate name, bad colour, ...)."""


def list_classes(store: JobStore, job_id: int) -> list[LabelClass]:
    """The job's classes by value."""
    return store.label_classes(job_id)


def get_class(store: JobStore, job_id: int, value: int) -> LabelClass:
    cls = LabelClass.get_or_none((LabelClass.job == int(job_id)) & (LabelClass.value == int(value)))
    if cls is None:
        raise ClassError(f"job {job_id} has no class with value {value}")
    return cls


def _check_name(store: JobStore, job_id: int, name: str, keep: int | None = None) -> str:
    name = name.strip()
    if not name:
        raise ClassError("a class needs a name")
    for other in list_classes(store, job_id):
        if other.name.lower() == name.lower() and other.value != keep:
            raise ClassError(f"job {job_id} already has a class named {other.name!r} (value {other.value})")
    return name


def normalize_color(color: str) -> str:
    color = color.strip()
    if not _HEX.match(color):
        raise ClassError(f"colour {color!r} is not of the form #rrggbb")
    return color.lower()


def next_color(used: list[str]) -> str:
    """The first palette colour not in ``used`` (cycling hues once the palette is spent)."""
    taken = {c.lower() for c in used}
    for color in PALETTE:
        if color.lower() not in taken:
            return color
    import colorsys

    hue = (len(used) * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 0.95)
    return f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"


def add_class(store: JobStore, job_id: int, name: str, color: str | None = None) -> LabelClass:
    """A new class with the next free value and a colour distinct from the others."""
    store.get(job_id)
    with store.db.atomic():
        name = _check_name(store, job_id, name)
        classes = list_classes(store, job_id)
        value = max((c.value for c in classes), default=0) + 1
        if value > MAX_VALUE:
            raise ClassError(f"a job can have classes with values up to {MAX_VALUE}")
        color = normalize_color(color) if color else next_color([c.color for c in classes])
        return LabelClass.create(job=int(job_id), value=value, name=name, color=color)


def rename_class(store: JobStore, job_id: int, value: int, name: str) -> LabelClass:
    cls = get_class(store, job_id, value)
    cls.name = _check_name(store, job_id, name, keep=cls.value)
    cls.save()
    return cls


def recolor_class(store: JobStore, job_id: int, value: int, color: str) -> LabelClass:
    cls = get_class(store, job_id, value)
    cls.color = normalize_color(color)
    cls.save()
    return cls


def delete_class(store: JobStore, job_id: int, value: int) -> int:
    """Remove a class and unpaint its voxels; returns how many voxels were unpainted.

    The job's status follows (see :func:`app.stages.annotation.apply_status_rule`).
    """
    cls = get_class(store, job_id, value)
    if len(list_classes(store, job_id)) <= 1:
        raise ClassError("a job keeps at least one class")
    removed = 0
    path = store.workspace.annotations_path(job_id)
    if (path / "zarr.json").is_file():
        from app.pipeline.annotations import open_annotations, remove_value

        removed = remove_value(open_annotations(path), cls.value)
    cls.delete_instance()
    from app.stages.annotation import apply_status_rule

    apply_status_rule(store, job_id)
    return removed


def set_counts(store: JobStore, job_id: int, counts: Mapping[int, int]) -> None:
    """Store painted voxels per class value (classes missing from ``counts`` have none)."""
    with store.db.atomic():
        for cls in list_classes(store, job_id):
            n = int(counts.get(cls.value, 0))
            if cls.voxel_count != n:
                LabelClass.update(voxel_count=n).where(LabelClass.id == cls.id).execute()
