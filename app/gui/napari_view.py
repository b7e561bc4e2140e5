"""The embedded napari viewer: every use of napari's API (public or private) lives here.

:class:`VolumeView` is a plain QWidget holding a ``napari.Viewer(show=False)``'s
canvas. It shows a volume as a lazy multiscale image (the zarr levels), the
annotations as a Labels layer over an :class:`~app.pipeline.annotations.AnnotationBuffer`
(reads come from disk slice by slice, edits stay in memory until the owner
flushes them), named overlays, three orthogonal planes and a 3D rendering.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np
from PySide6.QtCore import QThreadPool, QTimer, Signal
from PySide6.QtWidgets import QVBoxLayout, QWidget

from app.core.memory import return_freed_memory
from app.gui.worker import BackgroundTask

#: dims.order for each plane: the plane's axis first (the slider), the two shown last.
PLANE_ORDER = {0: (0, 1, 2), 1: (1, 0, 2), 2: (2, 0, 1)}
TOOL_MODES = {"paint": "paint", "erase": "erase", "fill": "fill", "pan": "pan_zoom"}


def robust_contrast(data: np.ndarray, low: float = 0.5, high: float = 99.5) -> tuple[float, float]:
    """Contrast limits from percentiles of ``data`` (a coarse level), never empty."""
    sample = np.asarray(data).ravel()
    if sample.size > 250_000:  # a strided sample is plenty for percentiles
        sample = sample[:: sample.size // 250_000 + 1]
    lo, hi = (float(v) for v in np.percentile(sample, [low, high]))
    if hi <= lo:
        hi = lo + 1.0
    return lo, hi


class LazyLevel:
    """A read-on-demand view of a chunked array for napari's multiscale slicing.

    napari first crops the displayed axes of a level with slices and only then
    picks the slice; on a zarr array the crop alone would read the whole crop
    of every slice. Slicing this view only narrows a box; a key with an
    integer (or ``np.asarray``) reads the box from disk.

    A level with a ``stand_in`` never reads a plane on the caller's thread:
    for a plane not in memory yet it returns ``stand_in(axis, index)`` (a
    coarse plane enlarged, while the real one is read in the background), or
    reads it at once when that returns None.
    """

    def __init__(self, array: Any, box: tuple[slice, ...] | None = None,
                 planes: dict[tuple[int, int], np.ndarray] | None = None,
                 stand_in: Callable[[int, int], np.ndarray | None] | None = None) -> None:
        self.array = array
        #: Whole planes in memory: (axis, index) -> 2D array (one per level at most).
        self.planes = planes if planes is not None else {}
        self.stand_in = stand_in
        self.box = box or tuple(slice(0, int(s)) for s in array.shape)
        self.dtype = np.dtype(array.dtype)
        self.shape = tuple(b.stop - b.start for b in self.box)
        self.ndim = len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        if not isinstance(key, tuple):
            key = (key,)
        key = key + (slice(None),) * (self.ndim - len(key))
        box, dropped = [], []
        for axis, (k, b, size) in enumerate(zip(key, self.box, self.shape)):
            if isinstance(k, slice):
                start, stop, step = k.indices(size)
                if step != 1:
                    return np.asarray(self)[key]
                box.append(slice(b.start + start, b.start + max(start, stop)))
            else:
                i = int(k) + (size if int(k) < 0 else 0)
                box.append(slice(b.start + i, b.start + i + 1))
                dropped.append(axis)
        if dropped:
            data = self._box_data(tuple(box))
            return data[tuple(0 if a in dropped else slice(None) for a in range(self.ndim))]
        return LazyLevel(self.array, tuple(box), self.planes, self.stand_in)

    def __array__(self, dtype=None, copy=None):
        data = self._box_data(self.box)
        return data if dtype is None else data.astype(dtype)

    def _box_data(self, box: tuple[slice, ...]) -> np.ndarray:
        """The data of ``box`` (slices of the whole array), from a plane in memory when it is one plane thick."""
        thin = [axis for axis, b in enumerate(box) if b.stop - b.start == 1]
        if len(thin) != 1:
            return np.asarray(self.array[box])
        axis, index = thin[0], box[thin[0]].start
        inner = tuple(b for a, b in enumerate(box) if a != axis)
        plane = self.planes.get((axis, index))
        if plane is None and self.stand_in is not None:
            plane = self.stand_in(axis, index)  # not kept: the real plane replaces it
        if plane is not None:
            return np.expand_dims(plane[inner], axis)
        data = np.asarray(self.array[box])
        whole = all(b.start == 0 and b.stop == int(n) for a, (b, n) in enumerate(zip(box, self.array.shape)) if a != axis)
        if whole:  # napari slices the same plane again on every layer change
            self._keep_plane((axis, index), np.take(data, 0, axis=axis))
        return data

    def read_plane(self, axis: int, index: int) -> np.ndarray:
        """Read a whole plane of the array and keep it for the next slicing (any thread)."""
        key = (int(axis), int(index))
        plane = self.planes.get(key)
        if plane is None:
            box = [slice(0, int(s)) for s in self.array.shape]
            box[key[0]] = key[1]  # type: ignore[call-overload]
            plane = np.asarray(self.array[tuple(box)])
            self._keep_plane(key, plane)
        return plane

    def has_plane(self, axis: int, index: int) -> bool:
        return (int(axis), int(index)) in self.planes

    def _keep_plane(self, key: tuple[int, int], plane: np.ndarray) -> None:
        self.planes[key] = plane
        for other in [k for k in list(self.planes) if k != key]:  # one plane per level at most
            self.planes.pop(other, None)


#: The coarse level is kept in memory while a job is open when it is at most this big.
COARSE_LEVEL_IN_MEMORY_BYTES = 32 * 2**20
#: A plane is read once the slider has rested this long (ms), not on every step of a drag.
READ_AFTER_MS = 120
#: Freed memory is returned to the system this long (ms) after a read plane replaced a stand-in.
TRIM_AFTER_MS = 500
#: The first slice comes from the finest level whose planes have at most this many pixels.
COARSE_PLANE_PIXELS = 256 * 256


def coarse_level(levels: Sequence[Any], max_pixels: int = COARSE_PLANE_PIXELS) -> int:
    """Index of the finest level whose z plane has at most ``max_pixels`` (the last one otherwise)."""
    for index, level in enumerate(levels):
        if int(level.shape[1]) * int(level.shape[2]) <= max_pixels:
            return index
    return len(levels) - 1


_LAYER_CLASSES: tuple[type, type] | None = None


def _layer_classes() -> tuple[type, type]:
    """napari's Image and Labels without thumbnails (no layer list shows them here).

    A thumbnail is recomputed on every slice and every stroke (a zoom of the
    whole slice), and each new one makes the hidden layer list repaint.
    """
    global _LAYER_CLASSES
    if _LAYER_CLASSES is None:
        from napari.layers import Image, Labels

        class VolumeImage(Image):
            _type_string = "image"  # napari's actions and keys look layers up by this name

            def _update_thumbnail(self) -> None:
                pass

        class PaintLabels(Labels):
            _type_string = "labels"

            def _update_thumbnail(self) -> None:
                pass

        _LAYER_CLASSES = (VolumeImage, PaintLabels)
    return _LAYER_CLASSES


def _set_data(viewer, layer, data: Any, scale: Sequence[float], translate: Sequence[float]) -> None:
    """Give a (hidden) layer new data, scale and translate, setting only what changes.

    Each change of scale or translate costs napari an update of the whole
    viewer; napari keeps a hidden layer's extent when only its data changes,
    so then the extent is dropped and the viewer's dims updated here.
    """
    layer.data = data
    changed = False
    if not np.allclose(layer.scale, scale):
        layer.scale = list(scale)
        changed = True
    if not np.allclose(layer.translate, translate):
        layer.translate = list(translate)
        changed = True
    if not changed:
        layer._clear_extent()
        viewer._on_layers_change()


def _label_colormap(colors: Mapping[int, str]):
    from napari.utils.colormaps import DirectLabelColormap

    color_dict: dict[Any, Any] = {None: "transparent", 0: "transparent"}
    color_dict.update({int(v): c for v, c in colors.items()})
    return DirectLabelColormap(color_dict=color_dict)


class VolumeView(QWidget):
    """A napari canvas showing one job's volume, its annotations and overlays."""

    #: A paint/erase/fill stroke, an undo or a redo changed the labels (edits are in the buffer).
    labels_edited = Signal()
    #: The displayed plane or slice changed: (axis, index).
    plane_changed = Signal(int, int)
    #: The coarse first slice was replaced by the full-resolution one.
    full_resolution_shown = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        import napari

        from app.gui.qt_workarounds import apply_qt_workarounds

        apply_qt_workarounds()  # napari makes many void Qt calls and imports much after Qt (see qt_workarounds)

        self.viewer = napari.Viewer(show=False, title="Strata")
        self._qt_viewer = self.viewer.window._qt_viewer
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._qt_viewer)
        self.image_layer = None
        self.labels_layer = None
        self.labels_3d = None
        self.overlays: dict[str, Any] = {}
        self.closed = False  # set by close_viewer: napari's widgets are gone, layers can no longer be added
        self._buffer = None
        self._colors: dict[int, str] = {}
        self.spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
        self.shape: tuple[int, int, int] | None = None
        self._levels: list[LazyLevel] = []
        self._coarse = 0
        #: The plane being read in the background: (level view, axis, index); None when none is.
        self._request: tuple[LazyLevel, int, int] | None = None
        self._failed: set[tuple[int, int, int]] = set()  # planes whose background read failed
        self._enlarged: tuple[tuple[int, int, int], np.ndarray] | None = None  # the last stand-in plane
        self._pending_level = 0
        self._opening = False  # the first plane of a job is read at once, later ones when the slider rests
        self._read_timer = QTimer(self)
        self._read_timer.setSingleShot(True)
        self._read_timer.timeout.connect(self._start_read)
        # once a read plane is drawn, the buffers it replaced are handed back to the system
        self._trim_timer = QTimer(self)
        self._trim_timer.setSingleShot(True)
        self._trim_timer.setInterval(TRIM_AFTER_MS)
        self._trim_timer.timeout.connect(return_freed_memory)
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)
        self.viewer.dims.events.current_step.connect(self._on_step)
        self.viewer.dims.events.order.connect(self._on_step)
        self._warm_up()

    def _warm_up(self) -> None:
        """Create the image and labels layers once, hidden, and reuse them for every job.

        Opening a job then only swaps their data: no new layer controls or GL
        visuals, so the first slice shows quickly. Reuse also avoids removing a
        Labels layer, whose brush overlay visual napari 0.9 leaves behind (the
        next draw crashed llvmpipe), and keeps the viewer 3D between jobs.
        """
        image_class, labels_class = _layer_classes()
        self.image_layer = self.viewer.add_layer(image_class(
            self._parked_levels(), multiscale=True, name="volume", visible=False,
            contrast_limits=[0, 1], colormap="gray", interpolation2d="nearest",
        ))
        self.labels_layer = self.viewer.add_layer(labels_class(
            np.zeros((1, 1, 1), np.uint8), name="annotations", opacity=0.6, visible=False,
        ))
        self.labels_layer.mode = "pan_zoom"
        # one event per finished stroke (on mouse release) and per undo/redo
        self.labels_layer.events.paint.connect(self._on_paint)
        self.labels_layer.undo = self.undo  # napari's own Ctrl+Z binding calls layer.undo()
        self.labels_layer.redo = self.redo
        self.viewer.dims.axis_labels = ("z", "y", "x")
        # Create the brush overlay now (its visuals take a moment).
        self.labels_layer.mode = "paint"
        self.labels_layer.mode = "pan_zoom"

    @staticmethod
    def _parked_levels() -> list["LazyLevel"]:
        return [LazyLevel(np.zeros((2, 2, 2), np.uint8)), LazyLevel(np.zeros((1, 1, 1), np.uint8))]

    # -- volume -------------------------------------------------------------
    def show_volume(self, levels: Sequence[Any], spacing: Sequence[float], contrast: tuple[float, float] | None = None,
                    name: str = "volume", reveal: bool = True, coarse_first: bool = True) -> tuple[float, float]:
        """Show ``levels`` (level 0 first) lazily, at the middle z slice; returns the contrast limits used.

        With ``coarse_first`` no plane of a level finer than a coarse one (a
        few chunks per plane) is read on the UI thread: napari gets the
        coarse plane enlarged at once, the real plane is read in the
        background and replaces it (:attr:`full_resolution_shown`), on opening
        and on every move through the slices. With ``reveal=False`` the image
        stays hidden until :meth:`reveal` (set the labels first, so that
        napari slices and draws the volume only once).
        """
        self.clear()
        self._opening = True
        self.spacing = tuple(float(s) for s in spacing)  # type: ignore[assignment]
        self.shape = tuple(int(s) for s in levels[0].shape)  # type: ignore[assignment]
        self._coarse = coarse_level(levels) if coarse_first else 0
        # The coarse level lives in memory when small: stand-in planes then cost no read at all.
        coarse = levels[self._coarse]
        in_memory = None
        if self._coarse and coarse.nbytes <= COARSE_LEVEL_IN_MEMORY_BYTES:
            in_memory = np.asarray(coarse[...])
        if contrast is None:
            contrast = robust_contrast(in_memory if in_memory is not None and coarse is levels[-1] else levels[-1][...])
        self._levels = [
            LazyLevel(
                in_memory if index == self._coarse and in_memory is not None else level,
                stand_in=self._stand_in_for(index) if index < self._coarse else None,
            )
            for index, level in enumerate(levels)
        ]
        dtype = np.dtype(levels[0].dtype)
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            full = (float(min(info.min, contrast[0])), float(max(info.max, contrast[1])))
        else:
            full = (min(contrast[0], float(np.min(levels[-1][...]))), max(contrast[1], float(np.max(levels[-1][...]))))
        # The layer stays hidden until the camera fits the volume and the labels are set.
        layer = self.image_layer
        layer.visible = False
        _set_data(self.viewer, layer, self._levels, self.spacing, (0.0, 0.0, 0.0))
        layer.name = name
        layer.contrast_limits_range = list(full)
        layer.contrast_limits = list(contrast)
        self.set_plane(0)
        self.go_to(0, self.shape[0] // 2)
        self.viewer.reset_view()
        if reveal:
            self.reveal()
        return contrast

    @property
    def shown_level(self) -> int:
        """The finest pyramid level whose data is on screen (0 at full resolution).

        While a plane is read in the background napari shows the coarse level's plane enlarged.
        """
        if self.shape is None:
            return 0
        return self._coarse if self._request is not None else int(self.image_layer.data_level)

    def reveal(self) -> None:
        """Make the volume visible (napari slices it now: a finer level's plane comes as a stand-in)."""
        if self.shape is None:
            return
        self.image_layer.visible = True
        # fit the volume again once Qt has laid out the canvas (its size may change on first show)
        QTimer.singleShot(0, self._fit_view)

    def _fit_view(self) -> None:
        try:
            visible = self._qt_viewer.canvas.native.isVisible()
        except RuntimeError:  # the window was closed before this turn of the event loop
            return
        if self.shape is not None and visible:
            self.viewer.reset_view()

    # -- planes read in the background ------------------------------------------
    def _stand_in_for(self, level: int) -> Callable[[int, int], np.ndarray | None]:
        return lambda axis, index: self._stand_in(level, axis, index)

    def _stand_in(self, level: int, axis: int, index: int) -> np.ndarray | None:
        """The coarse level's plane enlarged to plane ``index`` of ``level``; asks for the real one.

        Returns None (napari then reads the plane itself, and reports a failure) when
        the background read of that plane failed.
        """
        if (level, axis, index) in self._failed or not self._levels:
            return None
        lazy = self._levels[level]
        self._request_plane(lazy, level, axis, index)
        key = (level, axis, index)
        if self._enlarged is not None and self._enlarged[0] == key:
            return self._enlarged[1]
        coarse = self._levels[self._coarse]
        factor = 2 ** (self._coarse - level)
        small = coarse.read_plane(axis, min(index // factor, coarse.array.shape[axis] - 1))
        size = [int(n) for a, n in enumerate(lazy.array.shape) if a != axis]
        big = np.repeat(np.repeat(small, factor, axis=0), factor, axis=1)[: size[0], : size[1]]
        if big.shape != tuple(size):  # a coarse level rounded down: repeat the edge
            big = np.pad(big, [(0, n - b) for n, b in zip(size, big.shape)], mode="edge")
        self._enlarged = (key, big)
        return big

    def _request_plane(self, lazy: LazyLevel, level: int, axis: int, index: int) -> None:
        """Read plane ``index`` of ``lazy`` in the background; the newest request wins.

        While the user moves through the slices the read waits until the
        slider rests (:data:`READ_AFTER_MS`), so reads do not compete with drawing.
        """
        current = self._request
        if current is not None and current[0] is lazy and current[1:] == (axis, index):
            return
        first = current is None and self._opening
        self._opening = False
        self._request = (lazy, axis, index)
        self._pending_level = level
        self._read_timer.start(0 if first else READ_AFTER_MS)

    def _start_read(self) -> None:
        request, level = self._request, self._pending_level
        if request is None:
            return
        lazy, axis, index = request

        def read() -> bool:
            if self._request is not request:  # a newer plane was asked for meanwhile
                return False
            lazy.read_plane(axis, index)
            return True

        def done(was_read: bool) -> None:
            if self._request is not request:
                return
            self._request = None
            self._enlarged = None
            if self.shape is not None:
                self.image_layer.refresh()  # napari slices again: the plane is in memory now
                self.full_resolution_shown.emit()
                self._trim_timer.start()

        def failed(_message: str) -> None:
            self._failed.add((level, axis, index))
            done(False)

        self._pool.start(BackgroundTask(read, done, failed))

    def wait_full_resolution(self, timeout_ms: int = 30000) -> bool:
        """Block (processing events) until no plane is read in the background (tests, benchmarks)."""
        import time

        from PySide6.QtCore import QCoreApplication

        deadline = time.monotonic() + timeout_ms / 1000
        QCoreApplication.processEvents()
        while self._request is not None and time.monotonic() < deadline:
            self._pool.waitForDone(5)
            QCoreApplication.processEvents()
        return self._request is None

    def clear(self) -> None:
        """Remove overlays; hide and empty the volume and labels layers (kept for reuse)."""
        for name in list(self.overlays):
            self.remove_overlay(name)
        if self.viewer.dims.ndisplay != 2:
            self.viewer.dims.ndisplay = 2
        for layer in (self.labels_layer, self.labels_3d):
            if layer is not None and layer.data.shape != (1, 1, 1):
                self._park_labels(layer)
        self._buffer = None
        self._request = None  # a background read still running is dropped when it ends
        self._failed.clear()
        self._enlarged = None
        if self.image_layer.visible or self.shape is not None:
            self.image_layer.visible = False
            self.image_layer.data = self._parked_levels()
        self.shape = None
        self._levels = []
        self._coarse = 0

    @property
    def contrast(self) -> tuple[float, float]:
        lo, hi = self.image_layer.contrast_limits
        return float(lo), float(hi)

    @property
    def contrast_range(self) -> tuple[float, float]:
        lo, hi = self.image_layer.contrast_limits_range
        return float(lo), float(hi)

    def set_contrast(self, low: float, high: float) -> None:
        if self.image_layer is not None and high > low:
            self.image_layer.contrast_limits = [float(low), float(high)]

    # -- planes -------------------------------------------------------------
    def set_plane(self, axis: int) -> None:
        """Show plane ``axis`` (0 = z, 1 = y, 2 = x) in 2D."""
        if self.viewer.dims.ndisplay != 2:
            self.set_3d(False)
        self.viewer.dims.order = PLANE_ORDER[int(axis)]

    def current_plane(self) -> tuple[int, int]:
        """(axis, index) of the slice on screen (in 3D: the plane the 2D view returns to)."""
        axis = int(self.viewer.dims.order[0])
        return axis, self._index(axis)

    def _index(self, axis: int) -> int:
        point = self.viewer.dims.point[axis]
        index = int(round(point / self.spacing[axis]))
        if self.shape is not None:
            index = min(max(index, 0), self.shape[axis] - 1)
        return index

    def go_to(self, axis: int, index: int) -> None:
        """Show slice ``index`` of plane ``axis``."""
        axis = int(axis)
        if self.viewer.dims.ndisplay == 2 and int(self.viewer.dims.order[0]) != axis:
            self.set_plane(axis)
        self.viewer.dims.set_point(axis, float(index) * self.spacing[axis])

    def set_3d(self, on: bool) -> None:
        """Switch between the 2D plane view and a 3D rendering (annotations shown coarse)."""
        on = bool(on)
        if on == self.is_3d:
            return
        # The full-resolution labels are never shown in 3D (napari would read them whole):
        # hide them before the switch to 3D, show them only after the switch back.
        if on:
            if self.labels_layer is not None:
                self.labels_layer.visible = False
            self._show_coarse_labels()
            self.viewer.dims.ndisplay = 3
            return
        if self.labels_3d is not None:
            self._park_labels(self.labels_3d)
        self.viewer.dims.ndisplay = 2
        if self.labels_layer is not None and self._buffer is not None:
            self.labels_layer.visible = True

    @property
    def is_3d(self) -> bool:
        return self.viewer.dims.ndisplay == 3

    def _show_coarse_labels(self) -> None:
        if self._buffer is None:
            return
        from app.pipeline.annotations import coarse_labels

        labels, factor = coarse_labels(self._buffer.array)
        scale = [s * factor for s in self.spacing]
        translate = [(factor - 1) * s / 2 for s in self.spacing]
        if self.labels_3d is None:
            self.labels_3d = self.viewer.add_labels(
                labels, name="annotations (3D)", scale=scale, translate=translate, opacity=0.8,
                colormap=_label_colormap(self._colors),
            )
            self.labels_3d.mode = "pan_zoom"
        else:
            layer = self.labels_3d
            layer.data = labels
            layer.scale, layer.translate = scale, translate
            layer.colormap = _label_colormap(self._colors)
            layer.visible = True
            layer.refresh()

    def _on_step(self, event=None) -> None:
        if self.shape is None:
            return
        axis, index = self.current_plane()
        self.plane_changed.emit(axis, index)

    # -- annotations --------------------------------------------------------
    def set_labels(self, buffer, colors: Mapping[int, str]) -> None:
        """Show (and edit) the annotations through ``buffer`` (an AnnotationBuffer)."""
        self._buffer = buffer
        self._colors = dict(colors)
        layer = self.labels_layer
        _set_data(self.viewer, layer, buffer, self.spacing, (0.0, 0.0, 0.0))
        layer.colormap = _label_colormap(self._colors)
        layer._reset_history()
        layer.visible = not self.is_3d
        layers = self.viewer.layers
        if layers.index(layer) != len(layers) - 1:
            layers.move(layers.index(layer), len(layers))
        layer.n_edit_dimensions = 2
        layer.contiguous = True
        layer.preserve_labels = False
        layer.brush_size = 10
        self.labels_layer = layer
        self.viewer.layers.selection.active = layer

    def _park_labels(self, layer) -> None:
        """Hide a labels layer and drop its data (kept for reuse, see :meth:`clear`)."""
        layer.mode = "pan_zoom"
        layer.visible = False
        layer.data = np.zeros((1, 1, 1), np.uint8)
        layer._reset_history()
        if layer is self.labels_layer:
            self._buffer = None

    def _on_paint(self, event=None) -> None:
        self.labels_edited.emit()

    def set_label_colors(self, colors: Mapping[int, str]) -> None:
        self._colors = dict(colors)
        if self.labels_layer is not None:
            self.labels_layer.colormap = _label_colormap(self._colors)
        if self.labels_3d is not None:
            self.labels_3d.colormap = _label_colormap(self._colors)

    def refresh_labels(self) -> None:
        """Read the displayed labels again (after the array changed on disk)."""
        if self.labels_layer is not None:
            self.labels_layer.refresh()
        if self.is_3d:
            self._show_coarse_labels()

    def set_tool(self, tool: str) -> None:
        """``paint``, ``erase``, ``fill`` or ``pan``."""
        if self.labels_layer is not None:
            self.labels_layer.mode = TOOL_MODES[tool]

    def set_brush_size(self, size: int) -> None:
        if self.labels_layer is not None:
            self.labels_layer.brush_size = max(1, int(size))

    def set_selected_label(self, value: int) -> None:
        if self.labels_layer is not None:
            self.labels_layer.selected_label = int(value)

    def undo(self) -> bool:
        """Undo the last stroke; returns whether there was one."""
        from napari.layers import Labels

        layer = self.labels_layer
        if layer is None or not layer._undo_history:
            return False
        Labels.undo(layer)
        self.labels_edited.emit()
        return True

    def redo(self) -> bool:
        from napari.layers import Labels

        layer = self.labels_layer
        if layer is None or not layer._redo_history:
            return False
        Labels.redo(layer)
        self.labels_edited.emit()
        return True

    def clear_history(self) -> None:
        """Forget undo/redo (the array changed behind the layer's back)."""
        if self.labels_layer is not None:
            self.labels_layer._reset_history()

    # -- overlays -----------------------------------------------------------
    def set_overlay(self, name: str, data: Any, colors: Mapping[int, str] | str | None = None,
                    opacity: float = 0.5, visible: bool = True, plane: tuple[int, int] | None = None) -> None:
        """Show ``data`` over the volume, replacing an overlay of the same name.

        ``data`` is a 2D slice (shown on ``plane``, default the current one), a
        3D array, or a multiscale list of 3D arrays. Integer data is shown as
        labels coloured by ``colors`` (value -> colour); other data as an image
        with the colormap named by ``colors``. Does nothing once the viewer is closed.
        """
        if self.closed:
            return
        self.remove_overlay(name)
        multiscale = isinstance(data, (list, tuple))
        first = data[0] if multiscale else data
        scale = list(self.spacing)
        translate = [0.0, 0.0, 0.0]
        if not multiscale and getattr(first, "ndim", 3) == 2:
            axis, index = plane if plane is not None else self.current_plane()
            data = np.expand_dims(np.asarray(data), axis)
            translate[axis] = index * self.spacing[axis]
            first = data
        elif self.shape is not None and tuple(first.shape) != self.shape:
            scale = [sp * full / part for sp, full, part in zip(self.spacing, self.shape, first.shape)]
        if multiscale:
            data = [LazyLevel(level) for level in data]
        kwargs = dict(name=name, scale=scale, translate=translate, opacity=float(opacity), visible=bool(visible))
        if np.issubdtype(np.dtype(first.dtype), np.integer):
            cmap = _label_colormap(colors if isinstance(colors, Mapping) else self._colors)
            layer = self.viewer.add_labels(data, multiscale=multiscale, colormap=cmap, **kwargs)
        else:
            layer = self.viewer.add_image(
                data, multiscale=multiscale, colormap=colors if isinstance(colors, str) else "magma",
                blending="additive", **kwargs,
            )
        self.overlays[name] = layer
        if self.labels_layer is not None:  # keep the paint layer on top and active
            layers = self.viewer.layers
            layers.move(layers.index(self.labels_layer), len(layers))
            layers.selection.active = self.labels_layer

    def remove_overlay(self, name: str) -> None:
        layer = self.overlays.pop(name, None)
        if layer is not None and layer in self.viewer.layers:
            if hasattr(layer, "brush_size"):  # a Labels layer: switch its brush overlay off first
                layer.mode = "pan_zoom"
                layer.visible = False
            self.viewer.layers.remove(layer)

    # -- rendering ----------------------------------------------------------
    def focus_canvas(self) -> None:
        """Give the keyboard focus to the canvas (where the user paints)."""
        self._qt_viewer.canvas.native.setFocus()

    def canvas_widget(self) -> QWidget:
        """The Qt widget of the canvas (for mouse and key events)."""
        return self._qt_viewer.canvas.native

    def screenshot(self) -> np.ndarray:
        """Render the canvas now and return it as an RGBA array."""
        return self.viewer.screenshot(canvas_only=True, flash=False)

    def close_viewer(self) -> None:
        """Release the viewer (the window closes)."""
        self.closed = True
        try:
            self.viewer.layers.clear()
            self.viewer.close()
        except Exception:  # noqa: BLE001 - closing twice or during teardown
            pass
