"""Peewee tables. Bound to a database at run time by :func:`app.store.db.open_database`."""

from __future__ import annotations

import datetime as _dt
import json

import peewee as pw

database_proxy = pw.DatabaseProxy()


def utcnow() -> _dt.datetime:
    """Timestamps are stored in UTC."""
    return _dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None)


class JSONField(pw.TextField):
    """A JSON document in a TEXT column."""

    def db_value(self, value):  # noqa: D102
        return None if value is None else json.dumps(value)

    def python_value(self, value):  # noqa: D102
        return None if value is None else json.loads(value)


class BaseModel(pw.Model):
    class Meta:
        database = database_proxy


class Job(BaseModel):
    """One scan and everything made from it."""

    name = pw.CharField()
    status = pw.CharField(default="pending", index=True)
    #: The resting status before the current queued/running stage; cancel returns here.
    previous_status = pw.CharField(null=True)
    message = pw.TextField(default="")
    note = pw.TextField(default="")
    progress = pw.FloatField(default=0.0)
    progress_message = pw.TextField(default="")
    #: pid of the process working on the job, so start-up recovery leaves live work alone.
    owner_pid = pw.IntegerField(null=True)
    sources = JSONField(default=list)
    shape = JSONField(null=True)
    dtype = pw.CharField(null=True)
    spacing = JSONField(null=True)
    unit = pw.CharField(default="")
    created = pw.DateTimeField(default=utcnow)
    updated = pw.DateTimeField(default=utcnow, index=True)


class StatusEvent(BaseModel):
    """One status change of a job, for its timeline."""

    job = pw.ForeignKeyField(Job, backref="events", on_delete="CASCADE")
    from_status = pw.CharField(null=True)
    to_status = pw.CharField()
    time = pw.DateTimeField(default=utcnow)
    message = pw.TextField(default="")


class LabelClass(BaseModel):
    """A material the user paints: value 1..N in annotations and segmentations."""

    job = pw.ForeignKeyField(Job, backref="label_classes", on_delete="CASCADE")
    value = pw.IntegerField()
    name = pw.CharField()
    color = pw.CharField(default="#888888")
    is_background = pw.BooleanField(default=False)
    #: Painted voxels of this class, kept up to date by the annotation code.
    voxel_count = pw.BigIntegerField(default=0)

    class Meta:
        indexes = ((("job", "value"), True),)


class Model(BaseModel):
    """A trained model version."""

    job = pw.ForeignKeyField(Job, backref="models", on_delete="CASCADE")
    kind = pw.CharField()  # "quick" | "deep"
    params = JSONField(default=dict)
    path = pw.TextField(default="")
    n_voxels = pw.BigIntegerField(default=0)
    n_slices = pw.IntegerField(default=0)
    metrics = JSONField(default=dict)
    state = pw.CharField(default="queued")  # queued | training | ready | failed | cancelled
    created = pw.DateTimeField(default=utcnow)


class Segmentation(BaseModel):
    """A segmentation version of a job's volume."""

    job = pw.ForeignKeyField(Job, backref="segmentations", on_delete="CASCADE")
    model = pw.ForeignKeyField(Model, null=True, backref="segmentations", on_delete="SET NULL")
    path = pw.TextField(default="")
    params = JSONField(default=dict)
    state = pw.CharField(default="queued")  # queued | running | complete | failed | cancelled
    blocks_done = pw.IntegerField(default=0)
    blocks_total = pw.IntegerField(default=0)
    created = pw.DateTimeField(default=utcnow)


class Mesh(BaseModel):
    """A mesh version made from a segmentation: one surface per non-background class."""

    job = pw.ForeignKeyField(Job, backref="meshes", on_delete="CASCADE")
    segmentation = pw.ForeignKeyField(Segmentation, null=True, backref="meshes", on_delete="SET NULL")
    path = pw.TextField(default="")
    params = JSONField(default=dict)
    stats = JSONField(default=dict)
    state = pw.CharField(default="queued")  # queued | running | complete | failed | cancelled
    created = pw.DateTimeField(default=utcnow)


ALL_TABLES = [Job, StatusEvent, LabelClass, Model, Segmentation, Mesh]
