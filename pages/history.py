"""The user's past analyses, newest first: filters, emotions over time, thumbnails, PDF/JSON
re-downloads and deletion (with a confirmation); "Open" shows one analysis whole (studio.analyses.
stored_analysis): the annotated image or the annotated video playing, its faces and charts and every
download (PDF, JSON, per-frame CSV and JSON, mp4). The open analysis is in the URL (?analysis=id)."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from PIL import Image

import emotion
from emotion.imageio import encode_png
from emotion.labels import DEFAULT_LABELS
from pages.common import md_escape, report_downloads, require_user, rgb_css, store
from pages.result_view import browser_timezone, show_analysis
from studio import analyses, reports

log = logging.getLogger(__name__)
PAGE_SIZE = 20
CONFIRM_KEY = "history_confirm_delete"  # session_state: id of the analysis awaiting confirmation
THUMBS_KEY = "history_thumbnails"  # session_state: {analysis id: thumbnail PNG}
FLASH_KEY = "history_flash"  # session_state: a message for the next run (after a delete)
SOURCE_NAMES = {"photo": "Photo", "snapshot": "Webcam snapshot", "video": "Video"}


DETAIL_PARAM = "analysis"  # query parameter: the id of the analysis shown whole


def _when(iso: str) -> str:
    """When an analysis ran, as people write it, in the browser's time zone ("28 Nov 2026, 20:18 UTC")."""
    return reports.human_time(iso, browser_timezone())


def _thumbnail(the_store, user_id: int, analysis_id: int) -> bytes | None:
    """A 320x240 PNG thumbnail (letterboxed) of the saved annotated image, kept for the session."""
    thumbs = st.session_state.setdefault(THUMBS_KEY, {})
    if analysis_id not in thumbs:
        png = the_store.read_image(user_id, analysis_id)
        thumb = None
        if png:
            picture = Image.open(io.BytesIO(png)).convert("RGB")
            picture.thumbnail((320, 240))
            card = Image.new("RGB", (320, 240), (240, 242, 246))  # same 4:3 card for every shape
            card.paste(picture, ((320 - picture.width) // 2, (240 - picture.height) // 2))
            thumb = encode_png(np.asarray(card))
        thumbs[analysis_id] = thumb
    return thumbs[analysis_id]


def emotions_over_time(analyses: list) -> go.Figure:
    """Stacked bars: faces per day per top emotion, over the listed analyses."""
    rows = [
        {"day": dt.datetime.fromisoformat(a.created_at).date(), "label": face["label"]}
        for a in analyses
        for face in a.faces
    ]
    frame = pd.DataFrame(rows, columns=["day", "label"])
    counts = frame.groupby(["day", "label"]).size().unstack(fill_value=0) if len(frame) else pd.DataFrame()
    figure = go.Figure()
    day_ms = 86_400_000
    for label in counts.columns:
        figure.add_trace(
            go.Bar(
                x=[d.isoformat() for d in counts.index],
                y=counts[label].tolist(),
                name=label,
                marker_color=rgb_css(label),
                width=0.8 * day_ms,
            )
        )
    days = list(counts.index) or [dt.datetime.now(dt.UTC).date()]
    tallest = int(counts.sum(axis=1).max()) if len(counts) else 0  # faces on the busiest day
    span = [(min(days) - dt.timedelta(days=1)).isoformat(), (max(days) + dt.timedelta(days=1)).isoformat()]
    figure.update_layout(
        barmode="stack",
        height=320,
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        xaxis={
            "title": "day (UTC)",
            "type": "date",
            "range": span,
            "tickformat": "%b %d",
            "dtick": day_ms if (max(days) - min(days)).days < 14 else None,
        },
        # whole faces: left alone, plotly ticks a day of one or two faces at 0.5 steps
        yaxis={"title": "faces", "rangemode": "nonnegative", "dtick": 1 if tallest <= 10 else None},
        legend={"title": "emotion"},
        showlegend=True,
    )
    return figure


def _face_summary(faces: list[dict]) -> str:
    if not faces:
        return "no face"
    return ", ".join(f"{f['label']} {f['confidence']:.0%}" for f in faces[:6]) + (" …" if len(faces) > 6 else "")


def _filters(labels: list[str], first_day: dt.date) -> dict:
    """Date range, emotion and source widgets -> keyword arguments of Store.list_analyses."""
    left, middle, right = st.columns([2, 1, 1])
    today = dt.datetime.now(dt.UTC).date()
    dates = left.date_input("Dates (UTC)", value=(min(first_day, today), today), key="history_dates")
    label = middle.selectbox("Emotion", ["any", *labels], key="history_label")
    source = right.selectbox(
        "Source", ["any", *SOURCE_NAMES], format_func=lambda s: SOURCE_NAMES.get(s, s), key="history_source"
    )
    since, until = (dates[0], dates[-1]) if isinstance(dates, tuple) and dates else (None, None)
    return {
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "label": None if label == "any" else label,
        "source": None if source == "any" else source,
    }


def _confirm_delete(the_store, user, analysis) -> None:
    """The confirmation under an entry whose Delete was pressed: removes the row and its files."""
    st.warning("Delete this analysis and its saved image for good?")
    yes, no, _ = st.columns([1, 1, 3])
    if yes.button("Delete", type="primary", key=f"history_confirm_{analysis.id}", width="stretch"):
        st.session_state.pop(CONFIRM_KEY, None)
        deleted = the_store.delete_analysis(user.id, analysis.id)
        st.session_state.get(THUMBS_KEY, {}).pop(analysis.id, None)
        st.session_state[FLASH_KEY] = f"Analysis #{analysis.id} " + ("deleted." if deleted else "was already gone.")
        st.query_params.pop(DETAIL_PARAM, None)
        st.rerun()
    if no.button("Cancel", key=f"history_cancel_{analysis.id}", width="stretch"):
        st.session_state.pop(CONFIRM_KEY, None)
        st.rerun()


def _downloads(the_store, user, analysis) -> None:
    """PDF and JSON, built only when clicked (deferred downloads run outside the script)."""
    timezone = browser_timezone()  # read now: the deferred builders run without the script's context

    def pdf() -> bytes:
        shown = analyses.stored_analysis(the_store, user, analysis.id)
        return shown.pdf(timezone=timezone) if shown else b""

    def document() -> bytes:
        report = reports.report_for_analysis(analysis, user.username)
        return json.dumps(report, indent=2, ensure_ascii=False).encode()

    named = {"source": analysis.source, "analysis_id": analysis.id, "created_at": analysis.created_at}
    keys = (f"history_pdf_{analysis.id}", f"history_json_{analysis.id}")
    report_downloads(named, pdf, document, labels=("PDF", "JSON"), keys=keys)


def _entry(the_store, user, analysis) -> None:
    with st.container(border=True):
        picture, text, actions = st.columns([1, 2, 1])
        thumb = _thumbnail(the_store, user.id, analysis.id) if analysis.has_image else None
        if thumb:
            picture.image(thumb, width="stretch")
        else:
            picture.caption("no image saved")
        with text:
            heading = analysis.title or analysis.original_name or SOURCE_NAMES.get(analysis.source, "")
            st.markdown(f"**{md_escape(heading)}**")
            st.caption(
                f"#{analysis.id} · {_when(analysis.created_at)} · {SOURCE_NAMES.get(analysis.source, '')}"
                f" · model {analysis.model} · detector {analysis.detector}"
            )
            count = len(analysis.faces)
            st.text(f"{count} face{'s' if count != 1 else ''}: {_face_summary(analysis.faces)}")
        with actions:
            if st.button("Open", key=f"history_open_{analysis.id}", type="primary", width="stretch"):
                st.query_params[DETAIL_PARAM] = str(analysis.id)
                st.rerun()
            _downloads(the_store, user, analysis)
            if st.button("Delete", key=f"history_delete_{analysis.id}", width="stretch"):
                st.session_state[CONFIRM_KEY] = analysis.id
                st.rerun()
        if st.session_state.get(CONFIRM_KEY) == analysis.id:
            _confirm_delete(the_store, user, analysis)


def _detail(the_store, user, analysis_id: int) -> None:
    """One analysis whole: what the Photo or Live page showed when it ran, and every download."""
    if st.button("← Back to your history", key="history_back"):
        del st.query_params[DETAIL_PARAM]
        st.rerun()
    result = analyses.stored_analysis(the_store, user, analysis_id)
    if result is None:
        st.warning(f"There is no analysis #{analysis_id} in your history (deleted?). Go back to the list.")
        return
    report = result.report
    heading = report["title"] or report["image"]["original_name"] or SOURCE_NAMES.get(report["source"], "")
    st.subheader(f"#{analysis_id} · {md_escape(heading)}")
    st.caption(f"{_when(report['created_at'])} · {SOURCE_NAMES.get(report['source'], '')}")
    show_analysis(result, f"history_{analysis_id}", caption=report["image"]["original_name"] or "", saved=None)
    analysis = the_store.get_analysis(user.id, analysis_id)
    if st.button("Delete this analysis", key=f"history_delete_{analysis_id}"):
        st.session_state[CONFIRM_KEY] = analysis_id
    if st.session_state.get(CONFIRM_KEY) == analysis_id:
        _confirm_delete(the_store, user, analysis)


def main() -> None:
    user = require_user()
    the_store = store()
    st.title("History")
    if FLASH_KEY in st.session_state:
        st.success(st.session_state.pop(FLASH_KEY))
    opened = st.query_params.get(DETAIL_PARAM)
    if opened is not None:
        if opened.isdigit():
            _detail(the_store, user, int(opened))
            return
        del st.query_params[DETAIL_PARAM]
    counts = the_store.count_analyses(user.id)
    columns = st.columns(4)
    for column, key in zip(columns, ("total", "photo", "snapshot", "video"), strict=True):
        column.metric("All analyses" if key == "total" else SOURCE_NAMES[key] + "s", counts[key])
    labels = sorted({label for m in emotion.list_models() for label in m.labels} | set(DEFAULT_LABELS))
    everything = the_store.list_analyses(user.id)
    if not everything:
        st.info("Your history is empty. Classify a photo to start it.")
        return
    query = _filters(labels, dt.datetime.fromisoformat(everything[-1].created_at).date())
    analyses = the_store.list_analyses(user.id, **query)
    if not analyses:
        st.info("No analysis matches these filters.")
        return
    st.markdown("**Your emotions over time** (faces per day, by top emotion)")
    st.plotly_chart(emotions_over_time(analyses), key="history_chart")
    shown = st.session_state.setdefault("history_shown", PAGE_SIZE)
    st.caption(f"{len(analyses)} {'analysis matches' if len(analyses) == 1 else 'analyses match'}; newest first.")
    for analysis in analyses[:shown]:
        _entry(the_store, user, analysis)
    if len(analyses) > shown and st.button("Show more", key="history_more"):
        st.session_state["history_shown"] = shown + PAGE_SIZE
        st.rerun()


main()
