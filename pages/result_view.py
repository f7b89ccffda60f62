"""How an analysis (studio.analyses.AnalysisResult) is shown, on the Photo page, the Live & video
page and in History's detail view: save status, the annotated image (a display JPEG at column size) or
video, the valence-arousal plane, one card per face (its number as drawn on the image, a crop
thumbnail, probabilities, Grad-CAM with its time) and every download (built when clicked). A result
not saved yet is saved in the worker pool once it is on the page; the caption then gives the user's
wait end to end with its parts. Not a page: pages import it."""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future

import streamlit as st

from emotion import explain
from pages.common import md_escape, require_user, show_error, store, worker_pool, working
from studio import analyses, figures
from studio.analyses import AnalysisResult

log = logging.getLogger(__name__)
GRADCAM_KEY = "gradcam_overlays"  # session_state: {(result key, face index): RGB overlay or a message}
GRADCAM_MS_KEY = "gradcam_ms"  # session_state: {(result key, face index): ms its Grad-CAM took}


def browser_timezone() -> str | None:
    """The visitor's IANA time zone as the browser reports it (None when unknown, e.g. in AppTest)."""
    try:
        return st.context.timezone
    except (AttributeError, RuntimeError):
        return None


def gradcam_overlays(key: str) -> dict:
    """{face index: overlay} of the Grad-CAMs computed for result `key` in this session."""
    cache = st.session_state.get(GRADCAM_KEY, {})
    return {index: v for (k, index), v in cache.items() if k == key and not isinstance(v, str)}


def _explanation(result: AnalysisResult, face: dict, key: str) -> None:
    """Grad-CAM of one face, computed once per result and face, kept in the session and with the
    saved analysis (History shows it and its PDF has it)."""
    cache = st.session_state.setdefault(GRADCAM_KEY, {})
    times = st.session_state.setdefault(GRADCAM_MS_KEY, {})
    cache_key = (key, face["index"])
    if cache_key not in cache:
        with working("Computing Grad-CAM…"):
            started = time.perf_counter()
            try:
                model = result.report["model"]
                cache[cache_key] = explain.gradcam_overlay(result.image, face["box"], model, face["label"])
                analyses.keep_gradcam(store(), require_user(), result, face["index"], cache[cache_key])
            except explain.ExplainError as error:
                cache[cache_key] = str(error)
            times[cache_key] = (time.perf_counter() - started) * 1000
    overlay = cache[cache_key]
    if isinstance(overlay, str):
        st.info(f"No explanation for this model: {overlay}")
        return
    st.image(overlay, caption=f"Grad-CAM for “{face['label']}” (red: most influential)", width="stretch")
    if cache_key in times:
        st.caption(f"Grad-CAM computed in {times[cache_key]:.0f} ms")


def save_status(result: AnalysisResult, saved: str = "Saved") -> None:
    """ "<saved> to your history as analysis #n", already in the history, or why it could not be saved
    (saved: how the success message starts, e.g. "Snapshot saved", "clip.mp4: saved")."""
    if result.save_error:
        show_error(result.save_error)
    elif result.duplicate:
        retitled = f"; its title is now “{md_escape(result.report['title'])}”" if result.retitled else ""
        st.info(
            f"Already in your history as analysis #{result.analysis_id} (the same input with the same options): "
            f"not saved twice{retitled}."
        )
    elif result.saved:
        st.success(f"{md_escape(saved)} to your history as analysis #{result.analysis_id}.")  # a file name


@st.fragment
def _face_card(result: AnalysisResult, face: dict, key: str, explainable: bool) -> None:
    """One face's card; a fragment, so that its Grad-CAM toggle reruns this card only (not the page,
    its picture and every chart)."""
    with st.container(border=True):
        thumb, title = st.columns([1, 3], vertical_alignment="center")
        thumb.image(result.face_thumbnail(face), width="stretch")
        title.markdown(f"#### Face {face['index']}\n{md_escape(face['label'])} ({face['confidence']:.1%})")
        st.html(figures.probability_bars_html(face))
        kept = result.gradcam.get(face["index"])
        if kept is not None and not explainable:  # History: the Grad-CAM computed when it ran
            st.image(kept, caption=f"Grad-CAM for “{face['label']}” (red: most influential)", width="stretch")
        elif explainable and st.toggle("Explain (Grad-CAM)", key=f"gradcam_{key}_{face['index']}"):
            _explanation(result, face, key)


def face_cards(result: AnalysisResult, key: str, *, explainable: bool) -> None:
    """One bordered card per face, numbered as on the image, with its crop and probability bars."""
    faces = result.faces
    if explainable and faces:  # in the background: a Grad-CAM click then waits for one face only
        explain.warm_up(result.report["model"])
    columns = st.columns(min(2, len(faces)))
    for i, face in enumerate(faces):
        with columns[i % len(columns)]:
            _face_card(result, face, key, explainable)


def downloads(result: AnalysisResult, key: str) -> None:
    """Every download of the result in one row, each built when clicked (the PDF once, with the
    Grad-CAMs kept with the result then: the click runs outside the script, without session_state)."""
    overlays = gradcam_overlays(key)  # read here, in the script thread
    files = result.downloads(gradcam=lambda: overlays, timezone=browser_timezone())
    for column, file in zip(st.columns(len(files)), files, strict=True):
        column.download_button(
            file.label, file.data, file_name=file.file_name, mime=file.mime, key=f"dl_{key}_{file.file_name}",
            on_click="ignore", width="stretch",
        )  # fmt: skip


def timing_caption(result: AnalysisResult) -> str:
    """The user's wait from the Analyze click to the result on the page, with its parts (or the
    processing time alone when the page did not measure it, e.g. History), the save after it, the
    model and detector."""
    report = result.report
    timings = result.timings or report.get("timings") or {}
    model = f"model {report['model']} · detector {report['detector']}"
    if "total_ms" not in timings:
        return model
    parts = [
        f"decode {timings.get('decode_ms', 0):.0f} ms",
        f"detection {timings.get('detect_ms', 0):.0f} ms",
        f"classification {timings.get('classify_ms', 0):.0f} ms",
    ]
    if "encode_ms" in timings:
        parts.append(f"image for the page {timings['encode_ms']:.0f} ms")
    if "waited_ms" not in result.shown:
        return f"Processing time {timings['total_ms']:.0f} ms ({', '.join(parts)}) · {model}"
    parts.append(f"charts and page {result.shown['page_ms']:.0f} ms")
    saved = f" · saved in {result.save_ms:.0f} ms while it was drawn" if result.save_ms is not None else ""
    return f"Answered in {result.shown['waited_ms']:.0f} ms ({', '.join(parts)}){saved} · {model}"


def show_analysis(
    result: AnalysisResult,
    key: str,
    *,
    caption: str = "",
    saved: str | None = "Saved",
    started: float | None = None,
    saving: Future | None = None,
) -> None:
    """The whole result: status (saved=None: none, as in History), picture (or video) beside the
    plane, face cards, downloads.

    A result not saved yet is saved in the worker pool while it is drawn (`saving`: that save's Future
    when the caller started it, else started here for a pending result), so that the user does not
    wait for it, and so that a click that interrupts this run does not lose it; the status, caption and
    downloads come once it is over. started (time.perf_counter() of the click's script run) makes the
    caption give the user's wait end to end.
    """
    if saving is None and result.pending:
        saving = worker_pool().submit(analyses.save, store(), require_user(), result)
    faces = result.faces
    count = f"{len(faces)} face" + ("s" if len(faces) != 1 else "")
    st.subheader(f"{count} found")
    caption_slot, status_slot = st.empty(), st.empty()  # filled once the result is drawn and saved
    picture, plane = st.columns([3, 2])
    with picture:
        if result.media is not None:
            st.video(result.media, format="video/mp4")
        else:
            st.image(result.display_jpeg(), caption=md_escape(caption), width="stretch")
    with plane:
        if faces:
            st.markdown("**Valence and arousal** (circumplex plane; probability-weighted)")
            st.markdown(figures.circumplex_svg(faces), unsafe_allow_html=True)  # st.html drops SVG
    if result.frames:
        st.plotly_chart(figures.video_timeline_chart(result.frames), key=f"timeline_{key}")
    if faces:
        if result.media is not None:
            st.caption("Faces of the representative frame (numbers: the face's track id in the video).")
        face_cards(result, key, explainable=result.image is not None)
    if started is not None:  # everything is on its way to the browser: the user's wait ends here
        waited = (time.perf_counter() - started) * 1000
        total = result.timings.get("total_ms", 0.0)
        result.shown.update(waited_ms=waited, page_ms=max(0.0, waited - total))
    if saving is not None:
        saving.result()
    downloads(result, key)  # after the save: file names carry the analysis id; files built when clicked
    caption_slot.caption(timing_caption(result))
    if saved is not None:
        with status_slot.container():
            save_status(result, saved)
