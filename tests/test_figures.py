"""studio.figures: the valence-arousal plane never prints a name over a face or another name, faces
drawn apart, the video timeline gives colour one meaning (the emotion)."""

from __future__ import annotations

import itertools
import math
from xml.etree import ElementTree

import numpy as np
import pytest

from emotion.labels import FER2013_LABELS, VALENCE_AROUSAL
from studio import figures, plane

REFERENCES = {k: VALENCE_AROUSAL[k] for k in FER2013_LABELS}
SVG = "{http://www.w3.org/2000/svg}"


def _face(index: int, label: str, valence: float, arousal: float) -> dict:
    return {
        "index": index,
        "label": label,
        "valence": valence,
        "arousal": arousal,
        "scores": {k: 0.1 for k in REFERENCES},
    }


@pytest.mark.parametrize(
    "points",
    [[], [(0.0, 0.0)], [(0.0, 0.0)] * 4, [(-0.55, 0.6), (-0.6, 0.58)], [(0.81, 0.51)], [(0.05, 0.1), (0.5, 0.4)]],
)
def test_names_never_overprint_faces_or_each_other(points):
    for scale in (plane.WEB, plane.PDF):
        faces = plane.spread_points(points, scale.face_gap)
        assert plane.overprints(REFERENCES, faces, scale) == 0
        assert plane.overprints(VALENCE_AROUSAL, faces, scale) == 0  # the larger label set of folder datasets


def test_faces_on_one_spot_are_drawn_apart_near_their_place():
    spread = plane.spread_points([(0.0, 0.0)] * 5 + [(0.5, 0.5)])
    for a, b in itertools.combinations(spread, 2):
        assert math.dist(a, b) >= plane.WEB.face_gap - 1e-9
    assert spread[0] == (0.0, 0.0) and spread[-1] == (0.5, 0.5)
    assert all(math.dist(p, (0, 0)) < 0.5 for p in spread[:5])


def test_circumplex_svg_numbers_faces_and_names_emotions():
    faces = [_face(1, "happy", 0.6, 0.4), _face(2, "neutral", 0.0, 0.0)]
    svg = ElementTree.fromstring(figures.circumplex_svg(faces))  # well-formed XML
    texts = [t.text for t in svg.iter(f"{SVG}text")]
    assert {"1", "2"} <= set(texts) and set(REFERENCES) <= set(texts)
    tips = [t.text for t in svg.iter(f"{SVG}title")]
    assert "Face 1 (happy): valence 0.60, arousal 0.40" in tips
    discs = [c for c in svg.iter(f"{SVG}circle") if c.get("r") == f"{plane.WEB.face:g}"]
    assert [c.get("fill") for c in discs] == [figures.rgb_css("happy"), figures.rgb_css("neutral")]
    assert svg.get("role") == "img" and "face 2 neutral" in svg.get("aria-label")


def test_circumplex_svg_puts_a_face_where_its_values_say():
    svg = ElementTree.fromstring(figures.circumplex_svg([_face(1, "happy", 1.0, -1.0)]))
    (disc,) = [c for c in svg.iter(f"{SVG}circle") if c.get("r") == f"{plane.WEB.face:g}"]
    zero_x, zero_y = (
        [float(line.get(a)) for line in svg.iter(f"{SVG}line") if line.get("stroke") == "#999"] for a in ("x1", "y1")
    )
    assert float(disc.get("cx")) == pytest.approx(zero_x[0] + plane.WEB.per_unit[0], abs=0.1)  # right of 0
    assert float(disc.get("cy")) == pytest.approx(zero_y[1] + plane.WEB.per_unit[1], abs=0.1)  # below 0 (SVG y down)


def test_circumplex_svg_escapes_what_it_prints():
    face = _face(1, "<script>x</script>", 0.0, 0.0)
    markup = figures.circumplex_svg([face])
    assert "<script>" not in markup and "&lt;script&gt;" in markup
    ElementTree.fromstring(markup)


def test_video_timeline_colour_means_emotion_only():
    frames = [
        {"time": 0.0, "faces": [{"track_id": 1, "label": "happy", "confidence": 0.9},
                                {"track_id": 2, "label": "sad", "confidence": 0.6}]},
        {"time": 0.1, "faces": [{"track_id": 1, "label": "sad", "confidence": 0.5}]},
    ]  # fmt: skip
    figure = figures.video_timeline_chart(frames)
    assert [t.name for t in figure.data] == ["happy", "sad"]
    for trace in figure.data:
        assert trace.marker.color == figures.rgb_css(trace.name) and trace.mode == "markers"
    assert list(figure.data[1].y) == ["face 2", "face 1"]


def test_live_timeline_picture_draws_each_emotion_in_its_colour():
    from emotion.labels import color_for
    from studio.figures import timeline_image

    labels = ("happy", "sad")
    empty = timeline_image([], labels)
    assert empty.shape == (200, 640, 3) and empty.dtype == np.uint8
    rows = [{"t": t / 10, "happy": 0.9, "sad": 0.1} for t in range(100)]
    image = timeline_image(rows, labels, seconds=10.0)
    top, bottom = 22, 200 - 18
    happy_y = top + round(0.1 * (bottom - top))  # 90%: near the top of the plot
    row = image[happy_y - 1 : happy_y + 2, 100:600].reshape(-1, 3)
    assert (np.abs(row.astype(int) - color_for("happy")).sum(axis=1) < 60).mean() > 0.5
    sad_y = top + round(0.9 * (bottom - top))
    row = image[sad_y - 1 : sad_y + 2, 100:600].reshape(-1, 3)
    assert (np.abs(row.astype(int) - color_for("sad")).sum(axis=1) < 60).mean() > 0.5


def test_probability_bars_are_html_one_row_per_label_escaped_and_clamped():
    face = {"scores": {"happy": 0.8, "sad": 0.15, "<b>x</b>": 0.05, "odd": 1.2}}
    bars = figures.probability_bars_html(face)
    assert bars.count("width:") == 4  # one filled bar per label
    assert "width:80.0%" in bars and "width:15.0%" in bars and "width:100.0%" in bars  # 120% drawn full
    assert "<b>x</b>" not in bars and "&lt;b&gt;x&lt;/b&gt;" in bars  # a label is text, never markup
    assert 'font-weight:600">odd<' in bars and 'font-weight:400">happy<' in bars  # the top one in bold
    assert 'aria-label="Probabilities: happy 80.0%, sad 15.0%' in bars
    assert figures.rgb_css("happy") in bars


def test_class_bars_svg_draws_each_split_on_its_scale_and_escapes_names():
    counts = {"Training": {"happy": 200, "<b>x</b>": 50}, "Test": {"happy": 10, "<b>x</b>": 0}}
    markup = figures.class_bars_svg(counts, ["happy", "<b>x</b>"])
    svg = ElementTree.fromstring(markup)
    assert "<b>" not in markup and "Images per class: Training: happy 200" in svg.get("aria-label")
    heights = [float(r.get("height")) for r in svg.iter(f"{SVG}rect")]
    assert heights[0] == heights[2] > 0 and heights[1] == pytest.approx(heights[0] / 4) and heights[3] == 0
    texts = [t.text for t in svg.iter(f"{SVG}text")]
    assert "Training (250 images)" in texts and "200" in texts and "50" in texts
    shares = ElementTree.fromstring(figures.class_bars_svg(counts, ["happy", "<b>x</b>"], as_percent=True))
    heights = [float(r.get("height")) for r in shares.iter(f"{SVG}rect")]
    assert heights[0] == pytest.approx(heights[2] * 0.8)  # one scale: 80% of Training, 100% of Test
    assert "80.0%" in [t.text for t in shares.iter(f"{SVG}text")]
