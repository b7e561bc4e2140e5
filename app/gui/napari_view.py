"""The embedded napari viewer: every use of napari's API (public or private) lives here.

:class:`VolumeView` is a plain QWidget holding a ``napari.Viewer(show=False)``'s
canvas. It shows a volume as a lazy multiscale image (the zarr levels), the
annotations as a Labels layer over an :class:`~app.pipeline.annotations.AnnotationBuffer`
(reads come from disk slice by slice, edits stay in memory until the owner
flushes them), named overlays, three orthogonal planes and a 3D rendering.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
from PySide6.QtCore import QThreadPool, QTimer, Signal
from PySide6.QtWidgets import QVBoxLayout, QWidget

#: dims.order for each plane: the plane's axis first (the slider), the two shown last.
PLANE_ORDER = {0: (0, 1, 2), 1: (1, 0, 2), 2: (2, 0, 1)}
TOOL_MODES = {"paint": "paint", "erase": "erase", "fill": "fill", "pan": "pan_zoom"}


def robust_contrast(data: np.ndarray, low: float = 0.5, high: float = 99.5) -> tuple[float, float]:
    """Contrast limits from percentiles of ``data`` (a coarse level), never empty."""
    sample = np.asarray(data).ravel()
    if sample.size > 1_000_000:  # a strided sample is plenty for percentiles
        sample = sample[:: sample.size // 1_000_000 + 1]
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
    """

    def __init__(self, array: Any, box: tuple[slice, ...] | None = None,
                 planes: dict[tuple[int, int], np.ndarray] | None = None) -> None:
        self.array = array
        #: Whole planes read ahead of time (in the background): (axis, index) -> 2D array.
        self.planes = planes if planes is not None else {}
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
        box, read = [], False
        for k, b, size in zip(key, self.box, self.shape):
            if isinstance(k, slice):
                start, stop, step = k.indices(size)
                if step != 1:
                    return np.asarray(self)[key]
                box.append(slice(b.start + start, b.start + max(start, stop)))
            else:
                i = int(k) + (size if int(k) < 0 else 0)
                box.append(b.start + i)
                read = True
        if read:
            return self._read(tuple(box))
        return LazyLevel(self.array, tuple(box), self.planes)

    def _read(self, box: tuple) -> np.ndarray:
        """Read ``box`` (slices and integers), from a plane read ahead when there is one."""
        ints = [axis for axis, b in enumerate(box) if not isinstance(b, slice)]
        if len(ints) == 1 and (ints[0], box[ints[0]]) in self.planes:
            plane = self.planes[(ints[0], box[ints[0]])]
            return plane[tuple(b for b in box if isinstance(b, slice))]
        return np.asarray(self.array[box])

    def read_plane(self, axis: int, index: int) -> np.ndarray:
        """Read a whole plane of the array and keep it for the next slicing (any thread)."""
        key = (int(axis), int(index))
        if key not in self.planes:
            box = [slice(0, int(s)) for s in self.array.shape]
            box[key[0]] = key[1]  # type: ignore[call-overload]
            plane = np.asarray(self.array[tuple(box)])
            self._keep_plane(key, plane)
            return plane
        return self.planes[key]

    def __array__(self, dtype=None, copy=None):
        data = self._cached_box()
        if data is None:
            data = np.asarray(self.array[self.box])
            thin = [a for a, b in enumerate(self.box) if b.stop - b.start == 1]
            whole = all(b.start == 0 and b.stop == int(n) for a, (b, n) in enumerate(zip(self.box, self.array.shape))
                        if a not in thin)
            if len(thin) == 1 and whole:  # napari slices the same plane again on every layer change
                self._keep_plane((thin[0], self.box[thin[0]].start), np.take(data, 0, axis=thin[0]))
        return data if dtype is None else data.astype(dtype)

    def _keep_plane(self, key: tuple[int, int], plane: np.ndarray) -> None:
        self.planes[key] = plane
        for other in [k for k in list(self.planes) if k != key]:  # one plane per level at most
            self.planes.pop(other, None)

    def _cached_box(self) -> np.ndarray | None:
        """The box from a plane read ahead, when the box is one plane thick (napari's slicing)."""
        for (axis, index), plane in list(self.planes.items()):
            b = self.box[axis]
            if b.start == index and b.stop == index + 1:
                inner = tuple(bb for a, bb in enumerate(self.box) if a != axis)
                return np.expand_dims(plane[inner], axis)
        return None


#: The first slice comes from the finest level whose planes have at most this many pixels.
COARSE_PLANE_PIXELS = 256 * 256


def coarse_level(levels: Sequence[Any], max_pixels: int = COARSE_PLANE_PIXELS) -> int:
    """Index of the finest level whose z plane has at most ``max_pixels`` (the last one otherwise)."""
    for index, level in enumerate(levels):
        if int(level.shape[1]) * int(level.shape[2]) <= max_pixels:
            return index
    return len(levels) - 1


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

        self.viewer = napari.Viewer(show=False, title="Strata")
        self._qt_viewer = self.viewer.window._qt_viewer
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._qt_viewer)
        self.image_layer = None
        self.labels_layer = None
        self.labels_3d = None
        self.overlays: dict[str, Any] = {}
        self._buffer = None
        self._colors: dict[int, str] = {}
        self.spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
        self.shape: tuple[int, int, int] | None = None
        self._levels: list[LazyLevel] = []
        self._shown_level = 0
        self._token: object | None = None  # the background read of the full-resolution planes
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
        self.image_layer = self.viewer.add_image(
            self._parked_levels(), multiscale=True, name="volume", visible=False,
            contrast_limits=[0, 1], colormap="gray", interpolation2d="nearest",
        )
        self.labels_layer = self.viewer.add_labels(
            np.zeros((1, 1, 1), np.uint8), name="annotations", opacity=0.6, visible=False,
        )
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

        With ``coarse_first`` the first slice comes from a coarse level (a few
        chunks, at once) while the finer levels' planes are read in the
        background; the full resolution replaces it when they are in memory
        (:attr:`full_resolution_shown`). With ``reveal=False`` the image stays
        hidden until :meth:`reveal` (set the labels first, so that napari
        slices and draws the volume only once).
        """
        self.clear()
        self.spacing = tuple(float(s) for s in spacing)  # type: ignore[assignment]
        self.shape = tuple(int(s) for s in levels[0].shape)  # type: ignore[assignment]
        self._levels = [LazyLevel(level) for level in levels]
        self._coarse = coarse_level(levels) if coarse_first else 0
        if contrast is None:
            contrast = robust_contrast(levels[-1][...])
        dtype = np.dtype(levels[0].dtype)
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            full = (float(min(info.min, contrast[0])), float(max(info.max, contrast[1])))
        else:
            full = (min(contrast[0], float(np.min(levels[-1][...]))), max(contrast[1], float(np.max(levels[-1][...]))))
        # The layer stays hidden until the camera fits the volume: napari slices a
        # visible layer at once, at full resolution (a whole level-0 slice of a huge volume).
        layer = self.image_layer
        layer.visible = False
        self._set_image_levels(self._coarse)
        layer.name = name
        layer.contrast_limits_range = list(full)
        layer.contrast_limits = list(contrast)
        self.set_plane(0)
        self.go_to(0, self.shape[0] // 2)
        self.viewer.reset_view()
        if reveal:
            self.reveal()
        return contrast

    def _set_image_levels(self, first: int) -> None:
        """Give the image layer levels ``first``, ``first + 1``, ... (placed over the full volume)."""
        layer = self.image_layer
        factors = [full / part for full, part in zip(self.shape, self._levels[first].shape)]
        layer.data = self._levels[first:]
        layer.scale = [s * f for s, f in zip(self.spacing, factors)]
        layer.translate = [(f - 1) * s / 2 for s, f in zip(self.spacing, factors)]
        self._shown_level = first

    @property
    def shown_level(self) -> int:
        """The finest pyramid level the image layer has now (0 once at full resolution)."""
        return self._shown_level

    def reveal(self) -> None:
        """Make the volume visible (napari reads its first slice now, from the coarse level).

        Starts reading the finer levels' planes of the slice on screen in the
        background; they replace the coarse slice when they are in memory.
        """
        if self.shape is None:
            return
        self.image_layer.visible = True
        # fit the volume again once Qt has laid out the canvas (its size may change on first show)
        QTimer.singleShot(0, self._fit_view)
        if self._shown_level > 0:
            self._read_fine_planes()

    def _fit_view(self) -> None:
        if self.shape is not None and self._qt_viewer.canvas.native.isVisible():
            self.viewer.reset_view()

    def _read_fine_planes(self) -> None:
        from app.gui.worker import BackgroundTask

        token = self._token = object()
        axis, index = self.current_plane()
        fine = self._levels[: self._shown_level]

        def read() -> None:
            for level in fine:
                ratio = level.shape[axis] / self.shape[axis]
                level.read_plane(axis, min(int(index * ratio), level.shape[axis] - 1))

        def done(_result=None) -> None:
            if token is self._token and self.shape is not None:
                self._token = None
                self._set_image_levels(0)
                if self._buffer is not None and not self.is_3d:
                    self.labels_layer.visible = True
                self.full_resolution_shown.emit()

        # On a failed read napari reads the plane itself after the swap (and reports the error).
        task = BackgroundTask(read, done, lambda _message: done())
        # start once the coarse slice is drawn, so the read does not slow the first frame down
        QTimer.singleShot(0, lambda: self._pool.start(task) if token is self._token else None)

    def wait_full_resolution(self, timeout_ms: int = 30000) -> bool:
        """Block (processing events) until the full-resolution slice is shown (tests, benchmarks)."""
        import time

        from PySide6.QtCore import QCoreApplication

        deadline = time.monotonic() + timeout_ms / 1000
        while self._token is not None and time.monotonic() < deadline:
            self._pool.waitForDone(10)
            QCoreApplication.processEvents()
        return self._token is None

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
        self._token = None  # a background read still running is dropped when it ends
        if self.image_layer.visible or self.shape is not None:
            self.image_layer.visible = False
            self.image_layer.data = self._parked_levels()
            self.image_layer.scale = (1.0, 1.0, 1.0)
            self.image_layer.translate = (0.0, 0.0, 0.0)
        self.shape = None
        self._levels = []
        self._shown_level = 0

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
        layer.data = buffer
        layer.scale = self.spacing
        layer.translate = (0.0, 0.0, 0.0)
        layer.colormap = _label_colormap(self._colors)
        layer._reset_history()
        # During a coarse first slice the paint shows with the full-resolution slice (a moment later):
        # the first frame then needs neither a full-resolution labels slice nor its texture.
        layer.visible = self._shown_level == 0
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
        with the colormap named by ``colors``.
        """
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
        try:
            self.viewer.layers.clear()
            self.viewer.close()
        except Exception:  # noqa: BLE001 - closing twice or during teardown
            pass
