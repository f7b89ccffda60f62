"""Classify a photo: upload one or several (a batch) or take a picture; model and detector options;
numbered faces on the photo, per-face cards, valence-arousal plane, Grad-CAM, a second model side by
side; saved once to the user's history (studio.analyses) after the result is on screen, PDF and JSON
downloads built when clicked. UI only."""

from __future__ import annotations

import logging
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, Future, wait

import pandas as pd
import streamlit as st

import emotion
from emotion import config, explain
from emotion.detectors import DETECTOR_DESCRIPTIONS
from pages.common import (
    counted,
    installed_models,
    md_escape,
    preload_result_elements,
    require_user,
    show_error,
    store,
    worker_pool,
    working,
)
from pages.result_view import GRADCAM_KEY, show_analysis
from studio import analyses, figures
from studio.analyses import AnalysisResult

log = logging.getLogger(__name__)
RESULT_KEY = "classify_result"  # session_state: {"key", "result", "input", "upload", "started", "saving"}
GALLERY_WIDTH = 640  # px of a batch gallery picture (a third of the page)
BATCH_KEY = "classify_batch"  # session_state: {"key", "input", "items": [(name, AnalysisResult | error)]}


def _model_label(info: emotion.ModelInfo) -> str:
    accuracy = info.metrics.get("accuracy")
    measured = f"{accuracy:.1%} test accuracy" if isinstance(accuracy, (int, float)) else "not evaluated"
    return f"{info.name} ({info.kind}, {measured})"


def _analyze(data: bytes, name: str | None, source: str, options: dict, user, *, detect: bool = True):
    """analyses.analyze_photo in the worker pool (bounded: many users clicking at once queue instead of
    thrashing), which then saves it: (result, the save's Future, None) as soon as the result is ready
    (the page shows it while the save runs, and a click interrupting the page does not lose the save),
    or (None, None, message) with every failure turned into a message."""
    ready: Future = Future()
    job = worker_pool().submit(
        analyses.analyze_photo, store(), user, data, name=name, source=source, options=options, detect=detect,
        on_ready=ready.set_result,
    )  # fmt: skip
    wait([ready, job], return_when=FIRST_COMPLETED)
    try:
        if not ready.done():
            job.result()  # the analysis failed: its error
        return ready.result(), job, None
    except emotion.ImageLoadError as error:
        return None, None, f"This file cannot be analysed: {error}"
    except Exception:  # any other failure: logged with its traceback, the user gets a plain message
        log.exception("analysis of %r failed", name)
        return None, None, "Something went wrong while analysing this image. It has been logged; try another photo."


def _analyze_and_keep(
    data: bytes, name: str | None, source: str, options: dict, user, signature, started: float, **kw
) -> None:
    """One photo: analysed (a still "Analyzing" note), kept in the session with the input it belongs to
    and when the click's run started (the caption's wait); saved when shown."""
    with working("Analyzing the photo…"):
        result, saving, error = _analyze(data, name, source, options, user, **kw)
    if error:
        st.session_state.pop(RESULT_KEY, None)
        show_error(error)
        return
    st.session_state[RESULT_KEY] = {
        "key": uuid.uuid4().hex, "result": result, "input": signature, "saving": saving,
        "upload": {"data": data, "name": name, "source": source}, "started": started,
    }  # fmt: skip


def _analyze_batch(files: list, options: dict, user, signature) -> None:
    """Several photos, one after the other with a progress bar; a bad file gets its message, the rest go on."""
    bar = st.progress(0.0, text="Analyzing the photos…")
    items = []
    for done, upload in enumerate(files, start=1):
        result, saving, error = _analyze(upload.getvalue(), upload.name, "photo", options, user)
        if saving is not None:
            saving.result()  # one photo saved before the next begins
        items.append((upload.name, result if result is not None else error))
        bar.progress(done / len(files), text=f"Analyzed {done} of {len(files)} photos")
    bar.empty()
    st.session_state[BATCH_KEY] = {"key": uuid.uuid4().hex, "input": signature, "items": items}


def show_batch(batch: dict) -> None:
    """Results table, gallery of the annotated photos, one CSV and one JSON for the whole batch."""
    items = batch["items"]
    good = [(n, r) for n, r in items if isinstance(r, AnalysisResult)]
    faces = sum(len(r.faces) for _, r in good)
    st.subheader(f"{counted(len(items), 'photo')}: {counted(faces, 'face')} found")
    saved = [r for _, r in good if r.saved]
    failed = [r.save_error for _, r in good if r.save_error]
    if saved:
        st.success(f"{counted(len(saved), 'photo')} with faces in your history, one entry each.")
    for error in dict.fromkeys(failed):
        show_error(error)
    for name, outcome in items:
        if not isinstance(outcome, AnalysisResult):
            show_error(f"{name}: {outcome}")
    rows = analyses.batch_rows(items)
    found = [r for r in rows if r["face"] is not None]
    if found:  # one row per face; photos without a face are named below (no empty cells in the table)
        table = pd.DataFrame(found).drop(columns="error")
        shares = [column for column in table.columns if column not in ("file", "analysis", "face", "label")]
        table[shares] *= 100  # shown as percentages, as everywhere on the page; the CSV keeps 0-1
        percent = st.column_config.NumberColumn(format="%.1f%%")
        st.dataframe(table, hide_index=True, width="stretch", column_config=dict.fromkeys(shares, percent))
    faceless = [n for n, r in good if not r.faces]
    if faceless:
        st.caption("No face found in " + ", ".join(md_escape(n) for n in faceless) + " (not saved).")
    st.markdown("**Gallery**")
    columns = st.columns(3)
    for i, (name, result) in enumerate(good):
        summary = ", ".join(f"{f['index']} {f['label']}" for f in result.faces) or "no face"
        picture = result.display_jpeg(GALLERY_WIDTH)
        columns[i % 3].image(picture, caption=md_escape(f"{name}: {summary}"), width="stretch")
    left, right = st.columns(2)
    left.download_button("Batch CSV (one row per face)", analyses.batch_csv(rows), "emotion-batch.csv", "text/csv",
                         key=f"batch_csv_{batch['key']}", on_click="ignore", width="stretch")  # fmt: skip
    right.download_button("Batch JSON (every report)", lambda: analyses.batch_json(items).encode(),
                          "emotion-batch.json", "application/json", key=f"batch_json_{batch['key']}",
                          on_click="ignore", width="stretch")  # fmt: skip


def show_comparison(kept: dict, other: str, tta: bool) -> None:
    """The same faces classified by a second model, side by side; disagreements called out."""
    result: AnalysisResult = kept["result"]
    cache = kept.setdefault("comparisons", {})
    if (other, tta) not in cache:
        with working(f"Classifying the same faces with {other}…"):
            cache[(other, tta)] = analyses.compare_models(result, other, tta)
    comparison = cache[(other, tta)]
    first, second = comparison.models
    st.markdown(f"**{first}** and **{other}** on the same faces")
    disagree = comparison.disagreements
    if disagree:
        st.warning(
            f"The models disagree on {len(disagree)} of {counted(len(comparison.rows), 'face')}: "
            + "; ".join(f"face {r['index']}: {r['label_a']} vs {r['label_b']}" for r in disagree)
        )
    else:
        count = len(comparison.rows)
        st.success(f"Both models agree on {'the face' if count == 1 else f'all {count} faces'}.")
    st.dataframe(
        pd.DataFrame([{
            "face": r["index"], first: f"{r['label_a']} ({r['confidence_a']:.0%})",
            second: f"{r['label_b']} ({r['confidence_b']:.0%})", "agree": "yes" if r["agree"] else "NO",
        } for r in comparison.rows]),
        hide_index=True, width="stretch",
    )  # fmt: skip
    st.plotly_chart(figures.comparison_chart(comparison.rows, comparison.models), key=f"compare_{kept['key']}")
    for row in disagree:
        face = next(f for f in result.faces if f["index"] == row["index"])
        with st.container(border=True):
            st.markdown(f"**Face {row['index']}**: {first} says {row['label_a']}, {second} says {row['label_b']}")
            left, right = st.columns(2)
            left.caption(first)
            left.html(figures.probability_bars_html(face))
            right.caption(second)
            right.html(figures.probability_bars_html({"scores": row["scores_b"]}))


def _signature(mode: str, files: list) -> tuple:
    """What identifies the current input: a different one clears the previous result."""
    return (mode, tuple((getattr(f, "file_id", None), f.name, f.size) for f in files))


def main() -> None:
    started = time.perf_counter()  # an Analyze click's wait starts with this run
    user = require_user()
    st.title("Classify a photo")
    counter = st.empty()
    models = installed_models()
    names = [m.name for m in models]
    default = emotion.default_model_name()
    with st.expander("Options", expanded=False):
        model = st.selectbox(
            "Model",
            names,
            index=names.index(default),
            key="classify_model",
            format_func=lambda n: _model_label(models[names.index(n)]),
        )
        detector = st.selectbox(
            "Face detector",
            list(emotion.DETECTORS),
            index=list(emotion.DETECTORS).index(emotion.DEFAULT_DETECTOR),
            format_func=lambda d: f"{d}: {DETECTOR_DESCRIPTIONS.get(d, '')}",
            key="classify_detector",
        )
        # On by default for photos: a few faces take a millisecond or two more, and the averaged answer is both
        # more often right and better calibrated (docs/RESULTS.md). The live page, at camera rate, goes without.
        tta = st.checkbox(
            "Test-time augmentation (mirror or ten crops, as the model chose)",
            value=True,
            key="classify_tta",
            help="Averages the model's answers over the face and its mirror (or ten crops): more accurate and "
            "better calibrated, at two (or ten) times the per-face time.",
        )
        min_face = st.slider("Minimum face size (pixels)", 12, 300, 24, step=4, key="classify_min_face")
        other = st.selectbox(
            "Compare with a second model (same faces, side by side)",
            [None, *(n for n in names if n != model)],
            format_func=lambda n: "no comparison" if n is None else _model_label(models[names.index(n)]),
            key="classify_compare",
        )
    title = st.text_input("Title or note (optional, kept with the analysis)", max_chars=200, key="classify_title")
    options = {"model": model, "detector": detector, "tta": tta, "min_face": int(min_face), "title": title.strip()}
    # The Grad-CAM process loads this model's Keras twin while a photo is chosen (its own process: no
    # interpreter lock shared with this page), so that a first "Explain" click does not wait for it.
    explain.warm_up(model)

    mode = st.radio("Photo", ["Upload photos", "Take a picture"], horizontal=True, key="classify_mode")
    if mode == "Upload photos":
        files = st.file_uploader(
            "Photos (JPEG, PNG, WebP or BMP); choose several at once to analyse a batch",
            type=list(config.UPLOAD_EXTENSIONS),
            key="classify_upload",
            accept_multiple_files=True,
            max_upload_size=config.MAX_IMAGE_BYTES // (1024 * 1024),
        )
        files, source = list(files or []), "photo"
    else:
        picture = st.camera_input("Take a picture", key="classify_camera")
        files, source = ([picture] if picture is not None else []), "snapshot"
    signature = _signature(mode, files)
    for key in (RESULT_KEY, BATCH_KEY):  # a new input (or another mode) clears the old result
        if key in st.session_state and st.session_state[key]["input"] != signature:
            del st.session_state[key]
            st.session_state[GRADCAM_KEY] = {}
    if st.button("Analyze", type="primary", disabled=not files, key="classify_analyze"):
        kept = st.session_state.get(RESULT_KEY)
        unchanged = (  # the same input and options, saved (a failed save is tried again)
            kept is not None and kept.get("options") == options and len(files) == 1 and not kept["result"].save_error
        )
        if len(files) == 1 and not unchanged:  # else the result on screen stands
            name = files[0].name if source == "photo" else None
            _analyze_and_keep(files[0].getvalue(), name, source, options, user, signature, started)
            if RESULT_KEY in st.session_state:
                st.session_state[RESULT_KEY]["options"] = options
        elif len(files) > 1:
            st.session_state.pop(RESULT_KEY, None)
            _analyze_batch(files, options, user, signature)

    kept = st.session_state.get(RESULT_KEY)
    if kept is not None:
        result: AnalysisResult = kept["result"]
        if not result.faces:
            st.warning(
                "No face was found in this photo (nothing was saved). Try the other detector or a smaller minimum "
                "face size, or classify the whole image as one face if it is a close-up."
            )
            if st.button("Classify the whole image as one face", key="classify_whole"):
                pending = kept["upload"]
                _analyze_and_keep(
                    pending["data"],
                    pending["name"],
                    pending["source"],
                    options,
                    user,
                    signature,
                    started,
                    detect=False,
                )
                if st.session_state.get(RESULT_KEY) is not kept:
                    st.rerun()
        else:
            report = result.report
            caption = report["title"] or report["image"]["original_name"] or ""
            saving = kept.pop("saving", None)
            show_analysis(result, kept["key"], caption=caption, started=kept.pop("started", None), saving=saving)
            if other is not None:
                st.divider()
                show_comparison(kept, other, tta)
    batch = st.session_state.get(BATCH_KEY)
    if batch is not None:
        show_batch(batch)
    elif kept is None:
        preload_result_elements()
    counts = store().count_analyses(user.id)
    counter.metric(
        "Your saved analyses", counts["total"], help=f"{counts['photo']} photos, {counts['snapshot']} snapshots"
    )


main()
