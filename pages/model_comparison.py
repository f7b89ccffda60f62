"""Model comparison: every registered model side by side (UI only; logic in studio.comparison).

The page is a table and a list of SECTIONS, one function each taking the same View; a new section
is a function and a line in SECTIONS."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from emotion import config, list_models
from emotion.labels import FER2013_LABELS
from emotion.registry import ModelInfo, ModelNotFoundError, default_model_name, load
from pages.common import fer2013_arrays
from studio import comparison

EVALUATE_HINT = "Measure one with `python -m training.evaluate --model NAME`."
MAX_LABELLED_POINTS = 16  # above this the accuracy-latency chart names only the front and family roots
ROW_PX = 35  # st.dataframe's row height: the table is sized to show every row without scrolling


@dataclass(frozen=True)
class View:
    """What every section draws from: the models shown (lineage checkpoints folded or not), in
    family order, their table rows, lineage and one colour each."""

    shown: list[ModelInfo]
    table: pd.DataFrame  # comparison.model_table of every registered model, indexed by name
    lineage: dict[str, comparison.Lineage]
    colors: dict[str, str]  # model -> CSS colour, grouped by family (comparison.family_colors)
    folded: bool  # True when lineage checkpoints are hidden

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.shown]

    @property
    def evaluated(self) -> list[ModelInfo]:
        return [m for m in self.shown if m.metrics]


@st.cache_resource(show_spinner=False)
def _predictions_memo() -> dict[tuple, np.ndarray]:
    """PrivateTest probabilities per (model, its files' mtime, dataset key); computed with a progress bar."""
    return {}


# ------------------------------------------------------------------------------------ sections


def _table_section(view: View) -> None:
    """The models table: key columns at first (model name pinned), every column on demand."""
    all_columns = st.toggle(
        "All columns",
        key="all_columns",
        help="Parameters, PublicTest and unseen-image accuracy, the TTA served, latency with it, number of test "
        "images, evaluation date.",
    )
    table = view.table.loc[view.names].copy()
    if view.folded:  # say on each family's root what folding hides
        for root, text in comparison.family_summary(view.table, view.lineage, view.names).items():
            if root in table.index:
                table.loc[root, "Lineage"] = text
    columns = list(comparison.KEY_COLUMNS)  # the key columns keep their place; the others follow them
    columns += [c for c in table.columns if c not in columns] if all_columns else []
    st.dataframe(
        comparison.styled_table(table),
        column_order=columns,
        column_config={
            "_index": st.column_config.TextColumn("Model", pinned=True),
            "Lineage": st.column_config.TextColumn(width="large"),
        },
        height=ROW_PX * (len(table) + 1) + 3,
    )
    st.caption(
        "FER2013 PrivateTest (never used for training or model selection). TTA = each model's served test-time "
        "augmentation: the face and its mirror, or ten crops, whichever won on PublicTest faces found by the app's "
        "detector (the TTA column of All columns; the Test-time crops tab compares them). The best value of each "
        "column is highlighted; click a header to sort."
    )
    _latency_caption(view.shown)


def _latency_caption(models: list[ModelInfo]) -> None:
    if note := comparison.latency_provenance(models):
        st.caption(note)


def _per_class_section(view: View) -> None:
    """Per-class F1 as a heatmap, one row per model in family order (reads with any number of models)."""
    tta = st.toggle("With TTA", key="f1_tta", help="Each model's served test-time augmentation: flip or ten crops.")
    frame = comparison.per_class_f1(view.evaluated, tta=tta)
    if frame.empty:
        st.info(f"No evaluated model yet. {EVALUATE_HINT}")
        return
    matrix = frame.pivot_table(index="model", columns="label", values="f1", aggfunc="first")
    labels = [label for label in view.evaluated[0].labels if label in matrix.columns]
    labels += [label for label in matrix.columns if label not in labels]
    matrix = matrix.reindex(index=[n for n in view.names if n in matrix.index], columns=labels)
    matrix.insert(0, "macro", matrix.mean(axis=1))
    # Shade by rank within each column (best model of a class darkest), so that a class every model
    # finds easy (happy) does not wash out the differences; the cells print the F1 itself.
    low, high = matrix.min(), matrix.max()
    shade = (matrix - low) / (high - low).where(high > low, 1.0)
    fig = go.Figure(
        go.Heatmap(
            z=shade.to_numpy(), x=list(matrix.columns), y=list(matrix.index), text=matrix.round(1).to_numpy(),
            texttemplate="%{text:.1f}", colorscale="Blues", showscale=False, zmin=0, zmax=1,
            hovertemplate="%{y}, %{x}: F1 %{text:.1f} %<extra></extra>",
        )
    )  # fmt: skip
    fig.update_xaxes(side="top")
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(height=90 + 30 * len(matrix), margin={"t": 40, "b": 10})
    st.plotly_chart(fig)
    st.caption(
        "F1 % per class on PrivateTest; macro = their mean. The darker a cell, the better that model does on "
        "that class compared with the other models shown. Rows grouped by backbone family."
    )


def _confusion_section(view: View) -> None:
    evaluated = view.evaluated
    if not evaluated:
        st.info(f"No evaluated model yet. {EVALUATE_HINT}")
        return
    names = [m.name for m in evaluated]
    controls = st.columns(4)
    first = controls[0].selectbox("Left model", names, index=0)
    second = controls[1].selectbox("Right model", names, index=min(1, len(names) - 1))
    mode = controls[2].radio("Show", ["Counts", "Row-normalised %"], horizontal=True)
    tta = controls[3].toggle("With TTA", key="cm_tta", help="Each model's served test-time augmentation.")
    by_name = {m.name: m for m in evaluated}
    for side, (column, name) in enumerate(zip(st.columns(2), (first, second), strict=True)):
        result = comparison.confusion(by_name[name].metrics, tta=tta, normalise=mode != "Counts")
        if result is None:
            column.info(f"{name}: no confusion matrix in its metrics. {EVALUATE_HINT}")
            continue
        matrix, labels = result
        fig = px.imshow(
            matrix, x=labels, y=labels, color_continuous_scale="Blues", text_auto=".0f" if mode == "Counts" else ".1f",
            labels={"x": "predicted", "y": "true", "color": "count" if mode == "Counts" else "% of row"},
        )  # fmt: skip
        fig.update_layout(title=name, height=460, margin={"t": 50, "l": 10, "r": 10}, coloraxis_showscale=False)
        column.plotly_chart(fig, key=f"confusion_{side}")


def _pareto_section(view: View) -> None:
    """Accuracy against latency on a log axis with 1-2-5 ticks; a colour per model (shades of its
    family's hue), circles without TTA and diamonds with it; the Pareto front joined by a line."""
    chart = comparison.pareto_points(view.table.loc[view.names], view.lineage, MAX_LABELLED_POINTS)
    if chart is None:
        st.info(f"No model with both accuracy and latency measured yet. {EVALUATE_HINT}")
        return
    frame, x_range, y_range = chart
    fig = go.Figure()
    sizes = pd.Series([view.lineage[n].family for n in frame["model"].unique()]).value_counts()
    front = frame[frame["front"]].sort_values("latency")
    fig.add_scatter(x=front["latency"], y=front["accuracy"], mode="lines", name="Pareto front",
                    line={"color": "#888", "dash": "dot"}, hoverinfo="skip")  # fmt: skip
    for name in view.names:
        pts = frame[frame["model"] == name]
        if pts.empty:
            continue
        family = view.lineage[name].family
        title = family if sizes[family] > 1 else None  # a family of one: its name once, not twice
        fig.add_scatter(
            x=pts["latency"], y=pts["accuracy"], mode="markers+text", name=name, text=pts["shown_label"],
            customdata=pts["label"],
            textposition=pts["position"].tolist(), legendgroup=family, legendgrouptitle_text=title,
            marker={"color": view.colors[name], "size": 11, "symbol": np.where(pts["tta"], "diamond", "circle"),
                    "line": {"width": np.where(pts["front"], 2, 0), "color": "black"}},
            hovertemplate="%{customdata}<br>%{x:.2f} ms per face<br>%{y:.1f} %<extra></extra>",
        )  # fmt: skip
    ticks = comparison.log_ticks(10 ** x_range[0], 10 ** x_range[1])
    fig.update_xaxes(type="log", range=list(x_range), tickvals=ticks, ticktext=[comparison.tick_text(t) for t in ticks],
                     title="latency (ms per face, log scale)")  # fmt: skip
    fig.update_yaxes(range=list(y_range), title="PrivateTest accuracy %")
    fig.update_layout(
        height=520, margin={"t": 20}, legend={"groupclick": "toggleitem", "traceorder": "grouped", "tracegroupgap": 12}
    )
    st.plotly_chart(fig)
    st.caption(
        "Circles: one pass; diamonds: with the model's served TTA (flip or ten crops). Outlined and joined by "
        "the dotted line: the Pareto front "
        "(no other model is both at least as fast and at least as accurate). Hover a point for its name; click a "
        "legend entry to hide a model."
    )
    _latency_caption(view.shown)


def _history_section(view: View) -> None:
    frame = comparison.history_frame(view.shown)
    if frame.empty:
        more = " Turn on 'Show lineage checkpoints' above to include the other runs." if view.folded else ""
        st.info(f"No training history among the models shown (committees have none; `python -m training.train` "
                f"writes one beside each model it trains).{more}")  # fmt: skip
        return
    controls = st.columns(2)
    kind = controls[0].radio("Curve", ["accuracy", "loss", "learning rate"], horizontal=True)
    split = controls[1].radio("Split", ["validation (PublicTest)", "training"], horizontal=True,
                              disabled=kind == "learning rate")  # fmt: skip
    metric = {"accuracy": "accuracy", "loss": "loss", "learning rate": "lr"}[kind]
    if kind == "learning rate" and "lr" not in set(frame.metric):
        metric = "learning_rate"
    elif kind != "learning rate" and split.startswith("validation"):
        metric = f"val_{metric}"
    shown = frame[frame.metric == metric]
    fig = px.line(
        shown, x="epoch", y="value", color="model", color_discrete_map=view.colors,
        category_orders={"model": [n for n in view.names if n in set(shown.model)]},
    )  # fmt: skip
    _group_legend(fig, view)
    fig.update_layout(height=460, margin={"t": 20}, yaxis_title=f"{kind}, {split}" if kind != "learning rate" else kind)
    st.plotly_chart(fig)
    st.caption("A fine-tune or restart starts again at epoch 1 from its parent's weights (see the table's Lineage).")


def _group_legend(fig: go.Figure, view: View) -> None:
    """One legend group per backbone family (a title only over families with several models)."""
    families = [view.lineage[trace.name].family for trace in fig.data if trace.name in view.lineage]
    for trace in fig.data:
        if trace.name in view.lineage:
            family = view.lineage[trace.name].family
            title = family if families.count(family) > 1 else None
            trace.update(legendgroup=family, legendgrouptitle_text=title)
    fig.update_layout(legend={"groupclick": "toggleitem", "title": None, "traceorder": "grouped", "tracegroupgap": 12})


def _published_section(view: View) -> None:
    _published(view.shown)


def _published(models: list[ModelInfo]) -> None:
    frame = comparison.published_table(models)
    fig = px.bar(
        frame, x="Accuracy %", y="Result", color="Source", orientation="h", text="Range",
        color_discrete_map={"quoted": "#9aa5b1", "measured here": "#1f77b4"},
    )  # fmt: skip
    order = frame["Result"].tolist()[::-1]  # highest at the top, quoted and measured interleaved
    fig.update_layout(height=120 + 30 * len(frame), margin={"t": 20}, xaxis_range=[0, 100])
    fig.update_yaxes(categoryorder="array", categoryarray=order, title=None)
    st.plotly_chart(fig)
    st.dataframe(
        frame, hide_index=True, column_config={"Accuracy %": st.column_config.NumberColumn(format="%.1f")},
        height=ROW_PX * (len(frame) + 1) + 3,
    )  # fmt: skip
    st.caption(
        '"quoted": taken from the literature or the project brief, not re-run here. "measured here": our '
        "metrics.json on FER2013 PrivateTest. Ranges are shown by their lower end."
    )


def _mistakes_section(view: View) -> None:
    csv = config.find_fer2013_csv()
    if csv is None:
        st.info(f"The most confident mistakes need FER2013 on this machine. {config.FER2013_MISSING_HELP}")
        return
    usable = [m for m in view.shown if comparison.label_index_map(m.labels, FER2013_LABELS) is not None]
    if not usable:
        st.info(
            "No model shown predicts FER2013's seven classes; train one with `python -m training.train --model vgg`."
        )
        return
    cols = st.columns([2, 1, 1])
    name = cols[0].selectbox("Model", [m.name for m in usable], key="mistakes_model")
    per_class = cols[1].slider("Per class", 3, 12, 6)
    if not cols[2].button("Find mistakes", type="primary") and not st.session_state.get("mistakes_shown"):
        st.caption("Reads the model's saved PrivateTest predictions (else runs it once on the 3,589 faces).")
        return
    st.session_state["mistakes_shown"] = True
    info = csv.stat()
    ds = fer2013_arrays(str(csv), info.st_mtime_ns, info.st_size)
    test = np.flatnonzero(ds.split == ds.splits.index("PrivateTest"))
    model_info = next(m for m in usable if m.name == name)
    key = (name, comparison.models_signature([model_info]), str(csv), info.st_mtime_ns)
    memo = _predictions_memo()
    mapping = comparison.label_index_map(model_info.labels, FER2013_LABELS)
    if key not in memo:  # training.evaluate saved them beside the metrics: read, do not recompute
        saved = comparison.saved_predictions(model_info, mapping[ds.y[test]])
        if saved is not None:
            memo[key] = saved
    if key not in memo:
        try:
            model = load(name)
        except ModelNotFoundError as error:
            st.error(str(error))
            return
        bar = st.progress(0.0, text=f"Running {name} on PrivateTest")
        memo[key] = comparison.predict_images(model, ds.thumbs[test], progress=lambda f: bar.progress(f))
        bar.empty()
    probs = memo[key]
    y_true = mapping[ds.y[test]]
    accuracy = float((probs.argmax(axis=1) == y_true).mean())
    st.caption(
        f"{name}: {accuracy:.1%} of {len(test):,} PrivateTest faces right (no TTA). Wrong with the highest confidence:"
    )
    for k, indices in comparison.confident_mistakes(probs, y_true, per_class).items():
        st.markdown(f"**true: {model_info.labels[k]}**")
        if not len(indices):
            st.caption("No mistake on this class.")
            continue
        captions = [
            f"{model_info.labels[probs[i].argmax()]} {probs[i].max():.0%} · {ds.sources[test[i]]}" for i in indices
        ]
        st.image([ds.thumbs[test[i]] for i in indices], caption=captions, width=96, output_format="PNG")


# ----------------------------------------------- calibration, test-time crops, the weakest classes


def _calibration_section(view: View) -> None:
    models = view.evaluated
    table = comparison.calibration_table(models)
    if table.empty:
        st.info("No model has calibration figures yet: run `python -m training.evaluate --all`.")
        return
    frame = comparison.reliability_frame(models)
    names = table["Model"].tolist()
    name = st.selectbox("Model", names, key="calibration_model")
    shown = frame[frame.model == name]
    fig = px.scatter(
        shown, x="confidence", y="accuracy", color="calibration", size="count", size_max=18,
        labels={"confidence": "confidence shown %", "accuracy": "right that often %"},
        category_orders={"calibration": ["before", "after"]},
    )  # fmt: skip
    fig.add_trace(go.Scatter(x=[0, 100], y=[0, 100], mode="lines", line={"dash": "dot", "color": "grey"},
                             name="perfectly calibrated"))  # fmt: skip
    fig.update_layout(height=420, margin={"t": 20}, xaxis_range=[0, 100], yaxis_range=[0, 100])
    st.plotly_chart(fig)
    # ECE to four decimals: the target is 0.03, and 0.0295 must not read as 0.030.
    st.dataframe(table.set_index("Model").style.format("{:.3f}", subset=["Temperature"]).format(
        "{:.4f}", subset=[c for c in table.columns if c.startswith("ECE")]))  # fmt: skip
    st.caption(
        "Reliability on FER2013 PrivateTest: faces binned by the top probability shown; a point on the "
        "diagonal means a face shown at 76% is right 76% of the time. A temperature, and for each emotion a "
        "scale and a bias (the bias takes back the share of answers training's class weights gave the rare "
        "classes), are fitted on PublicTest and served everywhere (pages, live, video, CLI, reports). ECE: "
        "expected calibration error, 15 bins."
    )


def _tta_section(view: View) -> None:
    models = view.evaluated
    table = comparison.tta_table(models)
    if table.empty:
        st.info("No model has test-time augmentation figures yet: run `python -m training.evaluate --all`.")
        return
    fig = px.scatter(
        table, x="Latency ms/face", y="Accuracy %", color="TTA", symbol="TTA", hover_name="Model", log_x=True,
        labels={"Latency ms/face": "latency (ms per face, log scale)", "Accuracy %": "PrivateTest accuracy %"},
    )  # fmt: skip
    latency = table["Latency ms/face"].dropna()
    if not latency.empty:  # plain numbers (0.5, 1, 2, 5 ...), as on the accuracy-latency chart
        ticks = comparison.log_ticks(float(latency.min()), float(latency.max()))
        fig.update_xaxes(tickvals=ticks, ticktext=[comparison.tick_text(t) for t in ticks])
    fig.update_layout(height=400, margin={"t": 20})
    st.plotly_chart(fig)
    formats = {
        "Accuracy %": "{:.2f}", "PublicTest acc. %": "{:.2f}", "PublicTest detected %": "{:.2f}",
        "Latency ms/face": "{:.2f}",
    }  # fmt: skip
    st.dataframe(table.style.format(formats), hide_index=True)
    st.caption(
        "TTA: flip = the face and its mirror; ten crops = corners and centre of a slightly enlarged face, each "
        "mirrored. Each net serves (when TTA is ticked) the mode better on PublicTest faces found by the app's "
        "detector in generated scenes (PublicTest detected %: what photos and the webcam meet), else on PublicTest's "
        "crops; accuracy is on PrivateTest's crops."
    )
    _latency_caption(models)


def _weak_classes_section(view: View) -> None:
    models = view.evaluated
    table = comparison.weak_class_recall(models)
    if table.empty:
        st.info("No evaluated model has fear and sad figures.")
        return
    fig = px.bar(table, x="Model", y="Recall %", color="Class", barmode="group", text_auto=".0f")
    fig.update_layout(height=380, margin={"t": 20}, yaxis_range=[0, 100])
    st.plotly_chart(fig)
    st.dataframe(table.style.format({"Recall %": "{:.1f}", "Recall TTA %": "{:.1f}", "Support": "{:,.0f}"}),
                 hide_index=True)  # fmt: skip
    st.caption(
        "Recall on FER2013 PrivateTest: of the faces labelled fear (or sad), the share the model calls so. These "
        "are FER2013's weakest classes for every model here. Published papers give overall accuracy (see Published "
        "results); no per-class recall from the literature is quoted here, since none was checked against its source."
    )


# (tab title, section): the tabs under the table, in order. Add a section here.
SECTIONS: list[tuple[str, Callable[[View], None]]] = [
    ("Per-class F1", _per_class_section),
    ("Confusion matrices", _confusion_section),
    ("Accuracy vs latency", _pareto_section),
    ("Training curves", _history_section),
    ("Published results", _published_section),
    ("Confident mistakes", _mistakes_section),
    ("Calibration", _calibration_section),
    ("Test-time crops", _tta_section),
    ("Fear and sad", _weak_classes_section),
]


# ----------------------------------------------------------------------------------------- page


def _view(models: list[ModelInfo]) -> View:
    """The View for the lineage toggle's state (shown only when some model is a checkpoint)."""
    lineage = comparison.lineages(models)
    order = comparison.family_order(models, lineage)
    checkpoints = [n for n in order if lineage[n].is_checkpoint]
    show_all = True
    if checkpoints:
        show_all = st.toggle(
            f"Show lineage checkpoints ({len(checkpoints)})", key="show_checkpoints",
            help="Warm restarts, fine-tunes, runs with other seeds and distilled models, read from each model's "
                 "config.json (init_from, teacher, seed). Hidden, each backbone shows its first run from scratch.",
        )  # fmt: skip
    # The app's default stays in view even when it is a checkpoint: it is the model users get.
    default = default_model_name()
    names = order if show_all else [n for n in order if not lineage[n].is_checkpoint or n == default]
    by_name = {m.name: m for m in models}
    if not show_all:
        kept = f", the app's default ({default})" if default in checkpoints else ""
        st.caption(
            f"{len(names)} of {len(models)} models: each backbone's first run from scratch{kept} and the "
            f"committees. Folded: {', '.join(n for n in checkpoints if n != default)}."
        )
    return View(
        shown=[by_name[n] for n in names],
        table=comparison.model_table(models),
        lineage=lineage,
        colors=comparison.family_colors(order, lineage),
        folded=not show_all,
    )


def main() -> None:
    st.title("Model comparison")
    models = list_models()
    if not models:
        st.info(
            f"No model is registered yet (none in {config.MODELS_DIR}). Train one with "
            "`python -m training.train --model vgg`, then evaluate it with `python -m training.evaluate --model vgg`."
        )
        st.subheader("Published results on FER2013")
        _published([])
        return
    missing = [m.name for m in models if not m.metrics]
    if missing:
        st.caption(f"Not evaluated yet (no metrics.json): {', '.join(missing)}. {EVALUATE_HINT}")
    view = _view(models)
    _table_section(view)
    for tab, (_, section) in zip(st.tabs([title for title, _ in SECTIONS]), SECTIONS, strict=True):
        with tab:
            section(view)


main()
