"""The deep model: a small 2D U-Net over 2.5D input (neighbouring slices as channels).

Training uses only painted pixels (unpainted ones are ignored by the loss), on
patches from the painted slices of all three planes, with flips, 90-degree
turns and intensity jitter, and stops early on paint of held-out slices. It
runs on a GPU when there is one and on all cores otherwise.

Segmentation predicts z-planes. A block is read with a margin at least the
network's reach (and a multiple of its pooling), and the network uses batch
norm in inference mode only, so labels do not depend on the block size.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from app.core.progress import ProgressContext, StageError
from app.pipeline.metrics import accuracy, confusion, scores
from app.pipeline.training_data import Paint, check_paint


@dataclass
class UNetParams:
    """Settings of a deep model."""

    slices: int = 5
    base: int = 16
    depth: int = 3
    patch: int = 96
    batch: int = 8
    epochs: int = 12
    steps_per_epoch: int = 50
    lr: float = 2e-3
    patience: int = 3
    jitter: float = 0.1
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "UNetParams":
        return cls(**{k: type(getattr(cls(), k))(v) for k, v in data.items() if k in cls.__dataclass_fields__})

    @property
    def multiple(self) -> int:
        return 2**self.depth

    @property
    def min_side(self) -> int:
        return 2 * self.multiple


def reach(depth: int) -> int:
    """Pixels a U-Net of this depth (two 3x3 convs per level, 2x2 pool/up-conv) looks beyond a pixel."""
    return 8 * 2**depth - 6


def margin_for(depth: int) -> int:
    m = 2**depth
    return int(math.ceil(reach(depth) / m) * m)


def build_network(in_channels: int, classes: int, base: int, depth: int):
    import torch
    from torch import nn

    def block(cin: int, cout: int):
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        )

    class UNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            widths = [base * 2**i for i in range(depth + 1)]
            self.down = nn.ModuleList()
            cin = in_channels
            for w in widths[:-1]:
                self.down.append(block(cin, w))
                cin = w
            self.bottom = block(widths[-2], widths[-1])
            self.up = nn.ModuleList()
            self.merge = nn.ModuleList()
            for i in reversed(range(depth)):
                self.up.append(nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2))
                self.merge.append(block(2 * widths[i], widths[i]))
            self.head = nn.Conv2d(widths[0], classes, 1)
            self.pool = nn.MaxPool2d(2)

        def forward(self, x):
            skips = []
            for layer in self.down:
                x = layer(x)
                skips.append(x)
                x = self.pool(x)
            x = self.bottom(x)
            for up, merge in zip(self.up, self.merge):
                x = up(x)
                x = merge(torch.cat([x, skips.pop()], 1))
            return self.head(x)

    return UNet()


def _device():
    import torch

    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


# -- planes of training data ---------------------------------------------------
def read_plane_stack(array, axis: int, index: int, slices: int) -> np.ndarray:
    """``slices`` neighbouring planes around (axis, index) as (slices, H, W) raw values (reflected at faces)."""
    n = array.shape[axis]
    half = slices // 2
    lo, hi = max(0, index - half), min(n, index + half + 1)
    sel = [slice(None)] * 3
    sel[axis] = slice(lo, hi)
    data = np.moveaxis(np.asarray(array[tuple(sel)]), axis, 0)
    pad = (half - (index - lo), half - (hi - 1 - index))
    if any(pad):
        data = np.pad(data, [pad, (0, 0), (0, 0)], mode="reflect" if data.shape[0] > 1 else "edge")
    return data


@dataclass
class _Plane:
    image: np.ndarray  # (slices, H, W) float32, normalised
    labels: np.ndarray  # (H, W) int64 class index, -1 where not used
    name: str


def _plane_labels(paint: Paint, mask: np.ndarray, axis: int, shape2d, class_index) -> np.ndarray:
    labels = np.full(shape2d, -1, dtype=np.int64)
    coords = paint.coords[mask]
    other = [a for a in range(3) if a != axis]
    labels[coords[:, other[0]], coords[:, other[1]]] = class_index[paint.labels[mask]]
    return labels


def _planes(array, paint: Paint, params: UNetParams, norm, classes: list[int]):
    """Training and held-out planes (by painted slice; one slice: split in halves)."""
    from app.pipeline.training_data import slice_folds

    class_index = np.full(256, -1, dtype=np.int64)
    class_index[classes] = np.arange(len(classes))
    lo, hi = norm
    shape = array.shape
    usable = [
        i for i, (axis, _) in enumerate(paint.planes)
        if min(s for a, s in enumerate(shape) if a != axis) >= params.min_side
    ]
    n = len(usable)
    rng = np.random.default_rng(params.seed)
    if n >= 2:
        order = rng.permutation(usable)
        held = set(int(i) for i in order[: max(1, n // 4)])
        assignments = [("val" if i in held else "train", paint.plane_ids == i, i) for i in usable]
    elif n == 1:
        only = paint.subset(paint.plane_ids == usable[0])
        fold = slice_folds(only, 2, params.seed)[0]
        mask = paint.plane_ids == usable[0]
        train_mask, test_mask = mask.copy(), mask.copy()
        train_mask[mask] = fold.train
        test_mask[mask] = fold.test
        assignments = [("train", train_mask, usable[0]), ("val", test_mask, usable[0])]
    else:
        assignments = []
    train, val = [], []
    stacks: dict[int, np.ndarray] = {}
    for role, mask, plane in assignments:
        axis, index = paint.planes[plane]
        if plane not in stacks:
            raw = read_plane_stack(array, axis, index, params.slices).astype(np.float32)
            stacks[plane] = (raw - lo) / (hi - lo)
        image = stacks[plane]
        if min(image.shape[1:]) < params.min_side:
            continue
        labels = _plane_labels(paint, mask, axis, image.shape[1:], class_index)
        if (labels >= 0).any():
            (val if role == "val" else train).append(_Plane(image, labels, f"{'zyx'[axis]}={index}"))
    return train, val


def _patch(plane: _Plane, size: int, rng: np.random.Generator, jitter: float):
    h, w = plane.labels.shape
    ys, xs = np.nonzero(plane.labels >= 0)
    k = rng.integers(len(ys))
    y0 = int(np.clip(ys[k] - size // 2 + rng.integers(-size // 4, size // 4 + 1), 0, h - size))
    x0 = int(np.clip(xs[k] - size // 2 + rng.integers(-size // 4, size // 4 + 1), 0, w - size))
    img = plane.image[:, y0 : y0 + size, x0 : x0 + size]
    lab = plane.labels[y0 : y0 + size, x0 : x0 + size]
    turns = int(rng.integers(4))
    img, lab = np.rot90(img, turns, (1, 2)), np.rot90(lab, turns)
    if rng.random() < 0.5:
        img, lab = img[:, :, ::-1], lab[:, ::-1]
    if rng.random() < 0.5:
        img = img[::-1]  # the slices' order
    img = img * (1.0 + jitter * rng.uniform(-1, 1)) + jitter * rng.uniform(-1, 1)
    return np.ascontiguousarray(img, dtype=np.float32), np.ascontiguousarray(lab)


def _pad_to(x, multiple: int):
    """Pad the last two axes of (N, C, H, W) at their ends up to a multiple (reflect)."""
    import torch.nn.functional as F

    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, h, w


def _predict_planes(net, images: np.ndarray, multiple: int, device, batch: int = 4) -> np.ndarray:
    """Class scores argmax (N, H, W) for (N, slices, H, W) normalised images."""
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = torch.from_numpy(np.ascontiguousarray(images[i : i + batch])).to(device)
            x, h, w = _pad_to(x, multiple)
            out.append(net(x)[:, :, :h, :w].argmax(1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0,) + images.shape[2:], dtype=np.int64)


def _plane_confusion(net, planes: list[_Plane], multiple: int, device, n_classes: int) -> np.ndarray:
    counts = np.zeros((n_classes, n_classes), dtype=np.int64)
    idx = list(range(n_classes))
    for p in planes:
        pred = _predict_planes(net, p.image[None], multiple, device)[0]
        counts += confusion(np.where(p.labels >= 0, p.labels + 1, 0), pred + 1, [i + 1 for i in idx])
    return counts


def train_unet(
    array,
    paint: Paint,
    params: UNetParams,
    norm: tuple[float, float],
    ctx: ProgressContext | None = None,
    where: str = "volume",
) -> tuple["UNetModel", dict]:
    """Train a U-Net on the paint of ``array`` (a volume's level 0)."""
    import copy

    import torch
    import torch.nn.functional as F

    from app.pipeline.quick import cpu_count

    ctx = ctx or ProgressContext()
    check_paint(paint, where)
    if min(array.shape[1:]) < params.min_side:
        raise StageError(
            f"{where}: the volume {tuple(array.shape)} is too small for the deep model's input "
            f"(slices of at least {params.min_side} x {params.min_side} voxels); use the quick model"
        )
    classes = paint.classes
    t0 = time.perf_counter()
    ctx.report(0.0, "reading the painted slices")
    train, val = _planes(array, paint, params, norm, classes)
    if not train:
        raise StageError(f"{where}: no painted slice is large enough for the deep model ({params.min_side} voxels a side)")
    device = _device()
    saved_threads = torch.get_num_threads()
    torch.set_num_threads(cpu_count())
    torch.manual_seed(params.seed)
    rng = np.random.default_rng(params.seed)
    try:
        net = build_network(params.slices, len(classes), params.base, params.depth).to(device)
        counts = np.bincount(np.concatenate([p.labels[p.labels >= 0] for p in train]), minlength=len(classes))
        weights = torch.tensor(counts.sum() / np.maximum(counts, 1) / len(classes), dtype=torch.float32)
        weights = weights.clamp(max=20.0).to(device)
        optimiser = torch.optim.AdamW(net.parameters(), lr=params.lr, weight_decay=1e-4)
        total = params.epochs * params.steps_per_epoch
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimiser, params.lr, total_steps=total)
        size_cap = min(min(p.labels.shape) for p in train)
        size = max(params.multiple, min(params.patch, size_cap) // params.multiple * params.multiple)
        plane_weights = np.array([(p.labels >= 0).sum() for p in train], dtype=float)
        plane_weights /= plane_weights.sum()
        best_loss, best_state, bad, step, stopped = math.inf, None, 0, 0, ""
        history = []
        for epoch in range(params.epochs):
            net.train()
            running = 0.0
            for _ in range(params.steps_per_epoch):
                ctx.check_cancelled()
                picks = rng.choice(len(train), params.batch, p=plane_weights)
                pairs = [_patch(train[i], size, rng, params.jitter) for i in picks]
                x = torch.from_numpy(np.stack([a for a, _ in pairs])).to(device)
                y = torch.from_numpy(np.stack([b for _, b in pairs])).to(device)
                loss = F.cross_entropy(net(x), y, weight=weights, ignore_index=-1)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                scheduler.step()
                step += 1
                running += float(loss.detach())
                ctx.report(step / total * 0.95, f"iteration {step}/{total}, loss {float(loss.detach()):.3f}")
            val_loss = _validation_loss(net, val or train, params.multiple, device, weights)
            history.append({"epoch": epoch + 1, "train_loss": round(running / params.steps_per_epoch, 4),
                            "val_loss": round(val_loss, 4)})
            if val_loss < best_loss - 1e-4:
                best_loss, best_state, bad = val_loss, copy.deepcopy(net.state_dict()), 0
            else:
                bad += 1
                if bad >= params.patience:
                    stopped = f"stopped early after epoch {epoch + 1} (held-out loss no better for {bad} epochs)"
                    break
        if best_state is not None:
            net.load_state_dict(best_state)
        net.eval()
        ctx.report(0.97, "measuring held-out accuracy")
        held = _plane_confusion(net, val, params.multiple, device, len(classes)) if val else None
        trained = _plane_confusion(net, train, params.multiple, device, len(classes))
    finally:
        torch.set_num_threads(saved_threads)
    net = net.cpu()
    model = UNetModel(net, params, norm, classes)
    metrics = {
        "held_out": scores(held, classes) if held is not None and held.sum() else None,
        "held_out_accuracy": round(accuracy(held), 4) if held is not None and held.sum() else None,
        "held_out_split": "painted slices held out: " + ", ".join(p.name for p in val) if val else "not enough slices",
        "training": scores(trained, classes),
        "training_accuracy": round(accuracy(trained), 4),
        "iterations": step,
        "history": history,
        "early_stop": stopped,
        "train_seconds": round(time.perf_counter() - t0, 2),
    }
    ctx.report(1.0, "trained")
    return model, metrics


def _validation_loss(net, planes: list[_Plane], multiple: int, device, weights) -> float:
    import torch
    import torch.nn.functional as F

    net.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for p in planes:
            x = torch.from_numpy(np.ascontiguousarray(p.image[None])).to(device)
            x, h, w = _pad_to(x, multiple)
            y = torch.from_numpy(p.labels[None]).to(device)
            n = int((y >= 0).sum())
            total += float(F.cross_entropy(net(x)[:, :, :h, :w], y, weight=weights, ignore_index=-1)) * n
            count += n
    net.train()
    return total / max(1, count)


class UNetModel:
    """A trained U-Net with its normalisation and classes."""

    kind = "deep"
    channels = 1

    def __init__(self, net, params: UNetParams, norm: tuple[float, float], classes: list[int]) -> None:
        self.net = net.eval()
        self.params = params
        self.norm = (float(norm[0]), float(norm[1]))
        self.classes = [int(c) for c in classes]

    @property
    def min_side(self) -> int:
        return self.params.min_side

    def margin(self) -> tuple[int, int, int]:
        m = margin_for(self.params.depth)
        return (self.params.slices // 2, m, m)

    def block_multiple(self) -> tuple[int, int, int]:
        return (1, self.params.multiple, self.params.multiple)

    def predict_padded(self, padded: np.ndarray) -> np.ndarray:
        """Labels of the centre of a block read with :meth:`margin`."""
        mz, my, mx = self.margin()
        lo, hi = self.norm
        data = (padded.astype(np.float32) - lo) / (hi - lo)
        depth = data.shape[0] - 2 * mz
        k = self.params.slices
        stacks = np.stack([data[z : z + k] for z in range(depth)])
        device = next(self.net.parameters()).device
        pred = _predict_planes(self.net, stacks, self.params.multiple, device)
        pred = pred[:, my : pred.shape[1] - my, mx : pred.shape[2] - mx]
        return np.asarray(self.classes, dtype=np.uint8)[pred]

    def save(self, folder: str | Path) -> Path:
        import torch

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(self.net.state_dict(), folder / "unet.pt")
        meta = {
            "kind": "deep",
            "normalisation": {"method": "percentile", "low": 0.5, "high": 99.5, "values": list(self.norm)},
            "classes": self.classes,
            "channels": self.channels,
            "params": self.params.to_dict(),
        }
        (folder / "model.json").write_text(json.dumps(meta, indent=2))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "UNetModel":
        import torch

        folder = Path(folder)
        meta = json.loads((folder / "model.json").read_text())
        params = UNetParams.from_dict(meta["params"])
        classes = [int(c) for c in meta["classes"]]
        net = build_network(params.slices, len(classes), params.base, params.depth)
        net.load_state_dict(torch.load(folder / "unet.pt", map_location="cpu", weights_only=True))
        model = cls(net, params, tuple(meta["normalisation"]["values"]), classes)
        model.net.to(_device())
        return model
