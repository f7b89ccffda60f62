"""Model comparison: every registered model side by side (UI only; logic in studio.comparison)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from emotion import config, list_models
from emotion.labels import FER2013_LABELS
from emotion.registry import ModelInfo, ModelNotFoundError, load
from pages.common import fer2013_arrays
from studio import comparison


@st.cache_resource(show_spinner=False)
def _predictions_memo() -> dict[tuple, np.ndarray]:
    """PrivateTest probabilities per (model, its files' mtime, dataset key); computed with a progress bar."""
    return {}


def _table_section(models: list[ModelInfo]) -> pd.DataFrame:
    table = comparison.model_table(models)
    st.dataframe(comparison.styled_table(table))
    st.caption(
        "FER2013 PrivateTest (never used for training or model selection). TTA = averaged with the horizontal "
        "flip. Latency: serving runtime, batch 1, median per face. The best value of each column is highlighted; "
        "click a header to sort."
    )
    return table


def _per_class_section(models: list[ModelInfo]) -> None:
    tta = st.toggle("With flip TTA", key="f1_tta")
    frame = comparison.per_class_f1(models, tta=tta)
    if frame.empty:
        st.info("No evaluated model yet.")
        return
    fig = px.bar(frame, x="label", y="f1", color="model", barmode="group", labels={"f1": "F1 %"}, text_auto=".0f")
    fig.update_layout(height=380, margin={"t": 20})
    st.plotly_chart(fig)


def _confusion_section(evaluated: list[ModelInfo]) -> None:
    if not evaluated:
        st.info("No evaluated model yet.")
        return
    names = [m.name for m in evaluated]
    controls = st.columns(4)
    first = controls[0].selectbox("Left model", names, index=0)
    second = controls[1].selectbox("Right model", names, index=min(1, len(names) - 1))
    mode = controls[2].radio("Show", ["Counts", "Row-normalised %"], horizontal=True)
    tta = controls[3].toggle("With flip TTA", key="cm_tta")
    by_name = {m.name: m for m in evaluated}
    for side, (column, name) in enumerate(zip(st.columns(2), (first, second), strict=True)):
        result = comparison.confusion(by_name[name].metrics, tta=tta, normalise=mode != "Counts")
        if result is None:
            column.info(f"{name}: no confusion matrix in its metrics.")
            continue
        matrix, labels = result
        fig = px.imshow(
            matrix, x=labels, y=labels, color_continuous_scale="Blues", text_auto=".0f" if mode == "Counts" else ".1f",
            labels={"x": "predicted", "y": "true", "color": "count" if mode == "Counts" else "% of row"},
        )  # fmt: skip
        fig.update_layout(title=name, height=460, margin={"t": 50, "l": 10, "r": 10}, coloraxis_showscale=False)
        column.plotly_chart(fig, key=f"confusion_{side}")


def _pareto_section(table: pd.DataFrame) -> None:
    points = []
    for name, row in table.iterrows():
        points.append((name, row["Latency ms/face"], row["Accuracy %"]))
        points.append((f"{name} + TTA", row["Latency TTA ms/face"], row["Accuracy TTA %"]))
    frame = pd.DataFrame(points, columns=["model", "latency", "accuracy"]).dropna()
    frame = frame[frame["latency"] > 0].assign(log_latency=lambda f: np.log10(f["latency"].astype(float)))  # log axis
    if frame.empty:
        st.info("No model with both accuracy and latency measured yet.")
        return
    on_front = comparison.pareto_front(frame["latency"].to_numpy(), frame["accuracy"].to_numpy())
    frame["position"] = np.where(on_front, "Pareto front", "dominated")
    palette = {"Pareto front": "#d62728", "dominated": "#7f7f7f"}
    fig = px.scatter(
        frame, x="latency", y="accuracy", text="model", color="position", color_discrete_map=palette,
        labels={"latency": "latency (ms per face, log scale)", "accuracy": "PrivateTest accuracy %"}, log_x=True,
    )  # fmt: skip
    front = frame[on_front].sort_values("latency")
    line = {"color": palette["Pareto front"], "dash": "dot"}
    fig.add_trace(go.Scatter(x=front["latency"], y=front["accuracy"], mode="lines", line=line, showlegend=False))
    # Log scale: single nets (under 1 ms to 2 ms) would crowd the left tenth of a linear axis that
    # reaches the committees with TTA (over 15 ms). Plotly takes a log axis's range in log10 units.
    x_range = (float(frame["log_latency"].min()) - 0.1, float(frame["log_latency"].max()) + 0.15)
    pad = 0.08 * max(1.0, float(frame["accuracy"].max() - frame["accuracy"].min()))
    y_range = (float(frame["accuracy"].min()) - pad, float(frame["accuracy"].max()) + pad)
    frame = frame.sort_values("accuracy", ascending=False)  # the best models get the first pick
    positions = comparison.label_positions(frame["log_latency"], frame["accuracy"], frame["model"], x_range, y_range)
    label_at = dict(zip(frame["model"], positions, strict=True))
    for trace in fig.data:  # one trace per colour; place each of its labels
        if trace.mode == "markers+text":
            trace.textposition = [label_at[text] for text in trace.text]
    fig.update_layout(height=420, margin={"t": 20}, xaxis_range=list(x_range), yaxis_range=list(y_range))
    st.plotly_chart(fig)
    st.caption("On the front: no other model is both at least as fast and at least as accurate.")


def _history_section(models: list[ModelInfo]) -> None:
    frame = comparison.history_frame(models)
    if frame.empty:
        st.info("No training history yet (committees have none).")
        return
    kind = st.radio("Curve", ["accuracy", "loss", "learning rate"], horizontal=True)
    wanted = {"accuracy": ["accuracy", "val_accuracy"], "loss": ["loss", "val_loss"], "learning rate": ["lr"]}[kind]
    if kind == "learning rate" and "lr" not in set(frame.metric):
        wanted = ["learning_rate"]
    shown = frame[frame.metric.isin(wanted)]
    fig = px.line(shown, x="epoch", y="value", color="model", line_dash="metric", markers=True)
    fig.update_layout(height=380, margin={"t": 20}, yaxis_title=kind)
    st.plotly_chart(fig)


def _published_section(models: list[ModelInfo]) -> None:
    frame = comparison.published_table(models)
    fig = px.bar(
        frame, x="Accuracy %", y="Result", color="Source", orientation="h", text="Range",
        color_discrete_map={"quoted": "#9aa5b1", "measured here": "#1f77b4"},
    )  # fmt: skip
    order = frame["Result"].tolist()[::-1]  # highest at the top, quoted and measured interleaved
    fig.update_layout(height=120 + 34 * len(frame), margin={"t": 20}, xaxis_range=[0, 100])
    fig.update_yaxes(categoryorder="array", categoryarray=order)
    st.plotly_chart(fig)
    st.dataframe(frame, hide_index=True)
    st.caption(
        '"quoted": taken from the literature or the project brief, not re-run here. "measured here": our '
        "metrics.json on FER2013 PrivateTest. Ranges are shown by their lower end."
    )


def _mistakes_section(models: list[ModelInfo]) -> None:
    csv = config.find_fer2013_csv()
    if csv is None:
        st.info(f"The most confident mistakes need FER2013 on this machine. {config.FER2013_MISSING_HELP}")
        return
    usable = [m for m in models if comparison.label_index_map(m.labels, FER2013_LABELS) is not None]
    if not usable:
        st.info("No registered model predicts FER2013's seven classes.")
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
            st.write("no mistake")
            continue
        captions = [
            f"{model_info.labels[probs[i].argmax()]} {probs[i].max():.0%} · {ds.sources[test[i]]}" for i in indices
        ]
        st.image([ds.thumbs[test[i]] for i in indices], caption=captions, width=96, output_format="PNG")


# ----------------------------------- calibration, test-time crops, weakest classes (accuracy helper)


def _calibration_section(models: list[ModelInfo]) -> None:
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
    st.dataframe(table.set_index("Model").style.format("{:.3f}"))
    st.caption(
        "Reliability on FER2013 PrivateTest: faces binned by the top probability shown; a point on the "
        "diagonal means a face shown at 76% is right 76% of the time. The temperature is fitted on PublicTest "
        "and served everywhere (pages, live, video, CLI, reports). ECE: expected calibration error, 15 bins."
    )


def _tta_section(models: list[ModelInfo]) -> None:
    table = comparison.tta_table(models)
    if table.empty:
        st.info("No model has test-time augmentation figures yet: run `python -m training.evaluate --all`.")
        return
    fig = px.scatter(
        table, x="Latency ms/face", y="Accuracy %", color="TTA", symbol="TTA", hover_name="Model", log_x=True,
        labels={"Latency ms/face": "latency (ms per face, log scale)", "Accuracy %": "PrivateTest accuracy %"},
    )  # fmt: skip
    fig.update_layout(height=400, margin={"t": 20})
    st.plotly_chart(fig)
    formats = {"Accuracy %": "{:.2f}", "PublicTest acc. %": "{:.2f}", "Latency ms/face": "{:.2f}"}
    st.dataframe(table.style.format(formats), hide_index=True)
    st.caption(
        "TTA: flip = the face and its mirror; ten crops = corners and centre of a slightly enlarged face, each "
        "mirrored. Each net serves (when TTA is ticked) the mode better on PublicTest; accuracy is on PrivateTest."
    )


def _weak_classes_section(models: list[ModelInfo]) -> None:
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


def main() -> None:
    st.title("Model comparison")
    models = list_models()
    if not models:
        st.info(
            f"No model is registered yet (none in {config.MODELS_DIR}). Train one with "
            "`python -m training.train --model vgg`, then evaluate it with `python -m training.evaluate`."
        )
        st.subheader("Published results on FER2013")
        _published_section(models)
        return
    evaluated = [m for m in models if m.metrics]
    if len(evaluated) < len(models):
        missing = ", ".join(m.name for m in models if not m.metrics)
        st.caption(f"Not evaluated yet (no metrics.json): {missing}. Run `python -m training.evaluate`.")
    table = _table_section(models)
    tabs = st.tabs(["Per-class F1", "Confusion matrices", "Accuracy vs latency", "Training curves", "Published results",
                    "Confident mistakes", "Calibration", "Test-time crops", "Fear and sad"])  # fmt: skip
    with tabs[0]:
        _per_class_section(evaluated)
    with tabs[1]:
        _confusion_section(evaluated)
    with tabs[2]:
        _pareto_section(table)
    with tabs[3]:
        _history_section(models)
    with tabs[4]:
        _published_section(models)
    with tabs[5]:
        _mistakes_section(models)
    with tabs[6]:
        _calibration_section(evaluated)
    with tabs[7]:
        _tta_section(evaluated)
    with tabs[8]:
        _weak_classes_section(evaluated)


main()
