"""The figures of an analysis, shared by the Photo, Live & video and History pages (no streamlit
here): probability bars of a face (HTML) and the valence-arousal plane of the faces (SVG), a video's
emotion-per-face timeline and two models side by side on the same faces (plotly), the live page's
timeline (a picture), and the dataset explorer's first view, its class bars (SVG). HTML and SVG where
a figure is on the path of a first result or a first visit: the browser draws them without loading
plotly's JavaScript (docs/DEPLOY.md)."""

from __future__ import annotations

import html

import cv2
import numpy as np
import plotly.graph_objects as go

from emotion.labels import VALENCE_AROUSAL, color_for
from studio.plane import WEB, label_positions, spread_points


def rgb_css(label: str) -> str:
    """An emotion's colour as CSS, 'rgb(r,g,b)'."""
    r, g, b = color_for(label)
    return f"rgb({r},{g},{b})"


def probability_bars_html(face: dict) -> str:
    """One face's probabilities (face["scores"], in label order) as HTML bars with their percentages,
    the top one in bold: drawn by the browser itself, where a plotly chart per face cost several times the
    rest of the result to build on the server and to draw in the browser (docs/DEPLOY.md)."""
    scores = face["scores"]
    top = max(scores, key=scores.get) if scores else None
    rows = []
    for label, value in scores.items():
        percent = min(max(float(value) * 100, 0.0), 100.0)
        weight = "600" if label == top else "400"
        rows.append(
            f'<span style="font-weight:{weight}">{html.escape(label)}</span>'
            '<span style="background:#eceff1;border-radius:3px;height:0.8em">'
            f'<span style="display:block;height:100%;width:{percent:.1f}%;background:{rgb_css(label)};'
            'border-radius:3px"></span></span>'
            f'<span style="text-align:right;font-weight:{weight}">{percent:.1f}%</span>'
        )
    summary = ", ".join(f"{html.escape(k)} {float(v) * 100:.1f}%" for k, v in scores.items())
    return (
        f'<div role="img" aria-label="Probabilities: {summary}" style="display:grid;'
        "grid-template-columns:max-content 1fr 3.6em;gap:0.3em 0.6em;align-items:center;"
        f'font-size:0.875rem;margin:0.25em 0 0.5em">{"".join(rows)}</div>'
    )


def circumplex_svg(faces: list[dict]) -> str:
    """Each face (report faces: index, label, valence, arousal, scores) as a numbered disc on the
    valence (x) / arousal (y) plane, with the reference points of the emotions the model knows, as an
    SVG the browser draws itself (hover a disc or a point for its values).

    SVG, not a plotly chart: plotly's megabytes of JavaScript were most of the browser's work on a
    result and its first load was most of the first result's wait when users shared a machine
    (docs/DEPLOY.md). Faces and names are placed by studio.plane in the drawing's own pixels."""
    scale = WEB
    labels = sorted({k for f in faces for k in f["scores"]} & set(VALENCE_AROUSAL))
    spots = spread_points([(f["valence"], f["arousal"]) for f in faces])
    positions = label_positions({k: VALENCE_AROUSAL[k] for k in labels}, spots)
    (ux, uy), extent = scale.per_unit, scale.extent
    left, top, right, bottom = 44, 8, 8, 40  # room for the axis titles and ticks
    width, height = left + 2 * extent * ux + right, top + 2 * extent * uy + bottom

    def at(x: float, y: float) -> tuple[float, float]:
        return left + (x + extent) * ux, top + (extent - y) * uy

    x0, y0 = at(-extent, extent)
    x1, y1 = at(extent, -extent)
    parts = [f'<rect x="{x0:.1f}" y="{y0:.1f}" width="{x1 - x0:.1f}" height="{y1 - y0:.1f}" fill="#fafafa"/>']
    for tick in (-1.0, -0.5, 0.0, 0.5, 1.0):
        (gx, _), (_, gy) = at(tick, 0), at(0, tick)
        stroke = "#999" if tick == 0 else "#e3e3e3"
        parts.append(f'<line x1="{gx:.1f}" y1="{y0:.1f}" x2="{gx:.1f}" y2="{y1:.1f}" stroke="{stroke}"/>')
        parts.append(f'<line x1="{x0:.1f}" y1="{gy:.1f}" x2="{x1:.1f}" y2="{gy:.1f}" stroke="{stroke}"/>')
        parts.append(
            f'<text x="{gx:.1f}" y="{y1 + 13:.1f}" text-anchor="middle" font-size="10" fill="#777">{tick:g}</text>'
        )
        parts.append(
            f'<text x="{x0 - 4:.1f}" y="{gy + 4:.1f}" text-anchor="end" font-size="10" fill="#777">{tick:g}</text>'
        )
    parts.append(
        f'<text x="{(x0 + x1) / 2:.1f}" y="{height - 6:.1f}" text-anchor="middle" font-size="12" fill="#444">'
        "valence (unpleasant → pleasant)</text>"
    )
    parts.append(
        f'<text transform="translate(12 {(y0 + y1) / 2:.1f}) rotate(-90)" text-anchor="middle" '
        'font-size="12" fill="#444">'
        "arousal (calm → excited)</text>"
    )
    for label in labels:  # reference points, their names shifted off the faces and each other
        (x, y), (dx, dy) = VALENCE_AROUSAL[label], positions[label]
        px, py = at(x, y)
        name = html.escape(label)
        parts.append(
            f'<circle cx="{px:.1f}" cy="{py:.1f}" r="{scale.dot:g}" fill="{rgb_css(label)}" fill-opacity="0.6">'
            f"<title>{name}</title></circle>"
        )
        parts.append(
            f'<text x="{px + dx:.1f}" y="{py - dy:.1f}" text-anchor="middle" dominant-baseline="central" '
            f'font-size="11" fill="#5f6368">{name}</text>'
        )
    for face, (x, y) in zip(faces, spots, strict=True):
        px, py = at(x, y)
        tip = html.escape(
            f"Face {face['index']} ({face['label']}): valence {face['valence']:.2f}, arousal {face['arousal']:.2f}"
        )
        parts.append(
            f'<g><title>{tip}</title><circle cx="{px:.1f}" cy="{py:.1f}" r="{scale.face:g}" '
            f'fill="{rgb_css(face["label"])}" stroke="black" stroke-width="1.5"/>'
            f'<text x="{px:.1f}" y="{py:.1f}" text-anchor="middle" dominant-baseline="central" '
            'font-size="12" fill="black">'
            f"{int(face['index'])}</text></g>"
        )
    summary = "; ".join(
        f"face {int(f['index'])} {f['label']}: valence {f['valence']:.2f}, arousal {f['arousal']:.2f}" for f in faces
    )
    return _svg(width, height, "Valence and arousal: " + summary, parts, zoom=1.25)


def class_bars_svg(class_counts: dict[str, dict[str, int]], labels: list[str], as_percent: bool = False) -> str:
    """Images per class, one panel per split (class_counts: split -> label -> count), a bar per label in its
    emotion's colour with its value on top (counts: each split on its own scale; percentages of the split:
    one scale for all), as an SVG the browser draws itself (hover a bar for its figures).

    SVG, not plotly: this is the dataset page's first view, and plotly's megabytes of JavaScript took the
    browser several seconds to load the first time, most of that view's wait (docs/DEPLOY.md)."""
    panel_w, plot_h, top, bottom, gap, left = 300, 200, 34, 64, 24, 24  # left: room for the first name, slanted
    splits = list(class_counts)
    totals = {split: max(sum(counts.values()), 1) for split, counts in class_counts.items()}

    def value(split: str, label: str) -> float:
        count = class_counts[split].get(label, 0)
        return 100.0 * count / totals[split] if as_percent else float(count)

    shared = max((value(s, k) for s in splits for k in labels), default=0.0)
    width, height = left + len(splits) * panel_w + (len(splits) - 1) * gap, top + plot_h + bottom
    slot = panel_w / max(len(labels), 1)
    parts = []
    for p, split in enumerate(splits):
        x0 = left + p * (panel_w + gap)
        highest = shared if as_percent else max((value(split, k) for k in labels), default=0.0)
        scale = plot_h / highest if highest > 0 else 0.0
        base = top + plot_h
        name = html.escape(split)
        parts.append(
            f'<text x="{x0 + panel_w / 2:.1f}" y="14" text-anchor="middle" font-size="13" fill="#333">{name}'
            f" ({sum(class_counts[split].values()):,} images)</text>"
        )
        parts.append(f'<line x1="{x0}" y1="{base}" x2="{x0 + panel_w}" y2="{base}" stroke="#999"/>')
        for i, label in enumerate(labels):
            v, count = value(split, label), class_counts[split].get(label, 0)
            bar_h, cx = v * scale, x0 + (i + 0.5) * slot
            shown = f"{v:.1f}%" if as_percent else f"{count:,}"
            tip = html.escape(f"{split}, {label}: {count:,} images ({100.0 * count / totals[split]:.1f}%)")
            parts.append(
                f'<g><title>{tip}</title><rect x="{cx - slot * 0.38:.1f}" y="{base - bar_h:.1f}" '
                f'width="{slot * 0.76:.1f}" height="{bar_h:.1f}" fill="{rgb_css(label)}"/></g>'
            )
            parts.append(
                f'<text x="{cx:.1f}" y="{base - bar_h - 4:.1f}" text-anchor="middle" font-size="10" '
                f'fill="#444">{shown}</text>'
            )
            parts.append(
                f'<text transform="translate({cx:.1f} {base + 12}) rotate(-35)" text-anchor="end" '
                f'font-size="11" fill="#444">{html.escape(label)}</text>'
            )
    summary = "; ".join(
        f"{split}: " + ", ".join(f"{label} {counts.get(label, 0):,}" for label in labels)
        for split, counts in class_counts.items()
    )
    return _svg(width, height, "Images per class: " + summary, parts, zoom=1.3)


def _svg(width: float, height: float, label: str, parts: list[str], zoom: float) -> str:
    """An SVG document of `parts` drawn in a width x height box: an image to assistive technology (label,
    escaped here), as wide as its column up to `zoom` times its own size."""
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:.0f} {height:.0f}" role="img" '
        f'aria-label="{html.escape(label)}" '
        f'style="width:100%;max-width:{width * zoom:.0f}px;height:auto;font-family:sans-serif">{"".join(parts)}</svg>'
    )


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


def timeline_image(
    rows: list[dict], labels: tuple[str, ...], seconds: float = 60.0, size: tuple[int, int] = (640, 200)
) -> np.ndarray:
    """The live page's rolling timeline as a small RGB (H, W, 3) picture: one line per emotion's
    probability (rows: {"t": seconds, label: probability, ...}, oldest first) over the last `seconds`.

    A picture, not a plotly chart: the webcam page redraws it every second beside a 30 fps video, and
    re-rendering a plotly figure cost the browser frames of that video (docs/LIVE.md)."""
    width, height = size
    left, right, top, bottom = 34, 8, 22, 18  # plot margins: axis labels left and below, legend on top
    image = np.full((height, width, 3), 255, np.uint8)
    plot_w, plot_h = width - left - right, height - top - bottom
    font, ink, grid = cv2.FONT_HERSHEY_SIMPLEX, (90, 90, 90), (225, 225, 225)
    for value in (0.0, 0.5, 1.0):
        y = top + round((1 - value) * plot_h)
        cv2.line(image, (left, y), (width - right, y), grid, 1)
        cv2.putText(image, f"{value:.0%}", (2, y + 4), font, 0.33, ink, 1, cv2.LINE_AA)
    cv2.putText(image, f"last {seconds:.0f} s", (width - right - 60, height - 4), font, 0.33, ink, 1, cv2.LINE_AA)
    x = left
    for label in labels:  # legend
        color = color_for(label)
        cv2.rectangle(image, (x, 6), (x + 10, 14), color, -1)
        cv2.putText(image, label, (x + 13, 14), font, 0.36, ink, 1, cv2.LINE_AA)
        x += 18 + cv2.getTextSize(label, font, 0.36, 1)[0][0]
    if len(rows) < 2:
        return image
    end = rows[-1]["t"]
    times = np.array([r["t"] for r in rows], np.float64)
    keep = times >= end - seconds
    xs = left + (times[keep] - (end - seconds)) / seconds * plot_w
    for label in labels:
        values = np.clip(np.array([r.get(label, 0.0) for r in rows], np.float64)[keep], 0.0, 1.0)
        points = np.stack([xs, top + (1 - values) * plot_h], axis=1).round().astype(np.int32)
        cv2.polylines(image, [points], False, color_for(label), 2, cv2.LINE_AA)
    return image
