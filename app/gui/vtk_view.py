"""The one module that uses VTK's Qt view: a 3D view of coloured surfaces.

:class:`SurfaceView` is a plain QWidget that *holds* a
``QVTKRenderWindowInteractor`` (composition, not inheritance). It renders
only while it is shown and active, finalizes its render window on close so
none is left behind, and takes screenshots through
``vtkWindowToImageFilter`` (``QWidget.grab()`` cannot capture OpenGL).

Mouse: left drag rotates, right drag or wheel zooms, middle drag (or
shift + left) pans; ``reset_view`` frames all surfaces again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QVBoxLayout, QWidget

# Rendering back-ends register themselves on import (factory overrides).
import vtkmodules.vtkInteractionStyle  # noqa: F401
import vtkmodules.vtkRenderingFreeType  # noqa: F401
import vtkmodules.vtkRenderingOpenGL2  # noqa: F401
from vtkmodules.qt.QVTKRenderWindowInteractor import QVTKRenderWindowInteractor
from vtkmodules.vtkCommonCore import vtkPoints
from vtkmodules.vtkCommonDataModel import vtkCellArray, vtkPolyData
from vtkmodules.vtkIOImage import vtkPNGWriter
from vtkmodules.vtkInteractionStyle import vtkInteractorStyleTrackballCamera
from vtkmodules.vtkInteractionWidgets import vtkOrientationMarkerWidget
from vtkmodules.vtkRenderingAnnotation import vtkAxesActor, vtkCubeAxesActor
from vtkmodules.vtkRenderingCore import (
    vtkActor,
    vtkActor2D,
    vtkPolyDataMapper,
    vtkPolyDataMapper2D,
    vtkRenderer,
    vtkTextActor,
    vtkWindowToImageFilter,
)

BACKGROUND = (0.11, 0.12, 0.14)


@dataclass
class _Layer:
    actor: object
    name: str
    color: str


def polydata(points: np.ndarray, faces: np.ndarray) -> vtkPolyData:
    """Triangles as a vtkPolyData."""
    from vtkmodules.util.numpy_support import numpy_to_vtk, numpy_to_vtkIdTypeArray

    vtk_points = vtkPoints()
    vtk_points.SetData(numpy_to_vtk(np.ascontiguousarray(points, np.float32), deep=True))
    cells = vtkCellArray()
    cells.SetData(
        numpy_to_vtkIdTypeArray(np.arange(0, 3 * len(faces) + 1, 3, dtype=np.int64), deep=True),
        numpy_to_vtkIdTypeArray(np.ascontiguousarray(faces, np.int64).ravel(), deep=True),
    )
    poly = vtkPolyData()
    poly.SetPoints(vtk_points)
    poly.SetPolys(cells)
    return poly


def nice_length(limit: float) -> float:
    """The largest 1, 2 or 5 times a power of ten that is at most ``limit``."""
    if limit <= 0:
        return 0.0
    power = 10.0 ** math.floor(math.log10(limit))
    for step in (5.0, 2.0, 1.0):
        if step * power <= limit:
            return step * power
    return power


def format_length(value: float, unit: str) -> str:
    text = f"{value:g}"
    return f"{text} {unit}".strip()


class SurfaceView(QWidget):
    """Coloured surfaces in a VTK render window embedded in Qt."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._vtk = QVTKRenderWindowInteractor(self)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._vtk)
        self.renderer = vtkRenderer()
        self.renderer.SetBackground(*BACKGROUND)
        self.render_window = self._vtk.GetRenderWindow()
        self.render_window.AddRenderer(self.renderer)
        self.interactor = self.render_window.GetInteractor()
        self.interactor.SetInteractorStyle(vtkInteractorStyleTrackballCamera())
        self._layers: dict[int, _Layer] = {}
        self.unit = ""
        self.active = False
        self.finalized = False
        self.renders = 0
        self._build_annotations()
        self.renderer.AddObserver("StartEvent", lambda *_: self._update_scale_bar())
        self.interactor.Initialize()

    # -- annotations --------------------------------------------------------
    def _build_annotations(self) -> None:
        self.cube_axes = vtkCubeAxesActor()
        self.cube_axes.SetCamera(self.renderer.GetActiveCamera())
        self.cube_axes.SetFlyModeToOuterEdges()
        self.cube_axes.SetGridLineLocation(vtkCubeAxesActor.VTK_GRID_LINES_FURTHEST)
        for axis in range(3):
            self.cube_axes.GetTitleTextProperty(axis).SetColor(0.85, 0.85, 0.85)
            self.cube_axes.GetLabelTextProperty(axis).SetColor(0.75, 0.75, 0.75)
        self.cube_axes.VisibilityOff()
        self.renderer.AddActor(self.cube_axes)

        self.marker = vtkOrientationMarkerWidget()
        self.marker.SetOrientationMarker(vtkAxesActor())
        self.marker.SetInteractor(self.interactor)
        self.marker.SetViewport(0.0, 0.0, 0.16, 0.22)
        self.marker.SetEnabled(1)
        self.marker.InteractiveOff()

        points = vtkPoints()
        points.SetNumberOfPoints(6)
        lines = vtkCellArray()
        for a, b in ((0, 1), (2, 3), (4, 5)):
            lines.InsertNextCell(2)
            lines.InsertCellPoint(a)
            lines.InsertCellPoint(b)
        self._bar_points = points
        bar = vtkPolyData()
        bar.SetPoints(points)
        bar.SetLines(lines)
        mapper = vtkPolyDataMapper2D()
        mapper.SetInputData(bar)
        self._bar_data = bar
        self.scale_bar = vtkActor2D()
        self.scale_bar.SetMapper(mapper)
        self.scale_bar.GetProperty().SetColor(1, 1, 1)
        self.scale_bar.GetProperty().SetLineWidth(2)
        self.scale_label = vtkTextActor()
        self.scale_label.GetTextProperty().SetFontSize(14)
        self.scale_label.GetTextProperty().SetColor(1, 1, 1)
        for actor in (self.scale_bar, self.scale_label):
            actor.VisibilityOff()
            self.renderer.AddViewProp(actor)
        self.scale_text = ""

    def _update_scale_bar(self) -> None:
        """A bar of a round length in the job's unit, sized for the current zoom."""
        if not self._layers:
            return
        width, height = self.render_window.GetSize()
        if width < 10 or height < 10:
            return
        camera = self.renderer.GetActiveCamera()
        if camera.GetParallelProjection():
            world_height = 2.0 * camera.GetParallelScale()
        else:
            world_height = 2.0 * camera.GetDistance() * math.tan(math.radians(camera.GetViewAngle()) / 2)
        per_pixel = world_height / height
        length = nice_length(0.25 * width * per_pixel)
        pixels = length / per_pixel if per_pixel > 0 else 0
        x0, y0 = width - 30 - pixels, 30
        coords = [(x0, y0), (x0 + pixels, y0), (x0, y0 - 6), (x0, y0 + 6), (x0 + pixels, y0 - 6), (x0 + pixels, y0 + 6)]
        for i, (x, y) in enumerate(coords):
            self._bar_points.SetPoint(i, x, y, 0)
        self._bar_points.Modified()
        self._bar_data.Modified()
        self.scale_text = format_length(length, self.unit)
        self.scale_label.SetInput(self.scale_text)
        self.scale_label.SetPosition(x0, y0 + 10)

    # -- content ---------------------------------------------------------------
    def set_unit(self, unit: str) -> None:
        self.unit = unit or ""
        suffix = f" ({self.unit})" if self.unit else ""
        self.cube_axes.SetXTitle(f"x{suffix}")
        self.cube_axes.SetYTitle(f"y{suffix}")
        self.cube_axes.SetZTitle(f"z{suffix}")

    def set_surfaces(self, surfaces: list[tuple[int, str, str, np.ndarray, np.ndarray]], reset: bool = True) -> None:
        """Show ``(key, name, colour, points, faces)`` surfaces instead of the current ones."""
        from vtkmodules.vtkFiltersCore import vtkPolyDataNormals

        self.clear()
        for key, name, color, points, faces in surfaces:
            normals = vtkPolyDataNormals()
            normals.SetInputData(polydata(points, faces))
            normals.SplittingOff()
            normals.ConsistencyOff()
            mapper = vtkPolyDataMapper()
            mapper.SetInputConnection(normals.GetOutputPort())
            actor = vtkActor()
            actor.SetMapper(mapper)
            qcolor = QColor(color)
            actor.GetProperty().SetColor(qcolor.redF(), qcolor.greenF(), qcolor.blueF())
            actor.GetProperty().SetSpecular(0.2)
            self.renderer.AddActor(actor)
            self._layers[key] = _Layer(actor, name, color)
        has = bool(self._layers)
        for actor in (self.cube_axes, self.scale_bar, self.scale_label):
            actor.SetVisibility(has)
        if has:
            lo = np.min([p.min(axis=0) for _, _, _, p, _ in surfaces if len(p)], axis=0)
            hi = np.max([p.max(axis=0) for _, _, _, p, _ in surfaces if len(p)], axis=0)
            self.cube_axes.SetBounds(lo[0], hi[0], lo[1], hi[1], lo[2], hi[2])
        if reset:
            self.reset_view()
        else:
            self.render()

    def clear(self) -> None:
        for layer in self._layers.values():
            self.renderer.RemoveActor(layer.actor)
        self._layers.clear()

    def keys(self) -> list[int]:
        return list(self._layers)

    def set_visible(self, key: int, visible: bool) -> None:
        self._layers[key].actor.SetVisibility(bool(visible))
        self.render()

    def is_shown(self, key: int) -> bool:
        return bool(self._layers[key].actor.GetVisibility())

    def set_opacity(self, key: int, opacity: float) -> None:
        self._layers[key].actor.GetProperty().SetOpacity(min(max(float(opacity), 0.0), 1.0))
        self.render()

    def opacity(self, key: int) -> float:
        return float(self._layers[key].actor.GetProperty().GetOpacity())

    def set_axes_visible(self, visible: bool) -> None:
        self.cube_axes.SetVisibility(bool(visible) and bool(self._layers))
        self.render()

    # -- camera ---------------------------------------------------------------------
    def reset_view(self) -> None:
        camera = self.renderer.GetActiveCamera()
        camera.SetPosition(0.55, -1, 0.55)
        camera.SetFocalPoint(0, 0, 0)
        camera.SetViewUp(0, 0, 1)
        self.renderer.ResetCamera()
        camera.Zoom(0.9)
        self.render()

    def rotate(self, azimuth: float, elevation: float = 0.0) -> None:
        camera = self.renderer.GetActiveCamera()
        camera.Azimuth(azimuth)
        camera.Elevation(elevation)
        camera.OrthogonalizeViewUp()
        self.renderer.ResetCameraClippingRange()
        self.render()

    def zoom(self, factor: float) -> None:
        self.renderer.GetActiveCamera().Zoom(factor)
        self.render()

    def pan(self, dx: float, dy: float) -> None:
        """Move the view by fractions of its width and height."""
        camera = self.renderer.GetActiveCamera()
        focal = np.array(camera.GetFocalPoint())
        position = np.array(camera.GetPosition())
        up = np.array(camera.GetViewUp())
        forward = focal - position
        distance = np.linalg.norm(forward)
        right = np.cross(forward / distance, up)
        height = 2.0 * distance * math.tan(math.radians(camera.GetViewAngle()) / 2)
        shift = right * dx * height + up * dy * height
        camera.SetFocalPoint(*(focal + shift))
        camera.SetPosition(*(position + shift))
        self.render()

    # -- rendering ----------------------------------------------------------------
    def set_active(self, active: bool) -> None:
        """Render only while active (the page is shown)."""
        self.active = bool(active)
        if self.active:
            self.interactor.Enable()
            self.render()
        else:
            self.interactor.Disable()

    def render(self) -> None:
        if self.finalized or not self.active or not self.isVisible():
            return
        self.render_window.Render()
        self.renders += 1

    def capture(self) -> np.ndarray:
        """The rendered image as (height, width, 3) uint8, top row first."""
        from vtkmodules.util.numpy_support import vtk_to_numpy

        self.render_window.Render()
        grab = vtkWindowToImageFilter()
        grab.SetInput(self.render_window)
        grab.SetInputBufferTypeToRGB()
        grab.ReadFrontBufferOff()
        grab.Update()
        image = grab.GetOutput()
        width, height, _ = image.GetDimensions()
        pixels = vtk_to_numpy(image.GetPointData().GetScalars()).reshape(height, width, -1)
        return np.ascontiguousarray(pixels[::-1, :, :3])

    def save_screenshot(self, path: str | Path) -> Path:
        """Write the view as a PNG file."""
        path = Path(path)
        if path.suffix.lower() != ".png":
            path = path.with_suffix(".png")
        if not path.parent.is_dir():
            raise OSError(f"{path.parent}: no such folder")
        self.render_window.Render()
        grab = vtkWindowToImageFilter()
        grab.SetInput(self.render_window)
        grab.SetInputBufferTypeToRGB()
        grab.ReadFrontBufferOff()
        writer = vtkPNGWriter()
        writer.SetFileName(str(path))
        writer.SetInputConnection(grab.GetOutputPort())
        writer.Write()
        if not path.is_file() or path.stat().st_size == 0:
            raise OSError(f"{path}: the screenshot could not be written")
        return path

    def finalize(self) -> None:
        """Release the render window (call once, when the page closes)."""
        if self.finalized:
            return
        self.finalized = True
        self.active = False
        self.clear()
        self.marker.SetEnabled(0)
        self.marker.SetInteractor(None)
        self.renderer.RemoveAllObservers()
        self.interactor.RemoveAllObservers()
        self.render_window.RemoveAllObservers()
        self.render_window.RemoveRenderer(self.renderer)
        self._vtk.Finalize()
        self._vtk.close()
        # break the window <-> interactor reference loop, or neither is ever freed
        self.interactor.SetInteractorStyle(None)
        self.render_window.SetInteractor(None)
        self.interactor.SetRenderWindow(None)
        self._vtk.setParent(None)
        import shiboken6

        shiboken6.delete(self._vtk)
        # drop every reference so the render window (and its X connection) is destroyed now
        self._vtk = self.render_window = self.interactor = self.renderer = None
        self.marker = self.cube_axes = self.scale_bar = self.scale_label = None
        self._bar_points = self._bar_data = None
        import gc

        gc.collect()

    def closeEvent(self, event) -> None:  # noqa: N802
        self.finalize()
        super().closeEvent(event)
