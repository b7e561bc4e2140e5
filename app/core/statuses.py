"""The job lifecycle of Statuses.md and the one table of allowed transitions."""

from __future__ import annotations

from enum import Enum


class JobStatus(Enum):
    """Job statuses; names and string values match ml4paleo's Statuses.md."""

    PENDING = "pending"
    UPLOADING = "uploading"
    UPLOADED = "uploaded"
    CONVERTING = "converting"
    CONVERTED = "converted"
    CONVERT_ERROR = "convert_error"
    ANNOTATED = "annotated"
    TRAINING_QUEUED = "training_queued"
    TRAINING = "training"
    TRAINED = "trained"
    SEGMENTING = "segmenting"
    SEGMENTED = "segmented"
    SEGMENT_ERROR = "segment_error"
    MESHING_QUEUED = "meshing_queued"
    MESHING = "meshing"
    MESHED = "meshed"
    MESH_ERROR = "mesh_error"
    DONE = "done"
    ERROR = "error"


S = JobStatus

#: States in which a worker is busy with the job.
RUNNING = frozenset({S.UPLOADING, S.CONVERTING, S.TRAINING, S.SEGMENTING, S.MESHING})

#: Error states.
ERRORS = frozenset({S.CONVERT_ERROR, S.SEGMENT_ERROR, S.MESH_ERROR, S.ERROR})

#: Where a crashed running stage goes back to on start-up (its queue).
RECOVERY = {
    S.UPLOADING: S.PENDING,
    S.CONVERTING: S.UPLOADED,
    S.TRAINING: S.TRAINING_QUEUED,
    S.MESHING: S.MESHING_QUEUED,
    # SEGMENTING goes back to the job's previous status; the segmentation row
    # stays queued and resumes from the blocks already written.
}

#: States a job can rest in once a stage has been cancelled or has failed:
#: cancel returns a job to the state it had before the stage.
_AFTER_TRAINING = (S.ANNOTATED, S.TRAINED, S.SEGMENTED, S.SEGMENT_ERROR, S.MESHED, S.MESH_ERROR, S.DONE)
_RESEGMENT_FROM = (S.TRAINED, S.SEGMENTED, S.SEGMENT_ERROR, S.MESHED, S.MESH_ERROR, S.DONE)

TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    S.PENDING: frozenset({S.UPLOADING}),
    S.UPLOADING: frozenset({S.UPLOADED, S.PENDING}),
    S.UPLOADED: frozenset({S.CONVERTING}),
    S.CONVERTING: frozenset({S.CONVERTED, S.CONVERT_ERROR, S.UPLOADED}),
    S.CONVERT_ERROR: frozenset({S.UPLOADED}),
    S.CONVERTED: frozenset({S.ANNOTATED}),
    # ANNOTATED -> SEGMENTING: segmenting with a model from another job, before any training here.
    S.ANNOTATED: frozenset({S.CONVERTED, S.TRAINING_QUEUED, S.SEGMENTING}),
    S.TRAINING_QUEUED: frozenset({S.TRAINING, *_AFTER_TRAINING}),
    S.TRAINING: frozenset({S.TRAINED, S.TRAINING_QUEUED, *_AFTER_TRAINING}),
    S.TRAINED: frozenset({S.SEGMENTING, S.TRAINING_QUEUED, S.CONVERTED}),
    S.SEGMENTING: frozenset({S.SEGMENTED, S.SEGMENT_ERROR, S.ANNOTATED, *_RESEGMENT_FROM}),
    S.SEGMENTED: frozenset({S.MESHING_QUEUED, S.TRAINING_QUEUED, S.SEGMENTING, S.DONE, S.CONVERTED}),
    S.SEGMENT_ERROR: frozenset({S.SEGMENTING, S.TRAINING_QUEUED, S.CONVERTED}),
    S.MESHING_QUEUED: frozenset({S.MESHING, S.SEGMENTED, S.MESHED, S.DONE, S.MESH_ERROR}),
    S.MESHING: frozenset({S.MESHED, S.MESH_ERROR, S.MESHING_QUEUED, S.SEGMENTED, S.MESHED, S.DONE}),
    S.MESHED: frozenset({S.DONE, S.MESHING_QUEUED, S.TRAINING_QUEUED, S.SEGMENTING, S.CONVERTED}),
    S.MESH_ERROR: frozenset({S.MESHING_QUEUED, S.TRAINING_QUEUED, S.SEGMENTING, S.CONVERTED}),
    S.DONE: frozenset({S.DONE, S.MESHING_QUEUED, S.TRAINING_QUEUED, S.SEGMENTING, S.CONVERTED}),
    S.ERROR: frozenset({S.PENDING}),
}
# Any state may fail with the generic ERROR (an unexpected failure, with a message).
for _state in list(TRANSITIONS):
    if _state is not S.ERROR:
        TRANSITIONS[_state] = TRANSITIONS[_state] | {S.ERROR}


#: Resting states from which a queued segmentation (a Segmentation row) can start.
SEGMENT_FROM = frozenset(state for state, targets in TRANSITIONS.items() if S.SEGMENTING in targets)


class TransitionError(ValueError):
    """A status change that the lifecycle does not allow."""


def can_transition(old: JobStatus, new: JobStatus) -> bool:
    """Whether the lifecycle allows ``old -> new``."""
    return new in TRANSITIONS.get(old, frozenset())


def check_transition(old: JobStatus, new: JobStatus) -> None:
    """Raise :class:`TransitionError` unless ``old -> new`` is allowed."""
    if not can_transition(old, new):
        raise TransitionError(f"a job cannot go from {old.value!r} to {new.value!r}")


def parse_status(value: str | JobStatus) -> JobStatus:
    """The status for a string value such as ``"converted"``."""
    return value if isinstance(value, JobStatus) else JobStatus(value)
