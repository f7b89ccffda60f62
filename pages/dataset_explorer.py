"""Dataset explorer: FER2013 or any folder-per-class dataset (UI only; statistics in studio.eda)."""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from emotion import config, datasets
from emotion.datasets import ImageSet, Progress
from pages.common import counted, fer2013_arrays, label_colors, md_escape, show_error
from studio import eda, figures
from studio.store import EDA_TMP_PREFIX
from studio.zipsafe import UnsafeArchiveError, safe_extract_zip

DATASET_CHOICES = ("FER2013", "Folder on this machine", "Upload a zip")
TAB_KEY = "eda_tab"  # the open tab's label, in session state
NO_SAMPLES = (
    "Sample images need the dataset itself: add FER2013 as the note above says, or pick "
    '"Folder on this machine" or "Upload a zip" at the top to explore your own images.'
)


# ------------------------------------------------------------------------------ cached loading


@st.cache_resource(show_spinner=False)
def _memo() -> dict[str, object]:
    """Results computed with a progress bar, shared by all sessions, keyed by path + mtime/signature.

    (st.cache_data cannot replay a progress bar created outside the cached function, so heavy
    results live here instead; the newest MEMO_SIZE entries are kept.)"""
    return {}


MEMO_SIZE = 6


def _cached(key: str, compute: Callable[[Progress], object]) -> object:
    memo = _memo()
    if key not in memo:
        report, slot = _progress_bar()
        memo[key] = compute(report)
        slot.empty()
        for old in list(memo)[:-MEMO_SIZE]:
            memo.pop(old, None)
    return memo[key]


@st.cache_data(show_spinner=False, max_entries=16)
def _near_pairs(key: str, threshold: int, _stats: eda.Stats) -> np.ndarray:
    return eda.near_duplicates(_stats, threshold)


def _stats(ds: ImageSet, report: Progress) -> tuple[eda.Stats, dict]:
    return eda.cached_stats(ds, report)


def _progress_bar() -> tuple[Progress, st.delta_generator.DeltaGenerator]:
    slot = st.empty()
    bar = slot.progress(0.0, text="Starting")
    return (lambda fraction, text: bar.progress(min(max(fraction, 0.0), 1.0), text=text)), slot


def _open_dataset(source: str) -> tuple[ImageSet | None, str]:
    """The chosen dataset (None when absent or not chosen yet) and its cache key."""
    if source == "FER2013":
        csv = config.find_fer2013_csv()
        if csv is None:
            return None, ""
        info = csv.stat()
        try:
            with st.spinner("Reading FER2013 (the first time only: then from the cache)"):
                ds = fer2013_arrays(str(csv), info.st_mtime_ns, info.st_size)
        except (OSError, ValueError) as error:  # a damaged or foreign file: say so, never a traceback
            show_error(f"{csv.name} cannot be read: {error}. Replace it with Kaggle's fer2013.csv (or .csv.gz).")
            return None, ""
        return ds, f"fer|{csv}|{info.st_mtime_ns}|{info.st_size}"
    root = _folder_input() if source == "Folder on this machine" else _zip_input()
    if root is None:
        return None, ""
    try:
        signature = datasets.folder_signature(root)
        ds = _cached(f"folder|{root}|{signature}", lambda report: datasets.scan_folder(root, report))
    except (OSError, ValueError) as error:
        show_error(f"Cannot read {root.name}: {error}. Check the folder's permissions, or choose another one.")
        return None, ""
    if len(ds) == 0:
        show_error(
            f"No readable image under {root}. Put the images in one folder per class, "
            "`<folder>/<class>/<image>.jpg` (or `<folder>/<split>/<class>/<image>.jpg`), and try again."
        )
        return None, ""
    return ds, f"folder|{root}|{signature}"


def _folder_input() -> Path | None:
    text = st.text_input(
        "Dataset folder", placeholder="my_dataset  (a folder under data/: class folders, or train/ val/ test/)"
    )
    roots = ", ".join(f"`{r}`" for r in config.dataset_roots())
    if not text.strip():
        st.info(
            "Type the path of a folder-per-class dataset, `<folder>/<class>/<image>` or "
            f"`<folder>/<split>/<class>/<image>`, inside one of: {roots} (relative paths are taken under "
            "data/; EMOTION_DATASET_ROOTS adds more places)."
        )
        return None
    root = config.resolve_dataset_path(text)
    if root is None:
        st.error(
            f"For safety the app only reads datasets inside: {roots}, and never the folder of the studio's "
            "saved analyses or one that holds it. Move or link the dataset there (in a folder of its own), or "
            "add its parent folder to EMOTION_DATASET_ROOTS and restart the app."
        )
        return None
    if not root.is_dir():
        st.error("That folder does not exist on this machine: check the path (relative paths start in data/).")
        return None
    return datasets.dataset_root(root)


def _zip_input() -> Path | None:
    upload = st.file_uploader("Zip of a folder-per-class dataset", type=["zip"])
    if upload is None:
        st.info(
            "Upload a .zip whose folders are the classes (for example anger/, happy/, ...). "
            "Only image files are extracted."
        )
        return None
    data = upload.getvalue()
    target = Path(tempfile.gettempdir()) / f"{EDA_TMP_PREFIX}{hashlib.sha256(data).hexdigest()[:16]}"
    if not target.is_dir():
        try:
            count = safe_extract_zip(data, target)
        except UnsafeArchiveError as error:
            show_error(f"The archive was rejected: {error}. Zip the dataset folder again and upload the new file.")
            return None
        st.caption(f"Extracted {counted(count, 'image')} to a temporary folder.")
    return datasets.dataset_root(target)


# ------------------------------------------------------------------------------------ sections


def _class_section(summary: dict) -> None:
    """The first view: bars and a table drawn by the browser itself (SVG and HTML), so that it needs none of
    the chart and table code a first visit would otherwise load (docs/DEPLOY.md)."""
    labels = summary["labels"]
    as_percent = st.toggle("Show percentages of each split", value=False)
    st.markdown(figures.class_bars_svg(summary["class_counts"], labels, as_percent), unsafe_allow_html=True)
    ratios = summary["imbalance_ratio"]
    cols = st.columns(len(ratios))
    for col, (split, ratio) in zip(cols, ratios.items(), strict=True):
        col.metric(f"Imbalance, {split}", "∞" if ratio == float("inf") else f"{ratio:.1f} : 1")
    st.caption("Imbalance = largest class / smallest class.")
    table = pd.DataFrame(summary["class_counts"]).reindex(labels).fillna(0).astype(int)
    table["total"] = table.sum(axis=1)
    share = (100.0 * table["total"] / max(int(table["total"].sum()), 1)).map("{:.1f}".format)
    table = table.map("{:,}".format).assign(**{"% of all": share})
    st.html(
        "<style>.class-table td, .class-table th {padding: 0.25em 0.9em; text-align: right; border: 0;"
        "border-bottom: 1px solid rgba(49, 51, 63, 0.1)} .class-table table {border-collapse: collapse}</style>"
        f'<div class="class-table">{table.to_html(border=0, index_names=False)}</div>'
    )


def _samples_section(ds: ImageSet) -> None:
    left, right = st.columns([3, 1])
    per_class = left.slider("Samples per class", 4, 16, 8)
    if right.button("Reshuffle", icon=":material/shuffle:"):
        st.session_state["eda_seed"] = st.session_state.get("eda_seed", 0) + 1
    picks = eda.sample_indices(ds.y, len(ds.labels), per_class, st.session_state.get("eda_seed", 0))
    for k, label in enumerate(ds.labels):
        st.markdown(f"**{md_escape(label)}** ({counted(int((ds.y == k).sum()), 'image')})")
        st.image([eda.display_image(ds, int(i)) for i in picks[k]], width=80, output_format="PNG")


def _faces_section(labels: list[str], mean: np.ndarray, std: np.ndarray) -> None:
    st.caption(
        "Pixel-wise mean and standard deviation of every 48x48 grey face of each class, each row stretched "
        "between its darkest and brightest value over all classes (so classes compare on one scale)."
    )
    for title, faces in (("Mean face", mean), ("Std face", std)):
        tiles, low, high = eda.face_tiles(faces)
        st.markdown(f"**{title}** (grey levels {low:.0f} to {high:.0f})")
        st.image(tiles, caption=list(labels), width=96, output_format="PNG")


def _light_section(summary: dict) -> None:
    labels, bins = summary["labels"], np.asarray(summary["histogram_bins"])
    centres = (bins[:-1] + bins[1:]) / 2
    colors = label_colors(labels)
    cols = st.columns(2)
    for col, key, title in (
        (cols[0], "brightness", "Brightness (mean grey level)"),
        (cols[1], "contrast", "Contrast (grey-level std)"),
    ):
        fig = go.Figure()
        for lab in labels:
            counts = np.asarray(summary[f"{key}_hist"][lab], float)
            fig.add_scatter(x=centres, y=100 * counts / max(counts.sum(), 1), name=lab, line={"color": colors[lab]})
        fig.update_layout(
            title=title, xaxis_title="value (0-255)", yaxis_title="% of the class", height=360, margin={"t": 40}
        )
        col.plotly_chart(fig)
    b, c = summary.get("brightness_percentiles", {}), summary.get("contrast_percentiles", {})
    if b and c:
        st.caption(
            f"Median brightness {b['p50']:.0f} (10-90%: {b['p10']:.0f}-{b['p90']:.0f}); median contrast "
            f"{c['p50']:.0f} (10-90%: {c['p10']:.0f}-{c['p90']:.0f})."
        )
        if c["p10"] > 70 and 120 < b["p50"] < 136:
            st.info(
                "Nearly every face has brightness ≈128 and contrast ≈74, the signature of a flat grey-level "
                "histogram: this copy of the dataset looks histogram-equalised, unlike raw camera photos."
            )


def _sizes_section(ds: ImageSet) -> None:
    frame = pd.DataFrame({"width": ds.sizes[:, 0], "height": ds.sizes[:, 1], "mode": ds.modes,
                          "label": [ds.labels[i] for i in ds.y]})  # fmt: skip
    cols = st.columns(3)
    cols[0].metric("Distinct sizes", f"{len(frame.groupby(['width', 'height'])):,}")
    cols[1].metric("Median size", f"{int(frame.width.median())}x{int(frame.height.median())}")
    cols[2].metric("Colour modes", ", ".join(sorted(set(ds.modes))))
    fig = px.scatter(
        frame, x="width", y="height", color="label", color_discrete_map=label_colors(ds.labels), opacity=0.6
    )
    fig.update_layout(height=380, margin={"t": 20})
    st.plotly_chart(fig)
    st.dataframe(pd.crosstab(frame["label"], frame["mode"]))
    st.caption('"RGB (grey)": stored in colour, but the three channels are equal.')


def _dirty_section(summary: dict, ds: ImageSet | None, stats: eda.Stats | None, key: str) -> None:
    exact, near, blank = summary["exact_duplicates"], summary["near_duplicates"], summary["blank"]
    cols = st.columns(4)
    cols[0].metric(
        "Exact duplicate groups", f"{exact['groups']:,}", help=f"{exact['redundant_images']:,} redundant copies"
    )
    cols[1].metric(
        "Groups across splits", f"{exact['cross_split_groups']:,}", help="the same image in two splits (leakage)"
    )
    cols[2].metric("Same image, two labels", f"{exact['label_conflict_groups']:,}")
    cols[3].metric("Blank images", f"{blank['count']:,}", help=f"grey-level std under {blank['threshold_std']}")
    threshold = near["threshold_bits"]
    if ds is not None and stats is not None:
        threshold = st.slider("Near-duplicate threshold (dHash bits that may differ)", 0, 8, eda.NEAR_THRESHOLD)
        pairs = _near_pairs(key, threshold, stats)
        n_pairs, n_conflicts = len(pairs), len(eda.pair_conflicts(pairs, ds.y))
    else:
        n_pairs, n_conflicts = near["pairs"], near["label_conflict_pairs"]
    cols = st.columns(2)
    cols[0].metric(f"Near-duplicate pairs (≤{threshold} bits)", f"{n_pairs:,}")
    cols[1].metric("Near-duplicate pairs with different labels", f"{n_conflicts:,}")
    st.caption(f"Near duplicates: {near['hash']}, exact copies and blank images left out.")
    if ds is None or stats is None:
        return
    blanks = np.flatnonzero(stats.blank).tolist()
    _examples("Blank images", [blanks[:12]] if blanks else [], len(blanks), ds, singles=True)
    conflicts = [g.tolist() for g in eda.label_conflicts(stats.exact_groups, ds.y)]
    _examples("The same image under two labels", conflicts[:6], len(conflicts), ds)
    leaks = [g.tolist() for g in eda.cross_split(stats.exact_groups, ds.split)]
    _examples("Exact duplicates across splits", leaks[:6], len(leaks), ds)
    near_conflicts = eda.pair_conflicts(pairs, ds.y)
    _examples("Near duplicates with different labels", near_conflicts[:6, :2].tolist(), len(near_conflicts), ds)
    _examples("Near duplicates", pairs[:6, :2].tolist(), len(pairs), ds)


def _examples(title: str, groups: list[list[int]], total: int, ds: ImageSet, singles: bool = False) -> None:
    """An expander with rows of images captioned label · split · source: one row per group of `total`,
    or (singles=True) `total` counts images and they come in one row."""
    shown = sum(len(g) for g in groups) if singles else len(groups)
    with st.expander(f"{title}: {total:,}" + (f" (first {shown} shown)" if total > shown else "")):
        if not groups:
            st.caption("No such image in this dataset.")
        for group in groups:
            captions = [f"{ds.labels[ds.y[i]]} · {ds.splits[ds.split[i]]} · {ds.sources[i]}" for i in group]
            st.image([eda.display_image(ds, i) for i in group], caption=captions, width=120, output_format="PNG")


# ----------------------------------------------------------------------------------------- page


def _summary_caption(summary: dict, started: float | None) -> None:
    """started: when the page began reading the dataset (None: the figures are the shipped ones)."""
    ready = (
        f"ready in {time.perf_counter() - started:.1f} s"
        if started is not None
        else "figures computed by the project for this very file (data/derived); images load when a tab shows them"
    )
    st.caption(
        f"{summary['dataset']}: {counted(summary['images'], 'image')}, "
        f"{counted(len(summary['labels']), 'class', 'classes')}, splits {', '.join(summary['splits'])}; {ready}."
    )


class Loaded(NamedTuple):
    """A dataset read from its files: the images, their statistics and summary, and its cache key."""

    ds: ImageSet
    stats: eda.Stats
    summary: dict
    key: str


def _load(source: str, started: float | None) -> Loaded | None:
    """The chosen dataset read from its files (None: absent or not chosen); with `started`, the
    summary's caption and the rows that could not be read are shown."""
    ds, key = _open_dataset(source)
    if ds is None:
        return None
    stats, summary = _cached(f"stats|{key}", lambda report: _stats(ds, report))
    if started is not None:
        _summary_caption(summary, started)
        if ds.problems:
            with st.expander(f"Files or rows that could not be read: {len(ds.problems):,} (open for the list)"):
                st.text("\n".join(ds.problems[:200]))
    return Loaded(ds, stats, summary, key)


def main() -> None:
    st.title("Dataset explorer")
    source = st.radio("Dataset", DATASET_CHOICES, horizontal=True)
    started = time.perf_counter()
    csv = config.find_fer2013_csv() if source == "FER2013" else None
    shipped = eda.shipped_summary(csv) if csv is not None else None
    loaded = None
    if shipped is not None:
        # The numbers shipped in data/derived were computed from this very file (same SHA-256): the
        # summary tabs draw from them at once, and the images are read only for the tabs that show
        # them (by then the start-up warm-up has usually parsed them: pages.common.start_cache_warmup).
        summary = shipped
        _summary_caption(summary, None)
        if summary.get("malformed_rows"):
            st.caption(f"Rows that could not be read: {summary['malformed_rows']:,} (left out of every figure).")
    elif (loaded := _load(source, started)) is not None:
        summary = loaded.summary
    elif source == "FER2013" and csv is None:
        st.warning(config.FER2013_MISSING_HELP)
        derived = eda.read_derived()
        if derived is None:
            st.info(
                "No derived statistics shipped either (data/derived/). With FER2013 on this machine, "
                "`python -m studio.eda --derive` writes them; meanwhile pick another source above."
            )
            return
        summary = derived
        st.subheader("FER2013 statistics computed by the project")
        st.caption(
            "Derived data shipped in data/derived/ (numbers only, no image of the dataset), "
            f"made by `{summary.get('generated_by', 'python -m studio.eda --derive')}`. "
            "Sample images, mean faces and duplicate examples need the dataset itself."
        )
    else:
        return

    def images() -> Loaded | None:
        """The images and their statistics, for the tabs that show them (None without the dataset)."""
        return loaded or (_load(source, None) if csv is not None else None)

    tabs = ["Classes", "Samples", "Mean faces", "Brightness & contrast", "Duplicates & blanks"]
    if loaded is not None and loaded.ds.root is not None:
        tabs.append("Sizes & colour modes")
    # Only the open tab runs (on_change="rerun"): the first view is the class chart alone instead of every
    # tab's images and charts at once, and a tab switch reruns from the cached statistics.
    shown = st.tabs(tabs, key=TAB_KEY, on_change="rerun")
    if shown[0].open:
        with shown[0]:
            _class_section(summary)
    if shown[1].open:
        with shown[1]:
            if (data := images()) is not None:
                _samples_section(data.ds)
            else:
                st.info(NO_SAMPLES)
    if shown[2].open:
        with shown[2]:
            if (data := images()) is not None:
                _faces_section(summary["labels"], data.stats.mean_faces, data.stats.std_faces)
            else:
                st.info("Mean and std faces are computed from the images: they need the dataset on this machine.")
    if shown[3].open:
        with shown[3]:
            _light_section(summary)
    if shown[4].open:
        with shown[4]:
            data = images()
            _dirty_section(summary, *((data.ds, data.stats, data.key) if data else (None, None, "")))
    if len(shown) > 5 and shown[5].open:
        with shown[5]:
            _sizes_section(loaded.ds)


main()
