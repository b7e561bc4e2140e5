"""The quick model: a random forest on per-voxel filter features (ilastik's manner).

Classes are balanced (equal capped samples per class, and balanced weights),
and the samples are capped so a fit takes seconds. Held-out Dice/IoU come from
k-fold splits by painted slice before the final fit on all paint.

Segmentation speed: features come as one row per voxel (no transpose), and a
block's rows go through the trees in the block's own thread
(:func:`forest_votes`), so block workers do not contend for a forest's pool.
"""

from __future__ import annotations

import itertools
import json
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from app.core.progress import ProgressContext, StageError
from app.pipeline.features import FeatureSpec, compute_feature_rows, intensity_range, read_padded
from app.pipeline.metrics import accuracy, confusion, scores
from app.pipeline.training_data import Paint, check_paint, paint_features, sample_balanced, slice_folds

# scikit-learn warns when a forest predicts from a thread it did not configure (our block workers)
warnings.filterwarnings("ignore", message=r"`sklearn.utils.parallel.delayed` should be used")

#: Rows walked through the trees at a time (bounds the leaf-index arrays).
PREDICT_BATCH = 1 << 18
#: Segmentation reads blocks of this size (a stored chunk is 64 deep) ...
READ_BLOCK = (32, 512, 512)
#: ... and computes features tile by tile, per feature mode: 8 planes of 128 x 256
#: keep torch's depthwise convolutions fast (they vectorise across planes) and the
#: elementwise work in cache; 3D features reach along z too, so their tiles are deeper.
FEATURE_TILE = {"2d": (8, 128, 256), "3d": (16, 128, 128)}


def cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


@dataclass
class QuickParams:
    """Settings of a quick model."""

    scales: tuple[float, ...] = FeatureSpec().scales
    mode: str = "2d"
    trees: int = 8
    depth: int = 12
    samples_per_class: int = 25_000
    folds: int = 3
    seed: int = 0

    def spec(self) -> FeatureSpec:
        return FeatureSpec(tuple(self.scales), self.mode)

    def to_dict(self) -> dict:
        return asdict(self) | {"scales": list(self.scales)}

    @classmethod
    def from_dict(cls, data: dict) -> "QuickParams":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if "scales" in known:
            known["scales"] = tuple(float(s) for s in known["scales"])
        return cls(**known)


def make_forest(params: QuickParams, n_jobs: int | None = None):
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(
        n_estimators=params.trees,
        max_depth=params.depth,
        min_samples_leaf=2,
        max_features="sqrt",
        class_weight="balanced",
        n_jobs=n_jobs or cpu_count(),
        random_state=params.seed,
    )


@dataclass
class QuickModel:
    """A fitted forest with everything needed to segment any volume."""

    spec: FeatureSpec
    norm: tuple[float, float]
    classes: list[int]
    forest: object
    params: dict = field(default_factory=dict)
    kind: str = "quick"
    channels: int = 1

    # -- prediction -------------------------------------------------------
    def margin(self) -> tuple[int, int, int]:
        return self.spec.margin()

    def block_multiple(self) -> tuple[int, int, int]:
        return (1, 1, 1)

    def preferred_block(self) -> tuple[int, int, int]:
        """Blocks read from disk: large, so each stored chunk is decoded about once.

        They are computed in :data:`FEATURE_TILE` tiles (see :meth:`predict_padded`).
        """
        return READ_BLOCK

    def probabilities(self, padded: np.ndarray) -> np.ndarray:
        """Class probabilities (C, z, y, x) of the centre of a block read with :meth:`margin`."""
        rows, shape = compute_feature_rows(padded, self.spec, self.norm)
        votes = forest_votes(self.forest, rows)
        votes /= len(self.forest.estimators_)
        return votes.reshape((len(self.classes),) + shape)

    def predict_padded(self, padded: np.ndarray) -> np.ndarray:
        """Label values (uint8) of the centre of a padded block, computed tile by tile.

        Each tile is cut from ``padded`` with its own margin, so the labels are
        those of the whole block at once; tiles keep the feature maps small
        (memory, and the convolutions' cache-friendly size).
        """
        margin = self.margin()
        size = [n - 2 * m for n, m in zip(padded.shape, margin)]
        out = np.empty(size, dtype=np.uint8)
        values = np.asarray(self.classes, dtype=np.uint8)
        tile_shape = FEATURE_TILE[self.spec.mode]
        for start in itertools.product(*(range(0, n, t) for n, t in zip(size, tile_shape))):
            stop = [min(a + t, n) for a, t, n in zip(start, tile_shape, size)]
            tile = padded[tuple(slice(a, b + 2 * m) for a, b, m in zip(start, stop, margin))]
            rows, shape = compute_feature_rows(tile, self.spec, self.norm)
            out[tuple(slice(a, b) for a, b in zip(start, stop))] = values[forest_choices(self.forest, rows)].reshape(shape)
        return out

    def predict_region(self, array, start, stop) -> np.ndarray:
        return self.predict_padded(read_padded(array, start, stop, self.margin()))

    # -- files ------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        import joblib

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        joblib.dump(self.forest, folder / "forest.joblib", compress=3)
        meta = {
            "kind": self.kind,
            "features": self.spec.to_dict(),
            "feature_names": self.spec.names(),
            "normalisation": {"method": "percentile", "low": 0.5, "high": 99.5, "values": list(self.norm)},
            "classes": self.classes,
            "channels": self.channels,
            "params": self.params,
        }
        (folder / "model.json").write_text(json.dumps(meta, indent=2))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "QuickModel":
        import joblib

        folder = Path(folder)
        meta = json.loads((folder / "model.json").read_text())
        forest = joblib.load(folder / "forest.joblib")
        forest.n_jobs = cpu_count()
        return cls(
            FeatureSpec.from_dict(meta["features"]),
            tuple(meta["normalisation"]["values"]),
            [int(c) for c in meta["classes"]],
            forest,
            meta.get("params", {}),
            channels=int(meta.get("channels", 1)),
        )


def _leaf_tables(forest) -> list[list[np.ndarray]]:
    """Per tree and class, each node's probability (float32, cached on the forest)."""
    tables = getattr(forest, "_strata_leaf_tables", None)
    if tables is None:
        tables = []
        for tree in forest.estimators_:
            value = tree.tree_.value[:, 0, :].astype(np.float64)
            total = value.sum(1, keepdims=True)
            total[total == 0] = 1.0
            proba = (value / total).astype(np.float32)
            tables.append([np.ascontiguousarray(proba[:, c]) for c in range(proba.shape[1])])
        forest._strata_leaf_tables = tables
    return tables


def forest_votes(forest, rows: np.ndarray) -> np.ndarray:
    """Summed per-tree class probabilities (C, n) float32 of feature rows (n, F), in this thread.

    Same argmax as ``forest.predict_proba`` (which averages the same per-tree
    probabilities; only exact ties may fall differently) without its per-tree
    float64 copies and thread pool: each tree walks the rows to their leaves
    and adds its leaves' probabilities, one class at a time.
    """
    rows = np.asarray(rows, dtype=np.float32)  # strided rows (a transposed view) need no copy
    tables = _leaf_tables(forest)
    votes = np.zeros((len(tables[0]), rows.shape[0]), dtype=np.float32)
    for start in range(0, rows.shape[0], PREDICT_BATCH):
        part = rows[start : start + PREDICT_BATCH]
        acc = votes[:, start : start + len(part)]
        for tree, per_class in zip(forest.estimators_, tables):
            leaves = tree.tree_.apply(part)
            for c, table in enumerate(per_class):
                acc[c] += np.take(table, leaves)
    return votes


def forest_choices(forest, rows: np.ndarray) -> np.ndarray:
    """Index of the winning class per feature row (the argmax of :func:`forest_votes`).

    With two classes only the sign of the summed ``p1 - p0`` matters: one table
    lookup per tree and row instead of two, and no argmax over a (2, n) array.
    """
    tables = _leaf_tables(forest)
    if len(tables[0]) != 2:
        return np.argmax(forest_votes(forest, rows), 0)
    rows = np.asarray(rows, dtype=np.float32)
    margins = getattr(forest, "_strata_leaf_margins", None)
    if margins is None:
        margins = forest._strata_leaf_margins = [per_class[1] - per_class[0] for per_class in tables]
    total = np.zeros(rows.shape[0], dtype=np.float32)
    for start in range(0, rows.shape[0], PREDICT_BATCH):
        part = rows[start : start + PREDICT_BATCH]
        acc = total[start : start + len(part)]
        for tree, margin in zip(forest.estimators_, margins):
            acc += np.take(margin, tree.tree_.apply(part))
    return (total > 0).view(np.uint8)


def fit_rows(rows: np.ndarray, labels: np.ndarray, params: QuickParams):
    forest = make_forest(params)
    forest.fit(rows, labels)
    return forest


def train_quick(
    array,
    paint: Paint,
    params: QuickParams,
    norm: tuple[float, float],
    ctx: ProgressContext | None = None,
    where: str = "annotations",
) -> tuple[QuickModel, dict]:
    """Fit a quick model on the paint of ``array`` (level 0 of a volume); returns it and its metrics."""
    ctx = ctx or ProgressContext()
    check_paint(paint, where)
    spec = params.spec()
    t0 = time.perf_counter()
    sample = sample_balanced(paint, params.samples_per_class, params.seed)
    rows = paint_features(array, sample, spec, norm, ctx=ctx.sub(0.0, 0.5))
    classes = sample.classes
    held = np.zeros((len(classes), len(classes)), dtype=np.int64)
    folds = slice_folds(sample, params.folds, params.seed)
    held_names = []
    for i, fold in enumerate(folds):
        ctx.check_cancelled()
        ctx.sub(0.5, 0.85).report(i / max(1, len(folds)), f"held-out check {i + 1} of {len(folds)}")
        train_labels = sample.labels[fold.train]
        if len(np.unique(train_labels)) < 2:
            continue
        forest = fit_rows(rows[fold.train], train_labels, params)
        predicted = forest.predict(rows[fold.test])
        held += confusion(sample.labels[fold.test], predicted, classes)
        held_names.append(fold.held_out)
    ctx.check_cancelled()
    ctx.report(0.9, "final fit on all paint")
    forest = fit_rows(rows, sample.labels, params)
    train_counts = confusion(sample.labels, forest.predict(rows), classes)
    model = QuickModel(spec, norm, classes, forest, params.to_dict())
    metrics = {
        "held_out": scores(held, classes) if held.sum() else None,
        "held_out_accuracy": round(accuracy(held), 4) if held.sum() else None,
        "held_out_split": f"{len(held_names)}-fold by painted slice" if held_names else "not enough slices",
        "held_out_folds": held_names,
        "training": scores(train_counts, classes),
        "training_accuracy": round(accuracy(train_counts), 4),
        "samples": int(sample.count),
        "train_seconds": round(time.perf_counter() - t0, 2),
    }
    ctx.report(1.0, "trained")
    return model, metrics


def normalisation_for(volume) -> tuple[float, float]:
    """The intensity range a model uses for a volume (percentiles 0.5 and 99.5)."""
    return intensity_range(volume)


def check_compatible(model, volume, where: str) -> None:
    """Raise a user-facing error when a model cannot segment this volume."""
    channels = 1 if len(volume.shape) == 3 else int(volume.shape[-1])
    if len(volume.levels[0].shape) != 3 or channels != getattr(model, "channels", 1):
        raise StageError(
            f"{where}: the model expects {model.channels} channel(s), the volume has "
            f"{channels} (shape {tuple(volume.levels[0].shape)})"
        )


def validate_scales(scales: Sequence[float]) -> None:
    FeatureSpec(tuple(scales))
