"""Home: the main menu (every page of the studio) and the user's recent activity."""

from __future__ import annotations

from collections import Counter

import streamlit as st
from streamlit.errors import StreamlitAPIException

from pages.common import PAGES, md_escape, require_user, store, utc_time
from studio.store import Analysis

RECENT = 8
SOURCE_NAMES = {"photo": "Photo", "snapshot": "Webcam snapshot", "video": "Video"}


def activity_row(analysis: Analysis) -> dict[str, object]:
    """One line of the recent-activity table (shown as data, never as Markdown)."""
    labels = Counter(face.get("label", "?") for face in analysis.faces)
    return {
        "When": utc_time(analysis.created_at),
        "Kind": SOURCE_NAMES.get(analysis.source, analysis.source),
        "Title": analysis.title or analysis.original_name or "",
        "Faces": len(analysis.faces),
        "Emotions": ", ".join(f"{label} ×{n}" if n > 1 else label for label, n in labels.most_common()),
        "Model": analysis.model,
    }


def menu() -> None:
    """A card per page, linking to it."""
    specs = [spec for spec in PAGES if spec.path != "pages/home.py"]
    columns = st.columns(3)
    for index, spec in enumerate(specs):
        with columns[index % 3].container(border=True):
            try:
                st.page_link(spec.path, label=spec.title, icon=spec.icon)
            except StreamlitAPIException:  # outside app.py's navigation (e.g. this page tested alone)
                st.markdown(f"**{spec.title}**")
            st.caption(spec.description)


def main() -> None:
    """Greeting, menu, counts and recent activity."""
    user = require_user()
    st.title("Emotion Studio")
    st.markdown(f"Welcome, **{md_escape(user.name)}**. What would you like to do?")
    menu()
    the_store = store()
    counts = the_store.count_analyses(user.id)
    st.subheader("Your activity")
    for column, (key, label) in zip(
        st.columns(4), [("total", "All analyses"), *((s, SOURCE_NAMES[s] + "s") for s in SOURCE_NAMES)], strict=True
    ):
        column.metric(label, counts.get(key, 0))
    recent = the_store.list_analyses(user.id, limit=RECENT)
    if not recent:
        st.info(
            "No analyses yet. Pick **Photo** above to analyse a picture, or **Live & video** for the webcam or a "
            "video file; each analysis you save shows up here."
        )
        return
    st.caption(f"Your {len(recent)} most recent analyses (all of them are in History).")
    st.dataframe([activity_row(a) for a in recent], hide_index=True, width="stretch")


main()
