"""The transition table: every allowed move works, a disallowed one raises."""

import pytest

from app.core.statuses import TRANSITIONS, JobStatus, TransitionError, check_transition, can_transition


def test_values_match_statuses_md():
    expected = {
        "PENDING": "pending", "UPLOADING": "uploading", "UPLOADED": "uploaded",
        "CONVERTING": "converting", "CONVERTED": "converted", "CONVERT_ERROR": "convert_error",
        "ANNOTATED": "annotated", "TRAINING_QUEUED": "training_queued", "TRAINING": "training",
        "TRAINED": "trained", "SEGMENTING": "segmenting", "SEGMENTED": "segmented",
        "SEGMENT_ERROR": "segment_error", "MESHING_QUEUED": "meshing_queued", "MESHING": "meshing",
        "MESHED": "meshed", "MESH_ERROR": "mesh_error", "DONE": "done", "ERROR": "error",
    }
    assert {s.name: s.value for s in JobStatus} == expected


def test_main_path_is_allowed():
    path = ["pending", "uploading", "uploaded", "converting", "converted", "annotated",
            "training_queued", "training", "trained", "segmenting", "segmented",
            "meshing_queued", "meshing", "meshed", "done"]
    for a, b in zip(path, path[1:]):
        check_transition(JobStatus(a), JobStatus(b))


@pytest.mark.parametrize("old", list(JobStatus))
def test_every_listed_move_is_allowed_and_others_raise(old):
    for new in JobStatus:
        if new in TRANSITIONS[old]:
            check_transition(old, new)
        else:
            with pytest.raises(TransitionError):
                check_transition(old, new)


def test_disallowed_examples():
    assert not can_transition(JobStatus.PENDING, JobStatus.CONVERTED)
    assert not can_transition(JobStatus.CONVERTED, JobStatus.SEGMENTING)
    with pytest.raises(TransitionError, match="'uploaded' to 'meshed'"):
        check_transition(JobStatus.UPLOADED, JobStatus.MESHED)


def test_cancel_returns_to_state_before():
    for running, before in [(JobStatus.CONVERTING, JobStatus.UPLOADED),
                            (JobStatus.TRAINING, JobStatus.ANNOTATED),
                            (JobStatus.SEGMENTING, JobStatus.SEGMENTED),
                            (JobStatus.MESHING, JobStatus.SEGMENTED)]:
        check_transition(running, before)
