"""Model comparison: the table of registered models, their lineage (backbone family, and which
checkpoint started which), a palette grouped by family, per-class F1, confusion matrices, the
Pareto front of accuracy against latency, training curves, the most confident mistakes and
published results. Reads each model's manifest.json / config.json / metrics.json / history.json
(formats in docs/ARCHITECTURE.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pandas.io.formats.style import Styler

from emotion.labels import canonical_label
from emotion.registry import EmotionModel, ModelInfo
from emotion.runtime import MAX_BATCH

NOT_EVALUATED = "not evaluated"
# Column -> True when higher is better (False: lower is better). Percentages are 0..100.
SCORE_COLUMNS: dict[str, bool] = {
    "Accuracy %": True,
    "Macro-F1 %": True,
    "Accuracy TTA %": True,
    "Macro-F1 TTA %": True,
    "PublicTest acc. %": True,
    # Accuracy on the test images with no exact copy in Training (FER2013 PrivateTest: 3,301 of 3,589).
    "Unseen acc. %": True,
    "Parameters": False,
    "Size MB": False,
    "Latency ms/face": False,
    "Latency TTA ms/face": False,
}
HIGHLIGHT = "background-color: rgba(33, 195, 84, 0.25); font-weight: bold"
# The table's columns shown at first (besides the model name); the others come with "All columns".
KEY_COLUMNS = ("Family", "Accuracy %", "Accuracy TTA %", "Macro-F1 %", "Latency ms/face", "Size MB", "Lineage")
COMMITTEE = "committee"
# Relations that make a model a lineage checkpoint, folded under its family unless asked for.
CHECKPOINT_RELATIONS = ("seed", "restart", "fine-tune", "distilled", "variant")
# One sequential scale per family (in order of first appearance), committees in reds: members of a
# family share a hue and differ in shade, so a chart reads by backbone first, then by checkpoint.
FAMILY_SCALES = ("Blues", "Greens", "Oranges", "Purples", "Greys", "YlOrBr", "PuRd", "BuGn", "GnBu", "OrRd")
COMMITTEE_SCALE = "Reds"


@dataclass(frozen=True)
class Published:
    """A result from the literature (or the project brief) to place our models beside."""

    name: str
    accuracy_low: float  # percent on FER2013 PrivateTest
    accuracy_high: float
    note: str


PUBLISHED: tuple[Published, ...] = (
    Published("mini-Xception (fer package)", 58.2, 58.2, "on this PrivateTest copy, per the project brief"),
    Published("mini-Xception (fer package) + flip TTA", 59.5, 59.5, "on this PrivateTest copy, per the project brief"),
    Published("Kaggle 2013 winner (Tang, SVM-loss CNN)", 71.2, 71.2, "competition private leaderboard"),
    Published("Best published single CNNs, FER2013 only", 73.0, 74.0, "range reported in the literature"),
    Published("Seven-model ensemble", 76.8, 76.8, "best published ensemble on FER2013"),
)


def _pct(value: object) -> float:
    return 100.0 * float(value) if isinstance(value, int | float) else np.nan


def _num(value: object) -> float:
    return float(value) if isinstance(value, int | float) else np.nan


def _parameters(info: ModelInfo, by_name: dict[str, ModelInfo]) -> float:
    """Parameter count from metrics.json, else the manifest; a committee sums its members."""
    value = info.metrics.get("parameters", info.manifest.get("parameters"))
    if value is None and info.kind == "committee" and info.members:
        parts = [_parameters(by_name[m], by_name) for m in info.members if m in by_name]
        value = sum(parts) if len(parts) == len(info.members) else None
    return _num(value)


def _size_mb(info: ModelInfo, by_name: dict[str, ModelInfo]) -> float:
    """Serving-file size in MB from metrics.json, else measured on disk; a committee sums its members."""
    size = info.metrics.get("file_size_bytes")
    if size is None and info.kind != "committee" and (info.folder / info.serving_file).is_file():
        size = (info.folder / info.serving_file).stat().st_size
    if size is None and info.kind == "committee" and info.members:
        parts = [_size_mb(by_name[m], by_name) for m in info.members if m in by_name]
        return float(sum(parts)) if len(parts) == len(info.members) else np.nan
    return _num(size) / 1e6


# ------------------------------------------------------------------------------------ lineage


@dataclass(frozen=True)
class Lineage:
    """Where a model comes from, read from its manifest and training config (config.json).

    family: the backbone (config "model", else manifest "backbone", else the model's own name), or
    COMMITTEE. relation: "from scratch" (the family's first root), "seed" / "variant" (another run
    from scratch of the same backbone, with another seed / the same one), "restart" (init_from a
    checkpoint at a learning rate of at least the parent's times restart_lr_scale: a new warm
    cycle), "fine-tune" (init_from at a lower rate), "distilled" (init_from with a teacher), "slimmed"
    (init_from a model of another, wider backbone: training.prune; the first of its own family), "resized"
    (init_from a model reading faces of another size: the first of its own family, "<backbone> <side>px"), "soup"
    (the mean of its members' weights: training.soup), or "committee"."""

    family: str
    relation: str
    parent: str = ""  # init_from: the model whose weights started this one
    teacher: str = ""
    seed: int | None = None
    members: tuple[str, ...] = ()
    vote: str = ""  # a committee's: "soft" or "majority"
    scene_views: bool = False  # trained on the app's crops of faces in scenes too (training.train's scene_views)

    @property
    def is_checkpoint(self) -> bool:
        """True for the runs folded under their family by default (restarts, fine-tunes, seeds, kd)."""
        return self.relation in CHECKPOINT_RELATIONS

    def describe(self) -> str:
        """A few words for the table: "fine-tune of vgg_wide", "seed 7 of vgg_wide", ..., and whether the
        run also saw the app's crops."""
        return self._relation_words() + (" on the app's crops too" if self.scene_views else "")

    def _relation_words(self) -> str:
        if self.relation == "committee":
            return f"{self.vote} vote of {len(self.members)}: " + ", ".join(self.members)
        if self.relation == "soup":
            return "weight average of " + ", ".join(self.members)
        if self.relation in ("slimmed", "resized"):
            return f"{self.relation} from {self.parent}" + (f", distilled from {self.teacher}" if self.teacher else "")
        if self.relation == "distilled":
            return f"{self.parent} distilled from {self.teacher}"
        if self.relation in ("restart", "fine-tune"):
            return f"{'warm restart' if self.relation == 'restart' else 'fine-tune'} of {self.parent}"
        if self.relation == "seed":
            return f"seed {self.seed} of {self.family}"
        if self.relation == "variant":
            return f"another run of {self.family}"
        return "from scratch"


def _learning_rate(info: ModelInfo | None) -> float | None:
    value = info.training_config.get("learning_rate") if info is not None else None
    return float(value) if isinstance(value, int | float) else None


def lineages(models: Sequence[ModelInfo]) -> dict[str, Lineage]:
    """{model name: Lineage} from each model's manifest and config.json (init_from, teacher, seed,
    learning_rate), never from its name. Among a family's runs from scratch the root is the one named
    like the family, else the earliest created; the others are its seeds (or variants)."""
    by_name = {m.name: m for m in models}
    out: dict[str, Lineage] = {}
    roots: dict[str, list[ModelInfo]] = {}
    for info in models:
        if info.kind == "committee":
            out[info.name] = Lineage(COMMITTEE, "committee", members=info.members, vote=info.vote)
            continue
        config = info.training_config
        family = str(config.get("model") or info.manifest.get("backbone") or info.name)
        seed = config.get("seed") if isinstance(config.get("seed"), int) else None
        parent, teacher = str(config.get("init_from") or ""), str(config.get("teacher") or "")
        if config.get("soup_of"):  # its config.json is its first member's, with the members named
            out[info.name] = Lineage(family, "soup", members=tuple(config["soup_of"]), seed=seed)
        elif parent and parent in by_name and by_name[parent].manifest.get("backbone") not in (None, family):
            out[info.name] = Lineage(family, "slimmed", parent, teacher, seed)
        elif parent and parent in by_name and by_name[parent].input_size != info.input_size:
            out[info.name] = Lineage(f"{family} {info.input_size[0]}px", "resized", parent, teacher, seed)
        elif parent:
            # A warm restart starts a new cycle at the parent's rate times the trainer's restart_lr_scale
            # (training.train); a fine-tune runs well below that.
            parent_lr, own_lr = _learning_rate(by_name.get(parent)), _learning_rate(info)
            scale = config.get("restart_lr_scale", 0.5)
            scale = float(scale) if isinstance(scale, int | float) else 0.5
            restart = parent_lr is not None and own_lr is not None and own_lr >= scale * parent_lr
            relation = "distilled" if teacher else "restart" if restart else "fine-tune"
            out[info.name] = Lineage(
                family, relation, parent, teacher, seed, scene_views=bool(config.get("scene_views"))
            )
        else:
            roots.setdefault(family, []).append(info)
    for family, runs in roots.items():
        runs.sort(key=lambda m: (m.name != family, str(m.manifest.get("created", "")), m.name))
        head_seed = runs[0].training_config.get("seed")
        for k, info in enumerate(runs):
            seed = info.training_config.get("seed")
            relation = "from scratch" if k == 0 else "seed" if seed != head_seed else "variant"
            out[info.name] = Lineage(family, relation, seed=seed if isinstance(seed, int) else None)
    return {m.name: out[m.name] for m in models}


def family_order(models: Sequence[ModelInfo], lineage: dict[str, Lineage]) -> list[str]:
    """Model names grouped by family (families by best PrivateTest accuracy of their root, committees
    last), each family's root first and the rest by accuracy: the order of every chart and legend."""

    def accuracy(name: str) -> float:
        value = by_name[name].metrics.get("accuracy")
        return float(value) if isinstance(value, int | float) else -1.0

    by_name = {m.name: m for m in models}
    families: dict[str, list[str]] = {}
    for info in models:
        families.setdefault(lineage[info.name].family, []).append(info.name)
    for names in families.values():
        names.sort(key=lambda n: (lineage[n].is_checkpoint, -accuracy(n), n))
    ranked = sorted(families, key=lambda f: (f == COMMITTEE, -accuracy(families[f][0]), f))
    return [name for family in ranked for name in families[family]]


def family_colors(order: Sequence[str], lineage: dict[str, Lineage]) -> dict[str, str]:
    """{model: CSS colour}: one hue per family (FAMILY_SCALES, committees COMMITTEE_SCALE), the
    family's members spread over that hue's shades, darkest first; models in `order`."""
    import plotly.colors  # only the comparison page draws

    families: dict[str, list[str]] = {}
    for name in order:
        families.setdefault(lineage[name].family, []).append(name)
    colors, k = {}, 0
    for family, names in families.items():
        if family == COMMITTEE:
            scale = COMMITTEE_SCALE
        else:
            scale, k = FAMILY_SCALES[k % len(FAMILY_SCALES)], k + 1
        shades = [0.8] if len(names) == 1 else np.linspace(0.95, 0.4, len(names)).tolist()
        colors |= dict(zip(names, plotly.colors.sample_colorscale(scale, shades), strict=True))
    return colors


def family_summary(table: pd.DataFrame, lineage: dict[str, Lineage], shown: Sequence[str] = ()) -> dict[str, str]:
    """{family root: "N folded, best NAME ACC%"} for families with checkpoints: what folding hides
    (checkpoints in `shown`, such as the app's default, are not folded; best is over the family)."""
    out = {}
    for family in {lin.family for lin in lineage.values()} - {COMMITTEE}:
        names = [n for n, lin in lineage.items() if lin.family == family and n in table.index]
        root = next((n for n in names if not lineage[n].is_checkpoint), None)
        folded = [n for n in names if lineage[n].is_checkpoint and n not in shown]
        if root is None or not folded:
            continue
        accuracy = table.loc[names, "Accuracy %"].astype(float)
        text = f"{len(folded)} checkpoint{'s' if len(folded) != 1 else ''} folded"
        if accuracy.notna().any():
            best = accuracy.idxmax()
            text += f"; best {best} ({accuracy[best]:.1f})"
        out[root] = text
    return out


def log_ticks(low: float, high: float) -> list[float]:
    """Tick values 1-2-5 per decade (0.5, 1, 2, 5, 10 ...) covering [low, high] (both > 0), for a
    log axis that reads in plain numbers. A span inside one step gets its two neighbours."""
    if not (low > 0 and high >= low):
        return []
    ticks = [m * 10.0**e for e in range(int(np.floor(np.log10(low))) - 1, int(np.ceil(np.log10(high))) + 1)
             for m in (1, 2, 5)]  # fmt: skip
    inside = [t for t in ticks if low <= t <= high]
    if len(inside) >= 2:
        return inside
    below = max(t for t in ticks if t <= low)
    above = min(t for t in ticks if t >= high)
    return sorted({below, *inside, above})


def tick_text(value: float) -> str:
    """0.5 -> "0.5", 1.0 -> "1", 20.0 -> "20"."""
    return f"{value:g}"


# ------------------------------------------------------------------------------------ table


def model_table(models: Sequence[ModelInfo]) -> pd.DataFrame:
    """One row per model, indexed by name: family and lineage (see lineages), kind, classes, the
    SCORE_COLUMNS (NaN when not measured) and "Evaluated" (the evaluation date, or NOT_EVALUATED)."""
    by_name = {m.name: m for m in models}
    lineage = lineages(models)
    rows = []
    for info in models:
        metrics = info.metrics
        rows.append(
            {
                "Model": info.name,
                "Family": lineage[info.name].family,
                "Lineage": lineage[info.name].describe(),
                "Kind": info.kind,
                "Classes": len(info.labels),
                "Accuracy %": _pct(metrics.get("accuracy")),
                "Macro-F1 %": _pct(metrics.get("macro_f1")),
                "Accuracy TTA %": _pct(metrics.get("accuracy_tta")),
                "Macro-F1 TTA %": _pct(metrics.get("macro_f1_tta")),
                "TTA": tta_label(metrics) if "accuracy_tta" in metrics else "",
                "PublicTest acc. %": _pct(metrics.get("public_test", {}).get("accuracy")),
                "Unseen acc. %": _pct(metrics.get("accuracy_unseen")),
                "Parameters": _parameters(info, by_name),
                "Size MB": _size_mb(info, by_name),
                "Latency ms/face": _num(metrics.get("latency_ms_per_face")),
                "Latency TTA ms/face": _num(metrics.get("latency_ms_per_face_tta")),
                "Test images": _num(metrics.get("n")),
                "Evaluated": str(metrics.get("evaluated_at", ""))[:16].replace("T", " ") or NOT_EVALUATED,
            }
        )
    columns = ["Model", "Family", "Lineage", "Kind", "Classes", *SCORE_COLUMNS, "TTA", "Test images", "Evaluated"]
    return pd.DataFrame(rows, columns=columns).set_index("Model")


def tta_label(metrics: dict) -> str:
    """The test-time augmentation a model's TTA figures were measured with, as the pages name it
    (training.evaluate's tta_mode; older metrics without one used the flip)."""
    return mode_label(metrics.get("tta_mode") or "flip")


def mode_label(mode: str) -> str:
    """A TTA mode as the pages name it: "crops" is "ten crops", the others ("none", "flip") as they are."""
    return "ten crops" if mode == "crops" else mode


def best_rows(table: pd.DataFrame) -> dict[str, list[str]]:
    """For each SCORE_COLUMN with a value, the model(s) holding the best one (ties all win)."""
    best = {}
    for column, higher in SCORE_COLUMNS.items():
        values = table[column].dropna()
        if len(values):
            target = values.max() if higher else values.min()
            best[column] = values.index[values == target].tolist()
    return best


def styled_table(table: pd.DataFrame) -> Styler:
    """The model table for st.dataframe: the best value of each column highlighted, gaps shown as
    NOT_EVALUATED. Gaps hold -inf (higher is better) or +inf (lower is better) under that text, so
    a click on a header sorts numerically with unevaluated models last in the best-first order
    (Streamlit renders a null cell as "None" whatever the Styler says)."""
    best = best_rows(table)
    shown = table.copy()
    for column, higher in SCORE_COLUMNS.items():
        shown[column] = shown[column].astype(float).fillna(-np.inf if higher else np.inf)
    shown["Test images"] = shown["Test images"].astype(float).fillna(-np.inf)

    def highlight(column: pd.Series) -> list[str]:
        winners = best.get(column.name, [])
        return [HIGHLIGHT if name in winners else "" for name in column.index]

    def formatter(pattern: str) -> Callable[[float], str]:
        return lambda v: pattern.format(v) if np.isfinite(v) else NOT_EVALUATED

    patterns = {c: "{:.1f}" for c in SCORE_COLUMNS if c.endswith("%")}
    patterns |= {"Parameters": "{:,.0f}", "Size MB": "{:.2f}", "Latency ms/face": "{:.2f}",
                 "Latency TTA ms/face": "{:.2f}", "Test images": "{:,.0f}"}  # fmt: skip
    formats = {column: formatter(pattern) for column, pattern in patterns.items()}
    return shown.style.apply(highlight, subset=list(SCORE_COLUMNS)).format(formats)


def per_class_f1(models: Sequence[ModelInfo], tta: bool = False) -> pd.DataFrame:
    """Long frame (model, label, f1 %, support) from each evaluated model's per-class metrics."""
    key = "per_class_tta" if tta else "per_class"
    rows = [
        (info.name, label, _pct(values.get("f1")), _num(values.get("support")))
        for info in models
        for label, values in info.metrics.get(key, {}).items()
    ]
    return pd.DataFrame(rows, columns=["model", "label", "f1", "support"])


def confusion(metrics: dict, tta: bool = False, normalise: bool = False) -> tuple[np.ndarray, list[str]] | None:
    """(K, K) confusion matrix (rows true, columns predicted) and labels; row-normalised to
    percentages with normalise=True (an empty row stays 0). None when the metrics have none."""
    matrix = metrics.get("confusion_matrix_tta" if tta else "confusion_matrix")
    labels = metrics.get("labels")
    if not matrix or not labels:
        return None
    counts = np.asarray(matrix, dtype=np.float64)
    if normalise:
        totals = counts.sum(axis=1, keepdims=True)
        counts = np.divide(100.0 * counts, totals, out=np.zeros_like(counts), where=totals > 0)
    return counts, list(labels)


def pareto_front(latency: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """(N,) latencies (lower better) and accuracies (higher better) -> (N,) bool: True for points no
    other point dominates (as fast or faster and as accurate or more, strictly better in one).
    NaN points are never on the front."""
    latency, accuracy = np.asarray(latency, float), np.asarray(accuracy, float)
    valid = ~(np.isnan(latency) | np.isnan(accuracy))
    front = np.zeros(len(latency), bool)
    for i in np.flatnonzero(valid):
        others = valid.copy()
        others[i] = False
        better_eq = (latency <= latency[i]) & (accuracy >= accuracy[i])
        strictly = (latency < latency[i]) | (accuracy > accuracy[i])
        front[i] = not (others & better_eq & strictly).any()
    return front


def pareto_points(
    table: pd.DataFrame, lineage: dict[str, Lineage], max_labelled: int = 16
) -> tuple[pd.DataFrame, tuple[float, float], tuple[float, float]] | None:
    """The accuracy-latency chart's points from model_table rows: each model without and with TTA.

    Returns (frame, x_range, y_range), or None when no row has both figures. frame has one row per
    point: model, label ("name" / "name + TTA"), tta, latency (ms, > 0), accuracy (%), log_latency,
    front (on the Pareto front), shown_label (label, or "" when more than max_labelled points: then
    only the front and each family's first run without TTA are named) and position (a plotly
    textposition from label_positions). x_range is in log10 units (plotly's log axis), y_range in %."""
    points = []
    for name, row in table.iterrows():
        points.append((name, name, False, row["Latency ms/face"], row["Accuracy %"]))
        points.append((name, f"{name} + TTA", True, row["Latency TTA ms/face"], row["Accuracy TTA %"]))
    frame = pd.DataFrame(points, columns=["model", "label", "tta", "latency", "accuracy"]).dropna()
    frame = frame[frame["latency"] > 0].reset_index(drop=True)
    if frame.empty:
        return None
    frame["latency"], frame["accuracy"] = frame["latency"].astype(float), frame["accuracy"].astype(float)
    frame["log_latency"] = np.log10(frame["latency"])
    frame["front"] = pareto_front(frame["latency"].to_numpy(), frame["accuracy"].to_numpy())
    x_range = (float(frame["log_latency"].min()) - 0.1, float(frame["log_latency"].max()) + 0.15)
    pad = 0.08 * max(1.0, float(frame["accuracy"].max() - frame["accuracy"].min()))
    y_range = (float(frame["accuracy"].min()) - pad, float(frame["accuracy"].max()) + pad)
    checkpoint = frame["model"].map(lambda n: n in lineage and lineage[n].is_checkpoint)
    named = frame["front"] | ~(frame["tta"] | checkpoint) | (len(frame) <= max_labelled)
    frame["shown_label"] = np.where(named, frame["label"], "")
    ranked = frame[named].sort_values("accuracy", ascending=False)  # the best models get the first pick
    positions = label_positions(ranked["log_latency"], ranked["accuracy"], ranked["label"], x_range, y_range)
    frame["position"] = pd.Series(positions, index=ranked.index, dtype=object).reindex(frame.index)
    frame["position"] = frame["position"].fillna("top center")
    return frame, x_range, y_range


_LabelBox = tuple[float, float, float, float]  # (left, right, bottom, top) in pixels

# Where a point's label may go, as plotly textposition -> the label's box relative to the point, in
# pixels (x right, y up) for a label w wide and h high.
_LABEL_BOXES = {
    "top center": lambda w, h: (-w / 2, w / 2, 5, 5 + h),
    "bottom center": lambda w, h: (-w / 2, w / 2, -5 - h, -5),
    "middle right": lambda w, h: (8, 8 + w, -h / 2, h / 2),
    "middle left": lambda w, h: (-8 - w, -8, -h / 2, h / 2),
    # Diagonals last: for a point whose four sides are all taken (a marker beside it, one below, the axis).
    "top right": lambda w, h: (5, 5 + w, 5, 5 + h),
    "bottom right": lambda w, h: (5, 5 + w, -5 - h, -5),
    "top left": lambda w, h: (-5 - w, -5, 5, 5 + h),
    "bottom left": lambda w, h: (-5 - w, -5, -5 - h, -5),
}


def label_positions(
    x: Sequence[float],
    y: Sequence[float],
    labels: Sequence[str],
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    plot_px: tuple[int, int] = (560, 340),
    char_px: float = 6.5,
    line_px: float = 14.0,
) -> list[str]:
    """A plotly textposition for each point's label such that labels of nearby points (vgg and
    vgg_kd, say) do not print over each other: points are placed in order, each label taking the
    first of top, bottom, right, left (then the diagonals) whose box covers no marker and no label
    placed before and stays inside the plot, or else the least-covering one. Axes map x_range and
    y_range onto plot_px (width, height) pixels."""
    sx = plot_px[0] / max(1e-9, x_range[1] - x_range[0])
    sy = plot_px[1] / max(1e-9, y_range[1] - y_range[0])
    pixels = [((xi - x_range[0]) * sx, (yi - y_range[0]) * sy) for xi, yi in zip(x, y, strict=True)]
    # Every marker is an obstacle from the start, so that no label sits on another model's point.
    placed = [(px - 4, px + 4, py - 4, py + 4) for px, py in pixels]
    positions = []
    for (px, py), text in zip(pixels, labels, strict=True):
        boxes = {}
        for name, shape in _LABEL_BOXES.items():
            left, right, bottom, top = shape(len(text) * char_px, line_px)
            boxes[name] = (px + left, px + right, py + bottom, py + top)
        # A label out of the plot is clipped (vgg_kd's, left of the y axis): count that part as covered.
        covered = {name: _covered_area(box, placed) + _outside_area(box, plot_px) for name, box in boxes.items()}
        best = min(boxes, key=covered.get)  # dicts keep order: ties go to the earlier position
        placed.append(boxes[best])
        positions.append(best)
    return positions


def _overlap(a: _LabelBox, b: _LabelBox) -> float:
    """Area that boxes a and b share."""
    return max(0.0, min(a[1], b[1]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[2], b[2]))


def _outside_area(box: _LabelBox, plot_px: tuple[int, int]) -> float:
    """Area of box outside the plot's (width, height) pixels."""
    return (box[1] - box[0]) * (box[3] - box[2]) - _overlap(box, (0.0, plot_px[0], 0.0, plot_px[1]))


def _covered_area(box: _LabelBox, others: list[_LabelBox]) -> float:
    """Total area of box that the other boxes cover."""
    return sum(_overlap(box, o) for o in others)


def history_frame(models: Sequence[ModelInfo]) -> pd.DataFrame:
    """Long frame (model, epoch, metric, value) of every model's history.json curves."""
    rows = []
    for info in models:
        for metric, values in info.history.get("history", {}).items():
            rows += [(info.name, epoch + 1, metric, float(v)) for epoch, v in enumerate(values) if v is not None]
    return pd.DataFrame(rows, columns=["model", "epoch", "metric", "value"])


def published_table(models: Sequence[ModelInfo]) -> pd.DataFrame:
    """Published results (quoted) and our evaluated models (measured here), by accuracy, highest first."""
    rows = [
        {
            "Result": p.name,
            "Accuracy %": p.accuracy_low,
            "Range": f"{p.accuracy_low:.1f}"
            if p.accuracy_low == p.accuracy_high
            else f"{p.accuracy_low:.0f}–{p.accuracy_high:.0f}",
            "Source": "quoted",
            "Note": p.note,
        }
        for p in PUBLISHED
    ]
    for info in models:
        metrics = info.metrics
        for suffix, key in (("", "accuracy"), (f" + {tta_label(metrics)} TTA", "accuracy_tta")):
            if isinstance(metrics.get(key), int | float):
                value = round(100.0 * metrics[key], 1)  # shown as 72.1 everywhere, never 72.0814
                rows.append(
                    {
                        "Result": f"ours: {info.name}{suffix}",
                        "Accuracy %": value,
                        "Range": f"{value:.1f}",
                        "Source": "measured here",
                        "Note": f"{metrics.get('split', 'PrivateTest')}, n={metrics.get('n', '?')}",
                    }
                )
    return pd.DataFrame(rows).sort_values("Accuracy %", ascending=False, ignore_index=True)


# ------------------------------------------------------------------------- confident mistakes


def label_index_map(model_labels: Sequence[str], data_labels: Sequence[str]) -> np.ndarray | None:
    """(K_data,) index of each dataset label in the model's labels (canonical names), or None when
    the model lacks one of them."""
    canon = [canonical_label(x) for x in model_labels]
    try:
        return np.array([canon.index(canonical_label(x)) for x in data_labels], np.int64)
    except ValueError:
        return None


def predict_images(
    model: EmotionModel,
    images: np.ndarray | Sequence[np.ndarray],
    batch_size: int = MAX_BATCH,
    progress: Callable[[float], None] | None = None,
) -> np.ndarray:
    """Images (N, H, W) uint8 grey (or any crops) -> (N, K) probabilities, through the shared
    preprocessing as the model declares it (EmotionModel.predict_faces)."""
    out = []
    for start in range(0, len(images), batch_size):
        out.append(model.predict_faces(list(images[start : start + batch_size])))
        if progress:
            progress(min(1.0, (start + batch_size) / len(images)))
    return np.concatenate(out) if out else np.zeros((0, len(model.labels)), np.float32)


def confident_mistakes(probs: np.ndarray, y_true: np.ndarray, per_class: int = 8) -> dict[int, np.ndarray]:
    """(N, K) probabilities and (N,) true labels (model indices) -> {true class: indices of the
    wrongly predicted images, most confident first, at most per_class}."""
    predicted = probs.argmax(axis=1)
    confidence = probs.max(axis=1)
    out = {}
    for k in range(probs.shape[1]):
        wrong = np.flatnonzero((y_true == k) & (predicted != k))
        out[k] = wrong[np.argsort(-confidence[wrong], kind="stable")][:per_class]
    return out


def models_signature(models: Sequence[ModelInfo]) -> tuple[tuple[str, float], ...]:
    """(name, latest mtime of its json files) per model: a cache key that changes when one is re-evaluated."""

    def mtime(folder: Path) -> float:
        return max((p.stat().st_mtime for p in folder.glob("*.json")), default=0.0)

    return tuple((m.name, mtime(m.folder)) for m in models)


# ------------------------------------------------------------- saved predictions (accuracy helper)

PREDICTIONS_FILE = "predictions_privatetest.npz"  # written by training.evaluate beside metrics.json


def saved_predictions(info: ModelInfo, y_true: np.ndarray) -> np.ndarray | None:
    """(N, K) float32 served PrivateTest probabilities that `python -m training.evaluate` saved beside
    the model's metrics (evaluation writes both at once, so they describe the same served file), or
    None when there are none or they do not belong to these (N,) true labels (model indices), e.g. a
    different copy of the dataset: then the caller predicts instead."""
    path = info.folder / PREDICTIONS_FILE
    if not path.is_file():
        return None
    try:
        with np.load(path) as saved:
            probs, labels = saved["probs"].astype(np.float32), saved["labels"].astype(np.int64)
    except (OSError, ValueError, KeyError):
        return None
    if probs.shape != (len(y_true), len(info.labels)) or not np.array_equal(labels, y_true):
        return None
    return probs


# ------------------------------------- calibration, test-time crops, weakest classes (accuracy helper)


def calibration_table(models: Sequence[ModelInfo]) -> pd.DataFrame:
    """One row per model whose metrics hold a calibration block (training.evaluate): the temperature
    fitted on PublicTest (with a per-class scale and bias, not shown) and the expected calibration error
    on PrivateTest before and after the calibration."""
    rows = []
    for info in models:
        block = info.metrics.get("calibration")
        if not block:
            continue
        rows.append(
            {
                "Model": info.name,
                "Temperature": _num(block.get("temperature")),
                "ECE before": _num(block.get("ece_before")),
                "ECE after": _num(block.get("ece_after")),
                "ECE after, with TTA": _num(block.get("ece_after_tta")),
            }
        )
    return pd.DataFrame(rows, columns=["Model", "Temperature", "ECE before", "ECE after", "ECE after, with TTA"])


def reliability_frame(models: Sequence[ModelInfo]) -> pd.DataFrame:
    """Long frame (model, calibration "before"/"after", confidence %, accuracy %, count) of each
    model's reliability bins on PrivateTest; empty bins are left out. A calibrated model's points lie
    on the diagonal."""
    rows = []
    for info in models:
        block = info.metrics.get("calibration") or {}
        for stage in ("before", "after"):
            bins = block.get(f"reliability_{stage}") or {}
            for conf, acc, count in zip(
                bins.get("confidence", []), bins.get("accuracy", []), bins.get("count", []), strict=False
            ):
                if conf is not None and acc is not None and count:
                    rows.append((info.name, stage, 100.0 * conf, 100.0 * acc, int(count)))
    return pd.DataFrame(rows, columns=["model", "calibration", "confidence", "accuracy", "count"])


TTA_COLUMNS = (
    "Model",
    "TTA",
    "Accuracy %",
    "PublicTest acc. %",
    "PublicTest detected %",
    "Latency ms/face",
    "Served with TTA",
)


def tta_table(models: Sequence[ModelInfo]) -> pd.DataFrame:
    """One row per (model, TTA mode) measured by training.evaluate: PrivateTest accuracy, PublicTest
    accuracy on the registered crops and on PublicTest faces the app's detector found in generated
    scenes (which chooses the served mode where it was measured), latency per face, and whether it is the
    served mode; the no-TTA row first for comparison."""
    rows = []
    for info in models:
        metrics = info.metrics
        modes = metrics.get("tta_modes") or {}
        if not modes:
            continue
        rows.append(
            {
                "Model": info.name,
                "TTA": "none",
                "Accuracy %": _pct(metrics.get("accuracy")),
                "PublicTest acc. %": _pct(metrics.get("public_test", {}).get("accuracy")),
                "PublicTest detected %": None,
                "Latency ms/face": _num(metrics.get("latency_ms_per_face")),
                "Served with TTA": False,
            }
        )
        for mode, values in modes.items():
            rows.append(
                {
                    "Model": info.name,
                    "TTA": mode_label(mode),
                    "Accuracy %": _pct(values.get("accuracy")),
                    "PublicTest acc. %": _pct(values.get("public_accuracy")),
                    "PublicTest detected %": _pct(values.get("public_pipeline_accuracy")),
                    "Latency ms/face": _num(values.get("latency_ms_per_face")),
                    "Served with TTA": mode == metrics.get("tta_mode"),
                }
            )
    return pd.DataFrame(rows, columns=TTA_COLUMNS)


WEAK_CLASSES = ("fear", "sad")


def weak_class_recall(models: Sequence[ModelInfo]) -> pd.DataFrame:
    """Recall % of the weakest FER2013 classes (fear, sad) per evaluated model on PrivateTest, without
    and with TTA: how often a truly fearful or sad face is called so."""
    rows = []
    for info in models:
        metrics = info.metrics
        for label in WEAK_CLASSES:
            plain = metrics.get("per_class", {}).get(label)
            if plain is None:
                continue
            tta = metrics.get("per_class_tta", {}).get(label, {})
            rows.append(
                {
                    "Model": info.name,
                    "Class": label,
                    "Recall %": _pct(plain.get("recall")),
                    "Recall TTA %": _pct(tta.get("recall")),
                    "Support": _num(plain.get("support")),
                }
            )
    return pd.DataFrame(rows, columns=["Model", "Class", "Recall %", "Recall TTA %", "Support"])


def latency_provenance(models: Sequence[ModelInfo]) -> str:
    """Where the latency figures of `models` come from, in a sentence for the page: the models measured
    together in one interleaved run (scripts/benchmark_models.py --record, with the LiteRT threads a call
    it served with), comparable with one another, and those measured alone when they were evaluated,
    which a machine whose speed drifts makes less so."""
    evaluated = [m for m in models if "latency_ms_per_face" in m.metrics]
    if not evaluated:
        return ""
    runs: dict[tuple[str, int | None], list[str]] = {}
    alone = []
    for info in evaluated:
        run = info.metrics.get("latency_run") or {}
        if run.get("measured_at"):
            when = str(run["measured_at"])[:16].replace("T", " ")
            runs.setdefault((when, run.get("threads")), []).append(info.name)
        else:
            alone.append(info.name)
    parts = [
        f"{_count(len(names), 'model')} measured together in one interleaved run ({when} UTC"
        + (f", {_count(threads, 'LiteRT thread')} a call)" if threads else ")")
        for (when, threads), names in sorted(runs.items(), reverse=True)
    ]
    if alone:
        parts.append(f"{', '.join(alone)} measured alone when evaluated, so less comparable")
    return (
        "Latency: one face at batch 1 through preprocessing, the serving runtime and calibration, the median "
        f"wait per face; {'; '.join(parts)}. The default's 1 ms budget reads the CPU a face costs, every thread "
        "together. Re-measure them together with `python scripts/benchmark_models.py --record`."
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
