"""The plotly figures of an analysis, shared by the Photo, Live & video and History pages (no
streamlit here): probability bars of a face, the valence-arousal plane of the faces, a video's
emotion-per-face timeline and two models side by side on the same faces."""

from __future__ import annotations

import math

import plotly.graph_objects as go

from emotion.labels import VALENCE_AROUSAL, color_for

_PX_PER_UNIT = (115.0, 135.0)  # the plane's pixels per unit (x, y) at the size the pages show it
_CHAR_PX, _TEXT_PX, _DOT_PX, _FACE_PX = 6.5, 14.0, 5.0, 13.0  # name width per letter, text height, radii
_FACE_GAP = 2 * _FACE_PX / _PX_PER_UNIT[0]  # plane units, a face disc's diameter: closer faces are drawn apart


def rgb_css(label: str) -> str:
    """An emotion's colour as CSS, 'rgb(r,g,b)'."""
    r, g, b = color_for(label)
    return f"rgb({r},{g},{b})"


def probability_chart(face: dict) -> go.Figure:
    """Horizontal bars of one face's probabilities (face["scores"]), coloured per emotion."""
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
        xaxis={"range": [0, 115], "title": "probability (%)"},
        yaxis={"autorange": "reversed"},
        showlegend=False,
    )
    return figure


def spread_points(points: list[tuple[float, float]], gap: float = _FACE_GAP) -> list[tuple[float, float]]:
    """Points moved apart (display only) so that no two are closer than `gap`: each point that
    lands on an earlier one is pushed out on a small spiral around its true place."""
    placed: list[tuple[float, float]] = []
    for x, y in points:
        spot, turn = (x, y), 0
        while any(math.dist(spot, p) < gap for p in placed) and turn < 48:
            turn += 1
            angle, radius = turn * 2.4, gap * (0.6 + 0.12 * turn)
            spot = (x + radius * math.cos(angle), y + radius * math.sin(angle))
        placed.append(spot)
    return placed


Rect = tuple[float, float, float, float]  # (x0, y0, x1, y1) in pixels, y up


def _shifts(label: str) -> list[tuple[float, float]]:
    """Candidate pixel offsets of a name's centre from its point: above, below, right, left, the
    diagonals, then the same farther out (nearest first)."""
    half_w, half_h = _CHAR_PX * len(label) / 2, _TEXT_PX / 2
    near = []
    for extra in (0.0, 12.0, 24.0, 36.0):
        gap_x, gap_y = _DOT_PX + half_w + 1 + extra, _DOT_PX + half_h + 1 + extra
        near += [(0, gap_y), (0, -gap_y), (gap_x, 0), (-gap_x, 0)]
        near += [(gap_x, gap_y), (-gap_x, gap_y), (gap_x, -gap_y), (-gap_x, -gap_y)]
    return near


def _text_box(x: float, y: float, label: str, shift: tuple[float, float]) -> Rect:
    """The pixel rectangle of `label` centred `shift` pixels away from the point (x, y)."""
    cx, cy = x * _PX_PER_UNIT[0] + shift[0], y * _PX_PER_UNIT[1] + shift[1]
    half_w, half_h = _CHAR_PX * len(label) / 2, _TEXT_PX / 2
    return cx - half_w, cy - half_h, cx + half_w, cy + half_h


def _disc(x: float, y: float, radius: float) -> Rect:
    px, py = x * _PX_PER_UNIT[0], y * _PX_PER_UNIT[1]
    return px - radius, py - radius, px + radius, py + radius


def _overlap(a: Rect, b: Rect) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def label_positions(
    references: dict[str, tuple[float, float]], faces: list[tuple[float, float]]
) -> dict[str, tuple[float, float]]:
    """For each emotion's reference point, the pixel offset of its name (from _shifts) whose box
    overlaps least with the face discs, the points and the names placed before it, and stays in the
    plane, nearest first on ties: no name is printed over a face or another name."""
    taken = [_disc(x, y, _FACE_PX) for x, y in faces] + [_disc(x, y, _DOT_PX) for x, y in references.values()]
    edge = (-1.1 * _PX_PER_UNIT[0], -1.1 * _PX_PER_UNIT[1], 1.1 * _PX_PER_UNIT[0], 1.1 * _PX_PER_UNIT[1])
    chosen = {}
    for label, (x, y) in sorted(references.items(), key=lambda item: (-item[1][1], item[1][0])):
        candidates = _shifts(label)

        def cost(i: int, x: float = x, y: float = y, label: str = label, shifts=candidates) -> tuple[float, int]:
            box = _text_box(x, y, label, shifts[i])
            outside = (box[2] - box[0]) * (box[3] - box[1]) - _overlap(box, edge)
            return round(sum(_overlap(box, other) for other in taken) + 2 * outside, 3), i

        best = candidates[min(range(len(candidates)), key=cost)]
        chosen[label] = best
        taken.append(_text_box(x, y, label, best))
    return chosen


def overprints(references: dict[str, tuple[float, float]], faces: list[tuple[float, float]]) -> float:
    """Pixel area where the names placed by label_positions overlap each other or a face disc (0 when
    the plane reads cleanly)."""
    shifts = label_positions(references, faces)
    boxes = [_text_box(*references[k], k, shifts[k]) for k in sorted(references)]
    discs = [_disc(x, y, _FACE_PX) for x, y in faces]
    pairs = sum(_overlap(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    return pairs + sum(_overlap(a, d) for a in boxes for d in discs)


def circumplex_chart(faces: list[dict]) -> go.Figure:
    """Each face (report faces: index, label, valence, arousal) as a numbered disc on the valence (x)
    / arousal (y) plane, with the reference points of the emotions the model knows."""
    labels = sorted({k for f in faces for k in f["scores"]} & set(VALENCE_AROUSAL))
    spots = spread_points([(f["valence"], f["arousal"]) for f in faces])
    positions = label_positions({k: VALENCE_AROUSAL[k] for k in labels}, spots)
    figure = go.Figure(
        go.Scatter(
            x=[VALENCE_AROUSAL[k][0] for k in labels],
            y=[VALENCE_AROUSAL[k][1] for k in labels],
            mode="markers",
            text=labels,
            marker={"color": [rgb_css(k) for k in labels], "size": 8, "opacity": 0.6},
            name="emotions",
            hoverinfo="text",
        )
    )
    figure.add_trace(
        go.Scatter(
            x=[s[0] for s in spots],
            y=[s[1] for s in spots],
            mode="markers+text",
            text=[str(f["index"]) for f in faces],
            textposition="middle center",
            textfont={"color": "black", "size": 12},
            customdata=[[f["index"], f["label"], f["valence"], f["arousal"]] for f in faces],
            name="faces",
            marker={
                "color": [rgb_css(f["label"]) for f in faces],
                "size": 24,
                "line": {"width": 1.5, "color": "black"},
            },
            hovertemplate="Face %{customdata[0]} (%{customdata[1]}): valence %{customdata[2]:.2f}, "
            "arousal %{customdata[3]:.2f}<extra></extra>",
        )
    )
    for label in labels:  # names as annotations: shifted in pixels off the faces and each other
        (x, y), (dx, dy) = VALENCE_AROUSAL[label], positions[label]
        figure.add_annotation(x=x, y=y, text=label, showarrow=False, xshift=dx, yshift=dy,
                              font={"color": "#5f6368", "size": 11})  # fmt: skip
    axis = {"range": [-1.1, 1.1], "zeroline": True, "zerolinecolor": "#999"}
    figure.update_layout(
        height=380,
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        showlegend=False,
        xaxis={**axis, "title": "valence (unpleasant → pleasant)"},
        yaxis={**axis, "title": "arousal (calm → excited)"},
    )
    return figure


def video_timeline_chart(frames: list[dict]) -> go.Figure:
    """Emotion per face over time: one row per face (track), one marker per frame, and colour means
    one thing only, the emotion (legend), as on every other chart of the studio."""
    rows = [
        (f["time"], f"face {face['track_id']}", face["label"], face["confidence"])
        for f in frames
        for face in f["faces"]
    ]
    figure = go.Figure()
    tracks = sorted({r[1] for r in rows}, key=lambda t: int(t.split()[-1]))
    for label in sorted({r[2] for r in rows}):
        mine = [r for r in rows if r[2] == label]
        figure.add_trace(
            go.Scatter(
                x=[r[0] for r in mine],
                y=[r[1] for r in mine],
                mode="markers",
                name=label,
                marker={"color": rgb_css(label), "size": 9, "symbol": "square"},
                customdata=[f"{r[3]:.0%}" for r in mine],
                hovertemplate="%{y}, %{x:.2f} s: " + label + " %{customdata}<extra></extra>",
            )
        )
    figure.update_layout(
        title="Emotion per face over time",
        xaxis_title="seconds",
        yaxis={"categoryorder": "array", "categoryarray": tracks[::-1], "title": ""},
        height=140 + 40 * max(1, len(tracks)),
        legend={"title": "emotion"},
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
    )
    return figure


def comparison_chart(rows: list[dict], models: tuple[str, str]) -> go.Figure:
    """Each face's top-label confidence under two models, side by side (bars coloured by the label
    each model chose; the label is written on the bar)."""
    figure = go.Figure()
    for suffix, model, pattern in (("a", models[0], ""), ("b", models[1], "/")):
        figure.add_trace(
            go.Bar(
                x=[f"Face {r['index']}" for r in rows],
                y=[r[f"confidence_{suffix}"] * 100 for r in rows],
                name=model,
                text=[r[f"label_{suffix}"] for r in rows],
                textposition="inside",
                marker={"color": [rgb_css(r[f"label_{suffix}"]) for r in rows], "pattern": {"shape": pattern}},
                hovertemplate=model + ": %{text} %{y:.1f}%<extra></extra>",
            )
        )
    figure.update_layout(
        barmode="group",
        height=320,
        yaxis={"title": "confidence of the top label (%)", "range": [0, 100]},
        legend={"title": "model (hatched: second)"},
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
    )
    return figure
