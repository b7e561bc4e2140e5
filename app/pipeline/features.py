"""Per-voxel filter features for the quick classifier, computed with torch.

Per scale ``s``: Gaussian smoothing, gradient magnitude, Laplacian of Gaussian,
difference of Gaussians (previous scale minus this one), Hessian eigenvalues and
structure-tensor eigenvalues, plus the normalised intensity itself. Gaussians are
separable valid convolutions; derivatives are central differences of the
smoothed image, which makes each scale cost two (2D) or three (3D) passes.

``mode="2d"`` filters each z-plane on its own (no reach along z); ``"3d"``
filters in all three axes. Blocks are read with a margin of :meth:`FeatureSpec.reach`
voxels (reflected at the volume's faces), so a voxel's features do not depend
on the block it was computed in.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

DEFAULT_SCALES: tuple[float, ...] = (0.7, 1.6, 3.5, 5.0)


def kernel_radius(sigma: float, truncate: float) -> int:
    return max(1, int(math.ceil(truncate * sigma)))


@dataclass(frozen=True)
class FeatureSpec:
    """Which features: the scales (voxels), 2D-per-plane or 3D, the kernels' truncation."""

    scales: tuple[float, ...] = DEFAULT_SCALES
    mode: str = "2d"
    truncate: float = 3.0

    def __post_init__(self) -> None:
        if self.mode not in ("2d", "3d"):
            raise ValueError(f"feature mode must be '2d' or '3d', not {self.mode!r}")
        if not self.scales or any(s <= 0 for s in self.scales):
            raise ValueError("feature scales must be positive numbers")
        object.__setattr__(self, "scales", tuple(sorted(float(s) for s in self.scales)))

    @property
    def axes(self) -> tuple[int, ...]:
        """Axes of a (z, y, x) block the filters run along."""
        return (1, 2) if self.mode == "2d" else (0, 1, 2)

    def reach(self) -> int:
        """Voxels each feature looks beyond a voxel along a filtered axis."""
        best = 0
        previous_radius = 0
        for s in self.scales:
            r = kernel_radius(s, self.truncate)
            # structure tensor: gradient of the previous scale, smoothed at this one
            best = max(best, r + 1, previous_radius + 1 + r)
            previous_radius = r
        return best

    def margin(self) -> tuple[int, int, int]:
        """Margin (z, y, x) a block is read with."""
        r = self.reach()
        return (0 if self.mode == "2d" else r, r, r)

    def names(self) -> list[str]:
        ndim = len(self.axes)
        names = ["intensity"]
        for s in self.scales:
            names += [f"gauss {s:g}", f"gradient {s:g}", f"LoG {s:g}", f"DoG {s:g}"]
            names += [f"hessian ev{i} {s:g}" for i in range(ndim)]
            names += [f"structure ev{i} {s:g}" for i in range(ndim)]
        return names

    @property
    def count(self) -> int:
        return len(self.names())

    def to_dict(self) -> dict:
        return asdict(self) | {"scales": list(self.scales)}

    @classmethod
    def from_dict(cls, data: dict) -> "FeatureSpec":
        return cls(tuple(data.get("scales", DEFAULT_SCALES)), data.get("mode", "2d"), float(data.get("truncate", 3.0)))


def parse_scales(text: str | Sequence[float] | None) -> tuple[float, ...]:
    """``"0.7,1.6,3.5"`` -> (0.7, 1.6, 3.5); None -> the defaults."""
    if text is None or text == "":
        return DEFAULT_SCALES
    if isinstance(text, str):
        try:
            values = tuple(float(p) for p in text.replace(" ", ",").split(",") if p)
        except ValueError:
            raise ValueError(f"scales must be numbers separated by commas, not {text!r}") from None
    else:
        values = tuple(float(v) for v in text)
    if not values or any(v <= 0 or v > 64 for v in values):
        raise ValueError(f"scales must be between 0 and 64 voxels, not {text!r}")
    return values


# -- intensity normalisation ------------------------------------------------
def intensity_range(volume, low: float = 0.5, high: float = 99.5) -> tuple[float, float]:
    """Percentiles of a volume's intensities, from its coarsest level (small, read at once)."""
    coarse = np.asarray(volume.levels[-1][...], dtype=np.float32)
    lo, hi = np.percentile(coarse, [low, high])
    if hi <= lo:
        hi = lo + 1.0
    return float(lo), float(hi)


# -- reading blocks ---------------------------------------------------------
def read_padded(array, start: Sequence[int], stop: Sequence[int], margin: Sequence[int]) -> np.ndarray:
    """``array[start:stop]`` grown by ``margin`` per axis, reflected beyond the array's faces."""
    shape = array.shape
    lo = [max(0, a - m) for a, m in zip(start, margin)]
    hi = [min(n, b + m) for b, m, n in zip(stop, margin, shape)]
    data = np.asarray(array[tuple(slice(a, b) for a, b in zip(lo, hi))])
    pads = [(m - (a - l), m - (h - b)) for a, b, l, h, m in zip(start, stop, lo, hi, margin)]
    if any(p for pair in pads for p in pair):
        mode = "reflect" if all(n > 1 for n, pair in zip(data.shape, pads) if any(pair)) else "edge"
        data = _pad_reflect(data, pads, mode)
    return data


def _pad_reflect(data: np.ndarray, pads, mode: str) -> np.ndarray:
    # np.pad reflects repeatedly when a pad is wider than the data; that is what we want.
    return np.pad(data, pads, mode=mode)


# -- the filters -----------------------------------------------------------
def _gauss_kernel(sigma: float, truncate: float):
    import torch

    r = kernel_radius(sigma, truncate)
    x = torch.arange(-r, r + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).to(torch.float32)


class _Filters:
    """Valid separable Gaussians and central differences over chosen axes of (N, D, H, W)."""

    def __init__(self, axes: tuple[int, ...], truncate: float, device) -> None:
        self.axes = axes
        self.truncate = truncate
        self.device = device
        self._kernels: dict[float, object] = {}

    def kernel(self, sigma: float):
        if sigma not in self._kernels:
            self._kernels[sigma] = _gauss_kernel(sigma, self.truncate).to(self.device)
        return self._kernels[sigma]

    def gauss(self, t, sigma: float):
        """Smooth (N, D, H, W) along the filter axes; each shrinks by 2 * radius."""
        k = self.kernel(sigma)
        for axis in self.axes:
            t = self.conv_axis(t, k, axis)
        return t

    @staticmethod
    def conv_axis(t, k, axis: int):
        """Valid 1D convolution of (N, D, H, W) along axis 0 (D), 1 (H) or 2 (W).

        Done as a depthwise conv2d (one group per plane), which is an order of
        magnitude faster on CPUs than a one-channel convolution.
        """
        import torch.nn.functional as F

        n, d, h, w = t.shape
        size = k.numel()
        if axis == 0:
            out = F.conv2d(t.reshape(1, n, d, h * w), k.view(1, 1, size, 1).expand(n, 1, size, 1), groups=n)
            return out.reshape(n, d - size + 1, h, w)
        c = n * d
        shape = (1, 1, size, 1) if axis == 1 else (1, 1, 1, size)
        out = F.conv2d(t.reshape(1, c, h, w), k.view(shape).expand(c, *shape[1:]), groups=c)
        return out.reshape(n, d, *out.shape[-2:])

    @staticmethod
    def diff(t, axis: int):
        """Central difference along an axis of (N, D, H, W) (shrinks it by 2)."""
        a = 1 + axis
        n = t.shape[a]
        return (t.narrow(a, 2, n - 2) - t.narrow(a, 0, n - 2)).mul_(0.5)

    @staticmethod
    def diff2(t, axis: int):
        a = 1 + axis
        n = t.shape[a]
        out = t.narrow(a, 2, n - 2) + t.narrow(a, 0, n - 2)
        return out.sub_(t.narrow(a, 1, n - 2), alpha=2.0)

    def crop(self, t, width: int):
        """Remove ``width`` voxels from both ends of each filter axis of (N, D, H, W)."""
        if width < 0:
            raise ValueError("negative crop")
        for axis in self.axes:
            a = 1 + axis
            t = t.narrow(a, width, t.shape[a] - 2 * width)
        return t

    def crop_to(self, t, size: Sequence[int]):
        """Centre-crop the filter axes of (N, D, H, W) to ``size`` (one per axis of D, H, W)."""
        for axis in self.axes:
            a = 1 + axis
            extra = t.shape[a] - size[axis]
            t = t.narrow(a, extra // 2, size[axis])
        return t


def _eigen2_into(a, b, c, larger, smaller) -> None:
    """Eigenvalues of [[a, c], [c, b]] elementwise, written into ``larger`` and ``smaller``.

    (a + b) / 2 +- sqrt(((a - b) / 2)^2 + c^2), with exactly rounded operations
    only, so a voxel's value does not depend on where it lies in a block.
    """
    import torch

    torch.add(a, b, out=larger)
    larger.mul_(0.5)  # the mean
    root = torch.sub(a, larger)  # (a - b) / 2
    root.square_().addcmul_(c, c).sqrt_()
    torch.sub(larger, root, out=smaller)
    larger.add_(root)


def _eigen3_into(xx, yy, zz, xy, xz, yz, outs) -> None:
    """Eigenvalues (descending) of symmetric 3x3 matrices, elementwise, written into ``outs``.

    Closed form (the trigonometric solution of the characteristic cubic), in
    float64: an order of magnitude faster than a batched ``eigvalsh``.
    """
    import torch

    a, b, c = (t.double() for t in (xx, yy, zz))
    d, e, f = (t.double() for t in (xy, xz, yz))  # (x, y), (x, z), (y, z)
    q = (a + b + c) / 3.0
    off = d * d + e * e + f * f
    a, b, c = a - q, b - q, c - q
    p = torch.sqrt((a * a + b * b + c * c + 2.0 * off) / 6.0)
    # det(A - qI) / (2 p^3), the cosine of three times the angle
    det = a * (b * c - f * f) - d * (d * c - f * e) + e * (d * f - b * e)
    r = torch.where(p > 0, det / (2.0 * p.clamp_min(1e-300) ** 3), torch.zeros_like(p)).clamp_(-1.0, 1.0)
    phi = torch.acos(r) / 3.0
    first = q + 2.0 * p * torch.cos(phi)
    last = q + 2.0 * p * torch.cos(phi + 2.0 * math.pi / 3.0)
    outs[0].copy_(first)
    outs[1].copy_(3.0 * q - first - last)
    outs[2].copy_(last)


def compute_features(padded: np.ndarray, spec: FeatureSpec, norm: tuple[float, float], device=None) -> np.ndarray:
    """Features of the centre of a block read with :meth:`FeatureSpec.margin`.

    ``padded`` is (z, y, x) raw intensities; returns float32 (F, z', y', x') with
    the margin removed, C-contiguous, so ``feats.reshape(F, -1).T`` is one row per
    voxel without a copy.
    """
    import torch

    with torch.no_grad():
        feats = compute_features_torch(torch.from_numpy(np.ascontiguousarray(padded)), spec, norm, device)
    return feats.cpu().numpy()


def compute_feature_rows(
    padded: np.ndarray, spec: FeatureSpec, norm: tuple[float, float], device=None
) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Features of the centre of a padded block as rows (z' * y' * x', F) float32, and (z', y', x').

    The rows are a transposed view of the (F, voxels) feature maps (no copy):
    scikit-learn's trees walk such strided rows as fast as contiguous ones.
    """
    feats = compute_features(padded, spec, norm, device)
    return feats.reshape(feats.shape[0], -1).T, feats.shape[1:]  # type: ignore[return-value]


def compute_features_torch(padded, spec: FeatureSpec, norm: tuple[float, float], device=None):
    """Features (F, z', y', x') float32 of a padded torch block (z, y, x), the margin removed.

    Each feature is written into its slot of one preallocated output as soon as it
    is computed (in-place elementwise work), so few intermediates are alive at once.
    """
    import torch

    device = device or default_device()
    lo, hi = norm
    image = padded.to(device=device, dtype=torch.float32, copy=True)
    image.sub_(lo).mul_(1.0 / (hi - lo))
    image = image.unsqueeze(0)
    margin = spec.margin()
    size = [n - 2 * m for n, m in zip(image.shape[1:], margin)]
    if min(size) <= 0:
        raise ValueError("block smaller than its margin")
    out = torch.empty((spec.count, *size), dtype=torch.float32, device=device)
    slots = iter(out.unsqueeze(1))  # each (1, z', y', x')
    f = _Filters(spec.axes, spec.truncate, device)
    axes = spec.axes
    pairs = [(a, b) for i, a in enumerate(axes) for b in axes[i:]]
    next(slots).copy_(f.crop_to(image, size))
    radii = [kernel_radius(s, spec.truncate) for s in spec.scales] + [0]

    def extent(grow: int) -> list[int]:
        return [n + 2 * grow for n in size]

    def eigenvalues(tensor: dict) -> None:
        """Eigenvalues of the symmetric matrices given by their (a, b) components, into the next slots."""
        if len(axes) == 2:
            a, b = axes
            _eigen2_into(tensor[(a, a)], tensor[(b, b)], tensor[(a, b)], next(slots), next(slots))
        else:
            z, y, x = axes
            _eigen3_into(tensor[(x, x)], tensor[(y, y)], tensor[(z, z)], tensor[(y, x)], tensor[(z, x)],
                         tensor[(z, y)], [next(slots) for _ in axes])

    # Work only on what each scale needs (all crops are centred, so maps stay aligned):
    # a smoothed image is differenced (1 voxel) and, as the next scale's "previous",
    # differenced and smoothed at the next scale (1 + its radius voxels).
    previous = f.crop_to(image, extent(1 + radii[0]))  # the previous scale's smoothed image
    for level, s in enumerate(spec.scales):
        g = f.gauss(f.crop_to(image, extent(1 + radii[level + 1] + radii[level])), s)
        gc = f.crop_to(g, size)
        next(slots).copy_(gc)
        # derivatives by central differences of the smoothed image (only the voxels
        # they need); all shrink symmetrically, so centre-cropping keeps them aligned
        near = f.crop_to(g, extent(1))
        grad = next(slots)
        for i, a in enumerate(axes):
            d = f.crop_to(f.diff(near, a), size)
            if i == 0:
                torch.mul(d, d, out=grad)
            else:
                grad.addcmul_(d, d)
        grad.sqrt_()
        hessian = {(a, a): f.crop_to(f.diff2(near, a), size) for a in axes}
        log = next(slots)
        torch.add(hessian[(axes[0], axes[0])], hessian[(axes[1], axes[1])], out=log)
        for a in axes[2:]:
            log.add_(hessian[(a, a)])
        torch.sub(f.crop_to(previous, size), gc, out=next(slots))  # difference of Gaussians
        for a, b in pairs:
            if a != b:
                hessian[(a, b)] = f.crop_to(f.diff(f.diff(near, a), b), size)
        eigenvalues(hessian)
        del hessian
        # structure tensor: gradient of the previous scale, products smoothed at s
        inner = [n - (2 if i in axes else 0) for i, n in enumerate(previous.shape[1:])]
        pg = {a: f.crop_to(f.diff(previous, a), inner) for a in axes}
        first = pg[axes[0]]
        products = torch.empty((len(pairs),) + tuple(first.shape[1:]), dtype=first.dtype, device=first.device)
        for j, (a, b) in enumerate(pairs):
            torch.mul(pg[a], pg[b], out=products[j : j + 1])  # no separate concatenation
        del pg
        smooth = f.gauss(products, s)
        del products
        eigenvalues({k: f.crop_to(smooth[i : i + 1], size) for i, k in enumerate(pairs)})
        previous = g
    return out


def default_device():
    import torch

    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def block_features(array, start, stop, spec: FeatureSpec, norm: tuple[float, float], device=None) -> np.ndarray:
    """Features (F, z, y, x) of ``array[start:stop]``, read with the spec's margin."""
    padded = read_padded(array, start, stop, spec.margin())
    return compute_features(padded, spec, norm, device)
