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


#: Block segmented at once (z, y, x): 512 x 512 planes read with a 64-voxel margin waste 36 % on the margin,
#: 256 x 256 ones 56 %.
PREFERRED_BLOCK = (4, 512, 512)


@dataclass
class UNetParams:
    """Settings of a deep model."""

    slices: int = 5
    base: int = 16
    depth: int = 3
    patch: int = 96
    batch: int = 8
    epochs: int = 12
    steps_per_epoch: int = 25
    lr: float = 2e-3
    patience: int = 3
    jitter: float = 0.1
    #: Final fit on all paint, as a fraction of the iterations of the split fit (0: none).
    final_fit: float = 0.25
    #: Learning rate of the final fit, as a fraction of ``lr`` (annealed to 0).
    final_lr: float = 0.25
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


def fold_batch_norm(net):
    """A copy of a network in eval mode with each batch norm folded into the convolution before it."""
    import copy

    import torch
    from torch import nn

    net = copy.deepcopy(net).eval()
    with torch.no_grad():
        for seq in [m for m in net.modules() if isinstance(m, nn.Sequential)]:
            for i in range(len(seq) - 1):
                conv, norm = seq[i], seq[i + 1]
                if not (isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d)):
                    continue
                scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
                fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size,
                                  stride=conv.stride, padding=conv.padding, bias=True).to(conv.weight.device)
                fused.weight.copy_(conv.weight * scale[:, None, None, None])
                bias = conv.bias if conv.bias is not None else torch.zeros_like(norm.bias)
                fused.bias.copy_(norm.bias + (bias - norm.running_mean) * scale)
                seq[i], seq[i + 1] = fused, nn.Identity()
    return net


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


class _CentreSampler:
    """Patch centres: a class drawn uniformly, then one of its painted pixels (any plane).

    Balancing the centres, not the loss, lets a rare class be seen often
    without shifting where the network puts a boundary between classes.
    """

    def __init__(self, planes: list[_Plane], n_classes: int) -> None:
        self.by_class = []
        for c in range(n_classes):
            where = [(i, np.flatnonzero(p.labels.ravel() == c)) for i, p in enumerate(planes)]
            plane_ids = np.concatenate([np.full(len(w), i, np.int32) for i, w in where])
            pixels = np.concatenate([w for _, w in where])
            if len(pixels):
                self.by_class.append((plane_ids, pixels))
        self.widths = [p.labels.shape[1] for p in planes]

    def draw(self, rng: np.random.Generator) -> tuple[int, int, int]:
        plane_ids, pixels = self.by_class[int(rng.integers(len(self.by_class)))]
        k = int(rng.integers(len(pixels)))
        plane = int(plane_ids[k])
        y, x = divmod(int(pixels[k]), self.widths[plane])
        return plane, y, x


def _patch(plane: _Plane, centre: tuple[int, int], size: int, rng: np.random.Generator, jitter: float):
    h, w = plane.labels.shape
    cy, cx = centre
    y0 = int(np.clip(cy - size // 2 + rng.integers(-size // 4, size // 4 + 1), 0, h - size))
    x0 = int(np.clip(cx - size // 2 + rng.integers(-size // 4, size // 4 + 1), 0, w - size))
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


def _predict_planes(net, images: np.ndarray, multiple: int, device, batch: int = 2) -> np.ndarray:
    """Class scores argmax (N, H, W) for (N, slices, H, W) normalised images."""
    import torch

    out = []
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            x = torch.from_numpy(np.ascontiguousarray(images[i : i + batch])).to(device)
            x, h, w = _pad_to(x, multiple)
            x = x.contiguous(memory_format=torch.channels_last)
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
    """Train a U-Net on the paint of ``array`` (a volume's level 0).

    First on the paint of most slices, stopping early on the held-out
    slices' loss, which also gives the honest (held-out) metrics; then a
    final fit continues on the paint of all slices, so the saved model has
    seen all of it.
    """
    import copy

    import torch

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
        net = build_network(params.slices, len(classes), params.base, params.depth)
        net = net.to(device, memory_format=torch.channels_last)  # faster convolutions on CPUs
        size_cap = min(min(p.labels.shape) for p in train + val)
        size = max(params.multiple, min(params.patch, size_cap) // params.multiple * params.multiple)
        total = params.epochs * params.steps_per_epoch
        final_steps = _final_fit_steps(params, total) if val else 0
        steps = _Steps(net, params, size, device, rng, ctx, planned=total + final_steps)
        optimiser = torch.optim.AdamW(net.parameters(), lr=params.lr, weight_decay=1e-4)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimiser, params.lr, total_steps=total)
        sampler = _CentreSampler(train, len(classes))
        best_loss, best_state, bad, stopped = math.inf, None, 0, ""
        history = []
        for epoch in range(params.epochs):
            train_loss = steps.run(train, sampler, optimiser, scheduler, params.steps_per_epoch)
            val_loss = _validation_loss(net, val or train, params.multiple, device)
            history.append({"epoch": epoch + 1, "train_loss": round(train_loss, 4), "val_loss": round(val_loss, 4)})
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
        ctx.report(steps.fraction(), "measuring held-out accuracy")
        held = _plane_confusion(net, val, params.multiple, device, len(classes)) if val else None
        final_note = "no slice held out: the model is the one trained on all paint"
        if val and final_steps:
            final_steps = _final_fit_steps(params, steps.done)
            steps.planned = steps.done + final_steps
            everything = train + val
            optimiser = torch.optim.AdamW(net.parameters(), lr=params.lr * params.final_lr, weight_decay=1e-4)
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, final_steps)
            loss = steps.run(everything, _CentreSampler(everything, len(classes)), optimiser, scheduler, final_steps)
            history.append({"final_fit": final_steps, "train_loss": round(loss, 4)})
            final_note = f"final fit: {final_steps} more iterations on the paint of all {len(everything)} slices"
            net.eval()
        trained = _plane_confusion(net, train + val, params.multiple, device, len(classes))
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
        "iterations": steps.done,
        "history": history,
        "early_stop": stopped,
        "final_fit": final_note,
        "train_seconds": round(time.perf_counter() - t0, 2),
    }
    ctx.report(1.0, "trained")
    return model, metrics


def _final_fit_steps(params: UNetParams, done: int) -> int:
    """Iterations of the final fit on all paint: a fraction of those done, at least one epoch's worth."""
    if params.final_fit <= 0:
        return 0
    return max(1, min(params.steps_per_epoch, done), int(round(done * params.final_fit)))


class _Steps:
    """Optimisation steps on patches of painted planes, with progress (iterations and loss) and cancel."""

    def __init__(self, net, params: UNetParams, size: int, device, rng, ctx: ProgressContext, planned: int) -> None:
        self.net, self.params, self.size, self.device, self.rng, self.ctx = net, params, size, device, rng, ctx
        self.planned = max(1, planned)
        self.done = 0

    def fraction(self) -> float:
        return min(1.0, self.done / self.planned) * 0.95

    def run(self, planes: list[_Plane], sampler: "_CentreSampler", optimiser, scheduler, count: int) -> float:
        """``count`` steps; returns the mean loss."""
        import torch
        import torch.nn.functional as F

        self.net.train()
        running = 0.0
        for _ in range(count):
            self.ctx.check_cancelled()
            picks = [sampler.draw(self.rng) for _ in range(self.params.batch)]
            pairs = [_patch(planes[i], (y, x), self.size, self.rng, self.params.jitter) for i, y, x in picks]
            x = torch.from_numpy(np.stack([a for a, _ in pairs])).to(self.device)
            x = x.contiguous(memory_format=torch.channels_last)
            y = torch.from_numpy(np.stack([b for _, b in pairs])).to(self.device)
            # unweighted: class balance comes from the patch centres, so boundaries stay where the paint puts them
            loss = F.cross_entropy(self.net(x), y, ignore_index=-1)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            scheduler.step()
            self.done += 1
            value = float(loss.detach())
            running += value
            self.ctx.report(self.fraction(), f"iteration {self.done}/{self.planned}, loss {value:.3f}")
        return running / max(1, count)


def _validation_loss(net, planes: list[_Plane], multiple: int, device) -> float:
    import torch
    import torch.nn.functional as F

    net.eval()
    total, count = 0.0, 0
    with torch.inference_mode():
        for p in planes:
            x = torch.from_numpy(np.ascontiguousarray(p.image[None])).to(device)
            x, h, w = _pad_to(x, multiple)
            x = x.contiguous(memory_format=torch.channels_last)
            y = torch.from_numpy(p.labels[None]).to(device)
            n = int((y >= 0).sum())
            total += float(F.cross_entropy(net(x)[:, :, :h, :w], y, ignore_index=-1)) * n
            count += n
    net.train()
    return total / max(1, count)


class UNetModel:
    """A trained U-Net with its normalisation and classes."""

    kind = "deep"
    channels = 1

    def __init__(self, net, params: UNetParams, norm: tuple[float, float], classes: list[int]) -> None:
        import torch

        self.net = net.eval()
        #: The network for prediction: batch norm folded into the convolutions, channels-last (faster on CPUs).
        self.inference_net = fold_batch_norm(net).to(memory_format=torch.channels_last)
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

    def preferred_block(self) -> tuple[int, int, int]:
        """Wide blocks: the margin read around a block (the network's reach) costs less the wider it is."""
        return PREFERRED_BLOCK

    def predict_padded(self, padded: np.ndarray) -> np.ndarray:
        """Labels of the centre of a block read with :meth:`margin`."""
        mz, my, mx = self.margin()
        lo, hi = self.norm
        data = (padded.astype(np.float32) - lo) / (hi - lo)
        depth = data.shape[0] - 2 * mz
        k = self.params.slices
        stacks = np.stack([data[z : z + k] for z in range(depth)])
        device = next(self.inference_net.parameters()).device
        pred = _predict_planes(self.inference_net, stacks, self.params.multiple, device)
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
        return cls(net.to(_device()), params, tuple(meta["normalisation"]["values"]), classes)
