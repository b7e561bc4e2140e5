"""Live preview and "suggest a slice" for the Annotate page, and its segmentation layer.

:class:`PreviewEngine` (no Qt) refits a small quick model on the current paint
and predicts one slice; features of painted and shown slices are cached, so a
stroke on a slice already seen costs a forest fit and one prediction.
:class:`LivePreview` runs it in a one-thread pool after each stroke: the newest
request wins, results of older ones are dropped, and the UI thread never waits.
:func:`attach_live_preview` adds the controls to an Annotate page.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, QThreadPool, QTimer, Signal
from PySide6.QtWidgets import QCheckBox, QLabel, QPushButton, QVBoxLayout, QWidget

from app.gui.worker import BackgroundTask

PREVIEW_LAYER = "live preview"
SEGMENTATION_LAYER = "segmentation"


# -- the engine (no Qt) ----------------------------------------------------------
class PreviewEngine:
    """Refit a small quick model on the paint and predict single slices of one job."""

    SCALES = (0.7, 1.6, 3.5)
    TREES = 10
    DEPTH = 10
    SAMPLES_PER_CLASS = 2000
    CACHE_PLANES = 8

    def __init__(self, volume_path: str | Path, annotations_path: str | Path) -> None:
        from app.pipeline.features import FeatureSpec
        from app.pipeline.quick import normalisation_for
        from app.pipeline.volume import open_volume

        self.volume = open_volume(volume_path)
        self.annotations_path = Path(annotations_path)
        self.spec = FeatureSpec(self.SCALES, "2d")
        self.norm = normalisation_for(self.volume)
        self._cache: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self.forest = None
        self.classes: list[int] = []
        self._chunks: dict = {}
        self._paint_key: frozenset | None = None  # the paint chunks read last, with their stamps
        self._fitted_on: frozenset | None = None  # ... and those of the last fit

    def plane_features(self, axis: int, index: int) -> np.ndarray:
        """Features (F, H, W) of one plane (cached)."""
        key = (int(axis), int(index))
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        from app.pipeline.features import block_features

        shape = self.volume.shape
        start = [0, 0, 0]
        stop = list(shape)
        start[axis], stop[axis] = index, index + 1
        feats = block_features(self.volume.levels[0], start, stop, self.spec, self.norm)
        feats = np.take(feats, 0, axis=1 + axis)
        self._cache[key] = feats
        while len(self._cache) > self.CACHE_PLANES:
            self._cache.popitem(last=False)
        return feats

    def _paint(self):
        """The painted voxels, re-reading only the annotation chunks written since the last call."""
        import zarr

        from app.pipeline.annotations import painted_voxels, reread_changed_chunks
        from app.pipeline.training_data import Paint, assign_planes

        if not (self.annotations_path / "zarr.json").is_file():
            return None
        array = zarr.open_array(str(self.annotations_path), mode="r")
        self._chunks = reread_changed_chunks(array, self._chunks, painted_voxels)
        self._paint_key = frozenset((index, stamp) for index, (stamp, _) in self._chunks.items())
        if not self._chunks:
            return None
        voxels = [read for _stamp, read in self._chunks.values()]
        coords = np.concatenate([v[0] for v in voxels])
        labels = np.concatenate([v[1] for v in voxels]).astype(np.uint8)
        if not len(labels):
            return None
        plane_ids, planes = assign_planes(coords, array.shape, np.concatenate([v[2] for v in voxels]))
        return Paint(coords, labels, plane_ids, planes)

    def fit(self) -> bool:
        """Refit on the current paint (unless it is unchanged); False when it has fewer than two classes."""
        from sklearn.ensemble import RandomForestClassifier

        from app.pipeline.training_data import sample_balanced

        paint = self._paint()
        if paint is None or len(paint.classes) < 2:
            self.forest, self._fitted_on = None, None
            return False
        if self.forest is not None and self._fitted_on == self._paint_key:
            return True
        sample = sample_balanced(paint, self.SAMPLES_PER_CLASS)
        rows = np.empty((sample.count, self.spec.count), np.float32)
        for plane_id in np.unique(sample.plane_ids):
            axis, index = sample.planes[int(plane_id)]
            mask = sample.plane_ids == plane_id
            feats = self.plane_features(axis, index)
            other = [a for a in range(3) if a != axis]
            c = sample.coords[mask]
            rows[mask] = feats[:, c[:, other[0]], c[:, other[1]]].T
        forest = RandomForestClassifier(
            n_estimators=self.TREES, max_depth=self.DEPTH, min_samples_leaf=2,
            class_weight="balanced", n_jobs=1, random_state=0,  # small: threads would cost more than they save
        )
        forest.fit(rows, sample.labels)
        self.forest, self.classes = forest, [int(c) for c in forest.classes_]
        self._fitted_on = self._paint_key
        return True

    def probabilities(self, axis: int, index: int) -> np.ndarray | None:
        """Class probabilities (C, H, W) of a plane with the last fit, or None."""
        if self.forest is None:
            return None
        from app.pipeline.quick import forest_votes

        feats = self.plane_features(axis, index)
        votes = forest_votes(self.forest, feats.reshape(feats.shape[0], -1).T)  # in this thread, no pool
        votes /= len(self.forest.estimators_)
        return votes.reshape((len(self.classes),) + feats.shape[1:])

    def update(self, axis: int, index: int) -> np.ndarray | None:
        """Refit and predict plane (axis, index): label values (H, W) uint8, or None."""
        with one_torch_thread():
            if not self.fit():
                return None
            proba = self.probabilities(axis, index)
        return np.asarray(self.classes, np.uint8)[np.argmax(proba, 0)]

    def suggest(self, exclude_within: int = 2) -> tuple[int, int, float] | None:
        """(axis, index, mean entropy) of the slice the quick model is least sure about.

        Computed on a coarse level of the pyramid (a small forest refitted there on
        the paint, scales shrunk alike), away from painted slices.
        """
        paint = self._paint()
        if paint is None or len(paint.classes) < 2:
            return None
        with one_torch_thread():
            return self._least_sure(paint, exclude_within)

    def _least_sure(self, paint, exclude_within: int) -> tuple[int, int, float] | None:
        from sklearn.ensemble import RandomForestClassifier

        from app.pipeline.features import FeatureSpec, block_features

        level = _coarse_level(self.volume)
        coarse = self.volume.levels[level]
        factor = [full / part for full, part in zip(self.volume.shape, coarse.shape)]
        spec = FeatureSpec(tuple(max(0.5, s / factor[1]) for s in self.SCALES), "2d")
        feats = block_features(coarse, (0, 0, 0), coarse.shape, spec, self.norm)
        coords = np.minimum((paint.coords / np.asarray(factor)).astype(np.int64), np.asarray(coarse.shape) - 1)
        rows = feats[:, coords[:, 0], coords[:, 1], coords[:, 2]].T
        forest = RandomForestClassifier(n_estimators=self.TREES, max_depth=self.DEPTH, class_weight="balanced",
                                        n_jobs=2, random_state=0)
        pick = np.random.default_rng(0).permutation(len(rows))[: 20 * self.SAMPLES_PER_CLASS]
        forest.fit(rows[pick], paint.labels[pick])
        proba = forest.predict_proba(feats.reshape(feats.shape[0], -1).T).reshape(coarse.shape + (-1,))
        entropy = -(proba * np.log(np.clip(proba, 1e-9, 1.0))).sum(-1)
        painted = {(a, i) for a, i in paint.planes}
        best: tuple[int, int, float] | None = None
        for axis in range(3):
            means = entropy.mean(axis=tuple(a for a in range(3) if a != axis))
            for index, value in enumerate(means):
                full = int(min(self.volume.shape[axis] - 1, round((index + 0.5) * factor[axis])))
                near = any(a == axis and abs(i - full) <= exclude_within * factor[axis] for a, i in painted)
                if not near and (best is None or value > best[2]):
                    best = (axis, full, float(value))
        return best


class one_torch_thread:
    """Torch on one thread in the calling thread (its setting is per thread), restored afterwards.

    The preview shares two cores with the UI thread's rendering: more threads
    mostly wait on each other (0.1 s features of a 512^2 slice took 0.4-1.4 s
    with two threads on a busy machine).
    """

    def __enter__(self):
        import torch

        self.saved = torch.get_num_threads()
        torch.set_num_threads(1)
        return self

    def __exit__(self, *exc) -> None:
        import torch

        torch.set_num_threads(self.saved)


def _coarse_level(volume, max_voxels: int = 2_000_000) -> int:
    for level, array in enumerate(volume.levels):
        if int(np.prod(array.shape)) <= max_voxels:
            return level
    return len(volume.levels) - 1


# -- the controller ----------------------------------------------------------------
@dataclass
class _Request:
    serial: int
    job_id: int
    axis: int
    index: int
    started: float


class LivePreview(QObject):
    """Runs :class:`PreviewEngine` after each stroke of an Annotate page; newest request wins.

    It also follows the slice on screen (after a short pause on it), so the
    slice's features are ready and its preview shown before the first stroke.
    """

    #: Milliseconds a slice must stay on screen before it is previewed.
    FOLLOW_DELAY_MS = 150

    #: A preview was shown: (axis, index, seconds from the request to the overlay).
    preview_shown = Signal(int, int, float)
    #: A slice was suggested: (axis, index).
    suggested = Signal(int, int)
    message = Signal(str)
    #: A preview's result reached the UI thread, before it is drawn (seconds since the request).
    computed = Signal(float)

    def __init__(self, page, parent: QObject | None = None) -> None:
        super().__init__(parent or page)
        self.page = page
        self.enabled = False
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(1)
        self._engine: PreviewEngine | None = None
        self._engine_job: int | None = None
        self._serial = 0
        self._running = False
        self._pending: _Request | None = None
        self.dropped = 0
        self.last_latency = 0.0
        self._shown_plane: tuple[int, int, int] | None = None
        self._watched_view = None
        self._follow = QTimer(self)
        self._follow.setSingleShot(True)
        self._follow.setInterval(self.FOLLOW_DELAY_MS)
        self._follow.timeout.connect(self._preview_shown_slice)
        page.stroke_committed.connect(self.on_stroke)

    # -- requests -------------------------------------------------------------------
    def set_enabled(self, on: bool) -> None:
        self.enabled = bool(on)
        if self.enabled:
            import sys

            if "torch" not in sys.modules or "sklearn.ensemble" not in sys.modules:
                self.message.emit("Live preview: loading the model libraries (once, a few seconds)…")
            self._watch_view()
            axis, index = self.page.current_plane()
            self.request(axis, index)
        else:
            self._follow.stop()
            self._serial += 1  # whatever runs now is stale
            self.page.remove_overlay(PREVIEW_LAYER)
            self._shown_plane = None
            self.message.emit("Live preview off")

    def shutdown(self) -> None:
        """Stop for good (the window closes): nothing running now or asked later reaches the viewer."""
        self.enabled = False
        self._follow.stop()
        self._pending = None
        self._serial += 1

    def on_stroke(self, axis: int, index: int) -> None:
        if self.enabled:
            self._watch_view()
            self.request(axis, index)

    def _watch_view(self) -> None:
        """Follow the displayed slice of the page's viewer (created lazily by the page)."""
        view = getattr(self.page, "view", None)
        if view is not None and view is not self._watched_view:
            view.plane_changed.connect(self._on_plane_changed)
            self._watched_view = view

    def _on_plane_changed(self, _axis: int, _index: int) -> None:
        if self.enabled:
            self._follow.start()  # restarts while the user moves through slices

    def _preview_shown_slice(self) -> None:
        job_id = self._job_id()
        axis, index = self.page.current_plane()
        if self.enabled and job_id is not None and self._shown_plane != (job_id, axis, index):
            self.request(axis, index)

    def request(self, axis: int, index: int) -> None:
        job_id = self._job_id()
        if job_id is None:
            return
        self._serial += 1
        req = _Request(self._serial, job_id, int(axis), int(index), time.perf_counter())
        if self._running:
            if self._pending is not None:
                self.dropped += 1
            self._pending = req  # replaces an older waiting request
            return
        self._start(req)

    def _job_id(self) -> int | None:
        return getattr(self.page, "_loaded_job", None) or getattr(self.page, "job_id", None)

    def _engine_for(self, job_id: int) -> PreviewEngine:
        if self._engine is None or self._engine_job != job_id:
            ws = self.page.app.store.workspace
            self._engine = PreviewEngine(ws.volume_path(job_id), ws.annotations_path(job_id))
            self._engine_job = job_id
        return self._engine

    def _start(self, req: _Request) -> None:
        self._running = True

        def work():
            engine = self._engine_for(req.job_id)
            return req, engine.update(req.axis, req.index)

        self.pool.start(BackgroundTask(work, self._done, self._error))

    def _next(self) -> None:
        self._running = False
        if self._pending is not None:
            req, self._pending = self._pending, None
            self._start(req)

    def _done(self, result: Any) -> None:
        req, labels = result
        self._next()
        if req.serial != self._serial or not self.enabled:
            self.dropped += 1
            return
        if labels is None:
            self.message.emit("Live preview: paint at least two materials")
            return
        if self.page.current_plane() != (req.axis, req.index) or self._job_id() != req.job_id:
            self.dropped += 1
            return
        self.computed.emit(time.perf_counter() - req.started)
        self._show(req, labels)
        self.last_latency = time.perf_counter() - req.started
        self.message.emit(f"Live preview of {'zyx'[req.axis]} slice {req.index} ({self.last_latency:.2f} s)")
        self.preview_shown.emit(req.axis, req.index, self.last_latency)

    def _show(self, req: _Request, labels: np.ndarray) -> None:
        """Put the labels on screen: new data in the existing layer when the plane is the same."""
        layer = self._preview_layer()
        if layer is not None and self._shown_plane == (req.job_id, req.axis, req.index):
            layer.data = np.expand_dims(labels, req.axis)
            return
        self.page.set_overlay(PREVIEW_LAYER, labels, None, 0.45, True)
        self._shown_plane = (req.job_id, req.axis, req.index)

    def _preview_layer(self):
        view = getattr(self.page, "view", None)
        viewer = getattr(view, "viewer", None)
        if viewer is None or PREVIEW_LAYER not in viewer.layers:
            return None
        return viewer.layers[PREVIEW_LAYER]

    def _error(self, message: str) -> None:
        self._next()
        self.message.emit(f"Live preview failed: {message}")

    # -- suggest a slice -------------------------------------------------------------
    def suggest(self) -> None:
        job_id = self._job_id()
        if job_id is None:
            return

        def work():
            return self._engine_for(job_id).suggest()

        def done(best) -> None:
            if best is None:
                self.message.emit("Suggest a slice: paint at least two materials first")
                return
            axis, index, entropy = best
            self.page.go_to(axis, index)
            self.message.emit(f"Least sure on {'zyx'[axis]} slice {index} (mean entropy {entropy:.2f})")
            self.suggested.emit(axis, index)

        self.pool.start(BackgroundTask(work, done, lambda m: self.message.emit(f"Suggest failed: {m}")))

    def wait(self, msecs: int = -1) -> bool:
        return self.pool.waitForDone(msecs)


# -- the controls on the Annotate page ------------------------------------------------
class PreviewTools(QWidget):
    """Live preview toggle, "Suggest a slice", and the segmentation layer's visibility."""

    def __init__(self, page, preview: LivePreview) -> None:
        super().__init__()
        self.page = page
        self.preview = preview
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.live_toggle = QCheckBox("Live preview (quick model)")
        self.live_toggle.setToolTip("After each stroke, refit a quick model and show its guess for this slice")
        self.live_toggle.toggled.connect(preview.set_enabled)
        self.suggest_button = QPushButton("Suggest a slice")
        self.suggest_button.setToolTip("Jump to the slice where the quick model is least sure")
        self.suggest_button.clicked.connect(preview.suggest)
        self.segmentation_toggle = QCheckBox("Show segmentation")
        self.segmentation_toggle.setToolTip("Show the newest segmentation as a labels layer")
        self.segmentation_toggle.toggled.connect(self.show_segmentation)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        preview.message.connect(self.status.setText)
        for w in (self.live_toggle, self.suggest_button, self.segmentation_toggle, self.status):
            layout.addWidget(w)
        page.app.scheduler.status_changed.connect(self._status_changed)

    def show_segmentation(self, on: bool) -> None:
        if not on:
            self.page.remove_overlay(SEGMENTATION_LAYER)
            return
        path = newest_segmentation_path(self.page)
        if path is None:
            self.status.setText("No segmentation yet: train a model on the Models page")
            return
        import zarr

        self.page.set_overlay(SEGMENTATION_LAYER, zarr.open_array(str(path), mode="r"), None, 0.5, True)

    def _status_changed(self, job_id: int, _old: str, new: str) -> None:
        if new == "segmented" and job_id == self.preview._job_id() and self.segmentation_toggle.isChecked():
            self.show_segmentation(True)


def newest_segmentation_path(page) -> Path | None:
    from app.store.models import Segmentation

    job_id = getattr(page, "_loaded_job", None) or getattr(page, "job_id", None)
    if job_id is None:
        return None
    seg = (
        Segmentation.select()
        .where((Segmentation.job == job_id) & (Segmentation.state == "complete"))
        .order_by(Segmentation.id.desc())
        .first()
    )
    return Path(seg.path) if seg is not None and seg.path else None


def attach_live_preview(page) -> LivePreview:
    """Create the live preview of an Annotate page and put its controls in the page's side panel."""
    preview = LivePreview(page)
    page.live_preview_tools = PreviewTools(page, preview)
    page.add_tool_widget(page.live_preview_tools)
    return preview
