"""Classify a photo: upload or camera, model and detector options, annotated result, per-face
probabilities, valence-arousal plane, Grad-CAM, saved to the user's history, PDF and JSON downloads."""

from __future__ import annotations

import json
import logging
import sqlite3
import time
import uuid

import plotly.graph_objects as go
import streamlit as st

import emotion
from emotion import config, explain
from emotion.detectors import DETECTOR_DESCRIPTIONS
from emotion.imageio import encode_png
from emotion.labels import VALENCE_AROUSAL
from pages.common import installed_models, md_escape, report_downloads, require_user, rgb_css, show_error, store
from studio import reports

log = logging.getLogger(__name__)
RESULT_KEY = "classify_result"  # session_state: the last analysis, so downloads survive reruns
GRADCAM_KEY = "classify_gradcam"  # session_state: {(result key, face index): RGB overlay}
WHOLE_IMAGE_DETECTOR = "none"
_LABEL_POSITIONS = {"fear": "middle left", "angry": "top right", "disgust": "bottom center"}  # neighbours apart


def _model_label(info: emotion.ModelInfo) -> str:
    accuracy = info.metrics.get("accuracy")
    measured = f"{accuracy:.1%} test accuracy" if isinstance(accuracy, (int, float)) else "not evaluated"
    return f"{info.name} ({info.kind}, {measured})"


def run_analysis(data: bytes, name: str | None, source: str, options: dict, user, *, detect: bool = True) -> dict:
    """Decode, analyse, annotate, save for the user and build the reports; raises ImageLoadError.

    Returns the session result: report (JSON dict), annotated PNG, PDF bytes, the RGB (H, W, 3) image
    (for Grad-CAM), the upload (for a whole-image retry) and whether it was saved.
    """
    started = time.perf_counter()
    image = emotion.load_image(data, name=name)
    load_ms = (time.perf_counter() - started) * 1000
    analyzed = time.perf_counter()
    faces = emotion.analyze(
        image, options["model"], options["detector"], options["tta"], min_face=options["min_face"], detect=detect
    )
    timings = {
        "decode_ms": load_ms,
        "detect_ms": faces[0].timings["detect_ms"] if faces else (time.perf_counter() - analyzed) * 1000,
        "classify_ms": sum(f.timings.get("classify_ms", 0.0) for f in faces),
        "total_ms": (time.perf_counter() - started) * 1000,
    }
    detector = options["detector"] if detect else WHOLE_IMAGE_DETECTOR
    annotated = emotion.annotate(image, faces)
    result = {
        "key": uuid.uuid4().hex,
        "image": image,
        "upload": {"data": data, "name": name, "source": source},
        "no_faces": not faces,
        "saved": False,
    }
    face_dicts = [f.to_dict() for f in faces]
    size = (int(image.shape[1]), int(image.shape[0]))
    report = reports.json_report(
        faces=face_dicts,
        image_size=size,
        model=options["model"],
        detector=detector,
        source=source,
        created_at=reports.utc_now(),
        user=user.username,
        title=options["title"] or None,
        original_name=name,
        timings=timings,
    )
    annotated_png = encode_png(annotated)
    if faces:  # an image with no face is not kept: the user is offered a whole-image analysis instead
        try:
            analysis = store().add_analysis(
                user.id,
                source=source,
                model=options["model"],
                detector=detector,
                faces=face_dicts,
                image_png=annotated_png,
                original_name=name,
                title=options["title"] or None,
                extra={
                    "image_size": list(size),
                    "timings": timings,
                    "tta": options["tta"],
                    "min_face": options["min_face"],
                },
            )
            report = reports.report_for_analysis(analysis, user.username)
            result["saved"] = True
        except (OSError, ValueError, sqlite3.Error) as error:  # results are still shown and downloadable
            log.exception("saving an analysis failed")
            result["save_error"] = str(error)
    pdf = reports.pdf_report(report, annotated) if faces else b""
    result.update(report=report, annotated_png=annotated_png, pdf=pdf)
    return result


def _analyze_and_keep(data: bytes, name: str | None, source: str, options: dict, user, *, detect: bool = True) -> None:
    """run_analysis with a spinner; every failure becomes a message, never a traceback."""
    st.session_state[GRADCAM_KEY] = {}  # explanations of an earlier result are not needed any more
    with st.spinner("Analyzing the photo…"):
        try:
            st.session_state[RESULT_KEY] = run_analysis(data, name, source, options, user, detect=detect)
        except emotion.ImageLoadError as error:
            st.session_state.pop(RESULT_KEY, None)
            show_error(f"This file cannot be analysed: {error}")
        except Exception:  # any other failure: logged with its traceback, the user gets a plain message
            log.exception("analysis of %r failed", name)
            st.session_state.pop(RESULT_KEY, None)
            show_error("Something went wrong while analysing this image. It has been logged; try another photo.")


def probability_chart(face: dict) -> go.Figure:
    """Horizontal bars of one face's probabilities, coloured per emotion."""
    labels = list(face["scores"])
    values = [face["scores"][k] * 100 for k in labels]
    figure = go.Figure(
        go.Bar(
            x=values,
            y=labels,
            orientation="h",
            marker_color=[rgb_css(k) for k in labels],
            text=[f"{v:.1f}%" for v in values],
            textposition="outside",
            hovertemplate="%{y}: %{x:.1f}%<extra></extra>",
        )
    )
    figure.update_layout(
        height=60 + 28 * len(labels),
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        xaxis={"range": [0, 110], "title": "probability (%)"},
        yaxis={"autorange": "reversed"},
        showlegend=False,
    )
    return figure


def circumplex_chart(faces: list[dict]) -> go.Figure:
    """Each face on the valence (x) / arousal (y) plane, with the emotions' reference points."""
    labels = sorted({k for f in faces for k in f["scores"]} & set(VALENCE_AROUSAL))
    figure = go.Figure(
        go.Scatter(
            x=[VALENCE_AROUSAL[k][0] for k in labels],
            y=[VALENCE_AROUSAL[k][1] for k in labels],
            mode="markers+text",
            text=labels,
            textposition=[_LABEL_POSITIONS.get(k, "top center") for k in labels],
            marker={"color": [rgb_css(k) for k in labels], "size": 9, "opacity": 0.5},
            name="emotions",
            hoverinfo="text",
        )
    )
    figure.add_trace(
        go.Scatter(
            x=[f["valence"] for f in faces],
            y=[f["arousal"] for f in faces],
            mode="markers+text",
            text=[f"Face {f['index']}" for f in faces],
            textposition="bottom center",
            name="faces",
            marker={
                "color": [rgb_css(f["label"]) for f in faces],
                "size": 16,
                "symbol": "x",
                "line": {"width": 1, "color": "black"},
            },
            hovertemplate="%{text}: valence %{x:.2f}, arousal %{y:.2f}<extra></extra>",
        )
    )
    axis = {"range": [-1.05, 1.05], "zeroline": True, "zerolinecolor": "#999"}
    figure.update_layout(
        height=380,
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        showlegend=False,
        xaxis={**axis, "title": "valence (unpleasant → pleasant)"},
        yaxis={**axis, "title": "arousal (calm → excited)"},
    )
    return figure


def _explanation(result: dict, face: dict, model: str) -> None:
    """Grad-CAM of one face, computed once per result and face and kept in the session."""
    cache = st.session_state.setdefault(GRADCAM_KEY, {})
    cache_key = (result["key"], face["index"])
    if cache_key not in cache:
        with st.spinner("Computing Grad-CAM…"):
            try:
                cache[cache_key] = explain.gradcam_overlay(result["image"], face["box"], model, face["label"])
            except explain.ExplainError as error:
                cache[cache_key] = str(error)
    overlay = cache[cache_key]
    if isinstance(overlay, str):
        st.info(f"No explanation for this model: {overlay}")
        return
    left, right = st.columns(2)
    left.image(explain.face_crop(result["image"], face["box"]), caption="face as classified", width="stretch")
    right.image(overlay, caption=f"Grad-CAM for “{face['label']}” (red: most influential)", width="stretch")


def show_result(result: dict) -> None:
    """The annotated photo, per-face bars and circumplex, timings, Grad-CAM toggles and downloads."""
    report = result["report"]
    faces = report["faces"]
    if result["no_faces"]:
        st.warning(
            "No face was found in this photo (nothing was saved). Try the other detector or a smaller minimum "
            "face size, or classify the whole image as one face if it is a close-up."
        )
        return
    count = f"{len(faces)} face" + ("s" if len(faces) != 1 else "")
    timings = report["timings"]
    st.subheader(f"{count} found")
    st.caption(
        f"Processing time {timings.get('total_ms', 0):.0f} ms (decode {timings.get('decode_ms', 0):.0f} ms, "
        f"detection {timings.get('detect_ms', 0):.0f} ms, classification {timings.get('classify_ms', 0):.0f} ms) · "
        f"model {report['model']} · detector {report['detector']}"
    )
    if result["saved"]:
        st.success(f"Saved to your history as analysis #{report.get('analysis_id')}.")
    elif "save_error" in result:
        show_error(f"The result could not be saved: {result['save_error']}")
    picture, plane = st.columns([3, 2])
    picture.image(
        result["annotated_png"],
        caption=md_escape(report["title"] or report["image"]["original_name"] or ""),
        width="stretch",
    )
    with plane:
        st.markdown("**Valence and arousal** (circumplex plane; probability-weighted)")
        st.plotly_chart(circumplex_chart(faces), key=f"circumplex_{result['key']}")
    columns = st.columns(min(2, len(faces)))
    for i, face in enumerate(faces):
        with columns[i % len(columns)].container(border=True):
            st.markdown(f"**Face {face['index']}**: {md_escape(face['label'])} ({face['confidence']:.1%})")
            st.plotly_chart(probability_chart(face), key=f"bars_{result['key']}_{face['index']}")
            if st.toggle("Explain (Grad-CAM)", key=f"gradcam_{result['key']}_{face['index']}"):
                _explanation(result, face, report["model"])
    report_downloads(
        report,
        result["pdf"],
        json.dumps(report, indent=2, ensure_ascii=False).encode(),
        labels=("Download PDF report", "Download JSON"),
        keys=(f"pdf_{result['key']}", f"json_{result['key']}"),
    )


def main() -> None:
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
        tta = st.checkbox("Test-time augmentation (mirror or ten crops, as the model chose)", key="classify_tta")
        min_face = st.slider("Minimum face size (pixels)", 12, 300, 24, step=4, key="classify_min_face")
    title = st.text_input("Title or note (optional, kept with the analysis)", max_chars=200, key="classify_title")
    options = {"model": model, "detector": detector, "tta": tta, "min_face": int(min_face), "title": title.strip()}

    mode = st.radio("Photo", ["Upload a file", "Take a picture"], horizontal=True, key="classify_mode")
    if mode == "Upload a file":
        upload = st.file_uploader(
            "Photo (JPEG, PNG, WebP or BMP)",
            type=list(config.UPLOAD_EXTENSIONS),
            key="classify_upload",
            max_upload_size=config.MAX_IMAGE_BYTES // (1024 * 1024),
        )
        source = "photo"
    else:
        upload = st.camera_input("Take a picture", key="classify_camera")
        source = "snapshot"
    if st.button("Analyze", type="primary", disabled=upload is None, key="classify_analyze"):
        name = upload.name if source == "photo" else None
        _analyze_and_keep(upload.getvalue(), name, source, options, user)

    result = st.session_state.get(RESULT_KEY)
    if result is not None and result["no_faces"]:
        show_result(result)
        if st.button("Classify the whole image as one face", key="classify_whole"):
            pending = result["upload"]
            _analyze_and_keep(pending["data"], pending["name"], pending["source"], options, user, detect=False)
            if st.session_state.get(RESULT_KEY) is not None:
                st.rerun()
        result = None
    if result is not None:
        show_result(result)
    counts = store().count_analyses(user.id)
    counter.metric(
        "Your saved analyses", counts["total"], help=f"{counts['photo']} photos, {counts['snapshot']} snapshots"
    )


main()
