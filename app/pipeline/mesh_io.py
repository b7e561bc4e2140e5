"""Triangle surface files: binary STL, OBJ, binary PLY and glTF binary (GLB); readers for checks.

Writers take points (N, 3) in x, y, z real units and triangles (M, 3) of
point indices. Every file is written to a temporary name beside it and then
renamed, so a failed write never leaves half a file or spoils an older one.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

FORMATS = ("stl", "obj", "ply", "glb")

#: One surface to write together with others: (name, points, faces).
Part = tuple[str, np.ndarray, np.ndarray]


def _atomic_write(path: Path, write: Callable[[object], None]) -> Path:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.part")
    try:
        with open(tmp, "wb") as handle:
            write(handle)
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    return path


def _merge(parts: Sequence[Part]) -> tuple[np.ndarray, np.ndarray]:
    points, faces, offset = [], [], 0
    for _, p, f in parts:
        points.append(np.asarray(p, np.float32))
        faces.append(np.asarray(f, np.int64) + offset)
        offset += len(p)
    if not points:
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64)
    return np.concatenate(points), np.concatenate(faces)


# -- STL --------------------------------------------------------------------------

_STL_RECORD = np.dtype([("normal", "<f4", (3,)), ("corners", "<f4", (3, 3)), ("attr", "<u2")])


def write_stl(path: str | Path, parts: Sequence[Part]) -> Path:
    """Binary STL of one or more surfaces (STL has no names: they are merged)."""
    points, faces = _merge(parts)
    corners = points[faces]
    normal = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    length = np.linalg.norm(normal, axis=1, keepdims=True)
    records = np.zeros(len(faces), _STL_RECORD)
    records["normal"] = normal / np.maximum(length, 1e-30)
    records["corners"] = corners
    header = b"Strata binary STL".ljust(80, b" ")

    def write(handle) -> None:
        handle.write(header)
        handle.write(struct.pack("<I", len(faces)))
        handle.write(records.tobytes())

    return _atomic_write(Path(path), write)


def read_stl(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Points (welded) and triangles of a binary STL file."""
    data = Path(path).read_bytes()
    count = struct.unpack_from("<I", data, 80)[0]
    records = np.frombuffer(data, _STL_RECORD, count=count, offset=84)
    corners = records["corners"].reshape(-1, 3)
    points, inverse = np.unique(corners, axis=0, return_inverse=True)
    return points, inverse.reshape(-1, 3)


# -- OBJ --------------------------------------------------------------------------


def write_obj(path: str | Path, parts: Sequence[Part]) -> Path:
    """Wavefront OBJ with one named object per surface."""

    def write(handle) -> None:
        handle.write(b"# Strata surfaces; x, y, z in the job's unit\n")
        offset = 1
        for name, p, f in parts:
            p = np.asarray(p, np.float32)
            f = np.asarray(f, np.int64) + offset
            handle.write(f"o {name}\n".encode())
            if len(p):
                handle.write((("v %.6g %.6g %.6g\n" * len(p)) % tuple(p.ravel().tolist())).encode())
            if len(f):
                handle.write((("f %d %d %d\n" * len(f)) % tuple(f.ravel().tolist())).encode())
            offset += len(p)

    return _atomic_write(Path(path), write)


def read_obj(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Points and triangles of an OBJ file (all objects together)."""
    points, faces = [], []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("v "):
                points.append([float(v) for v in line.split()[1:4]])
            elif line.startswith("f "):
                faces.append([int(v.split("/")[0]) - 1 for v in line.split()[1:4]])
    return np.asarray(points, np.float32).reshape(-1, 3), np.asarray(faces, np.int64).reshape(-1, 3)


# -- PLY --------------------------------------------------------------------------

_PLY_FACE = np.dtype([("n", "u1"), ("v", "<i4", (3,))])


def write_ply(path: str | Path, parts: Sequence[Part]) -> Path:
    """Binary little-endian PLY of one or more surfaces (merged)."""
    points, faces = _merge(parts)
    names = ", ".join(name for name, _, _ in parts)
    header = (
        "ply\nformat binary_little_endian 1.0\n"
        f"comment Strata surfaces: {names}\n"
        f"element vertex {len(points)}\nproperty float x\nproperty float y\nproperty float z\n"
        f"element face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n"
    )
    records = np.zeros(len(faces), _PLY_FACE)
    records["n"] = 3
    records["v"] = faces

    def write(handle) -> None:
        handle.write(header.encode("ascii"))
        handle.write(np.ascontiguousarray(points, "<f4").tobytes())
        handle.write(records.tobytes())

    return _atomic_write(Path(path), write)


def read_ply(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Points and triangles of a binary PLY file written by :func:`write_ply`."""
    data = Path(path).read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").splitlines()
    if "format binary_little_endian 1.0" not in header:
        raise ValueError(f"{path}: only binary little-endian PLY is read here")
    counts = {line.split()[1]: int(line.split()[2]) for line in header if line.startswith("element")}
    n_points, n_faces = counts.get("vertex", 0), counts.get("face", 0)
    points = np.frombuffer(data, "<f4", count=3 * n_points, offset=end).reshape(-1, 3)
    records = np.frombuffer(data, _PLY_FACE, count=n_faces, offset=end + 12 * n_points)
    return points.copy(), records["v"].astype(np.int64)


# -- glTF binary ----------------------------------------------------------------


def write_glb(path: str | Path, parts: Sequence[Part], colors: Sequence[str] | None = None) -> Path:
    """glTF 2.0 binary: one mesh node per surface, with its colour as a material."""
    blobs: list[bytes] = []
    accessors, views, meshes, nodes, materials = [], [], [], [], []
    offset = 0

    def add_view(raw: bytes, target: int) -> int:
        nonlocal offset
        views.append({"buffer": 0, "byteOffset": offset, "byteLength": len(raw), "target": target})
        blobs.append(raw + b"\0" * (-len(raw) % 4))
        offset += len(raw) + (-len(raw) % 4)
        return len(views) - 1

    for i, (name, p, f) in enumerate(parts):
        p = np.ascontiguousarray(p, "<f4")
        f = np.ascontiguousarray(f, "<u4")
        pv = add_view(p.tobytes(), 34962)
        fv = add_view(f.tobytes(), 34963)
        accessors.append({
            "bufferView": pv, "componentType": 5126, "count": len(p), "type": "VEC3",
            "min": p.min(axis=0).tolist() if len(p) else [0, 0, 0],
            "max": p.max(axis=0).tolist() if len(p) else [0, 0, 0],
        })
        accessors.append({"bufferView": fv, "componentType": 5125, "count": f.size, "type": "SCALAR"})
        color = (colors[i] if colors and i < len(colors) else "#888888").lstrip("#")
        rgb = [int(color[k:k + 2], 16) / 255.0 for k in (0, 2, 4)]
        materials.append({"name": name, "pbrMetallicRoughness": {"baseColorFactor": rgb + [1.0]}, "doubleSided": True})
        meshes.append({"name": name, "primitives": [{"attributes": {"POSITION": 2 * i}, "indices": 2 * i + 1, "material": i}]})
        nodes.append({"name": name, "mesh": i})
    binary = b"".join(blobs)
    doc = {
        "asset": {"version": "2.0", "generator": "Strata"},
        "scene": 0, "scenes": [{"nodes": list(range(len(nodes)))}],
        "nodes": nodes, "meshes": meshes, "materials": materials,
        "accessors": accessors, "bufferViews": views, "buffers": [{"byteLength": len(binary)}],
    }
    text = json.dumps(doc).encode()
    text += b" " * (-len(text) % 4)

    def write(handle) -> None:
        handle.write(struct.pack("<III", 0x46546C67, 2, 12 + 8 + len(text) + 8 + len(binary)))
        handle.write(struct.pack("<II", len(text), 0x4E4F534A) + text)
        handle.write(struct.pack("<II", len(binary), 0x004E4942) + binary)

    return _atomic_write(Path(path), write)


def read_glb(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Points and triangles of all meshes of a GLB written by :func:`write_glb`."""
    data = Path(path).read_bytes()
    json_len = struct.unpack_from("<I", data, 12)[0]
    doc = json.loads(data[20:20 + json_len])
    binary = data[20 + json_len + 8:]
    parts: list[Part] = []
    for mesh in doc["meshes"]:
        prim = mesh["primitives"][0]
        arrays = []
        for index, dtype in ((prim["attributes"]["POSITION"], "<f4"), (prim["indices"], "<u4")):
            acc = doc["accessors"][index]
            view = doc["bufferViews"][acc["bufferView"]]
            width = 3 if acc["type"] == "VEC3" else 1
            arrays.append(np.frombuffer(binary, dtype, count=acc["count"] * width, offset=view["byteOffset"]))
        parts.append((mesh["name"], arrays[0].reshape(-1, 3), arrays[1].reshape(-1, 3)))
    return _merge(parts)


WRITERS = {"stl": write_stl, "obj": write_obj, "ply": write_ply}
READERS = {"stl": read_stl, "obj": read_obj, "ply": read_ply, "glb": read_glb}


def write_surface_file(path: str | Path, fmt: str, parts: Sequence[Part], colors: Sequence[str] | None = None) -> Path:
    """Write ``parts`` to ``path`` as ``fmt`` (stl, obj, ply or glb)."""
    fmt = fmt.lower()
    if fmt == "glb":
        return write_glb(path, parts, colors)
    if fmt not in WRITERS:
        raise ValueError(f"unknown mesh format {fmt!r}; use one of {', '.join(FORMATS)}")
    return WRITERS[fmt](path, parts)


def read_surface_file(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Points and triangles of a file written here, by its suffix."""
    fmt = Path(path).suffix.lower().lstrip(".")
    if fmt not in READERS:
        raise ValueError(f"{path}: unknown mesh format {fmt!r}")
    return READERS[fmt](path)
