"""Analysis reports: a versioned JSON document (with its JSON Schema) and a PDF built from it.

studio.analyses (behind the Photo, Live & video and History pages) and the CLI call these functions;
nothing here imports streamlit. `json_report` builds the document, `pdf_report` renders one
(reportlab only: dates as people write them in the reader's time zone (`human_time`), the annotated
image, a faces table, the valence-arousal plane, one bar chart per face, Grad-CAM of the faces the
user explained, a note on the model's measured accuracy, page numbers), `report_for_analysis`
rebuilds the document of a stored analysis.

JSON layout (version REPORT_SCHEMA_VERSION, JSON Schema draft 2020-12 in REPORT_JSON_SCHEMA):
    schema_version, created_at (ISO-8601 UTC of the analysis), generated_at, user, source
    ("photo" | "snapshot" | "video"), title, image {width, height, original_name},
    model, model_info {kind, labels, description, metrics: {split, n, accuracy, macro_f1, ...} | null},
    detector, face_count, faces [{index (the number drawn on the image), box [x, y, w, h] (pixels of
    the image), label, confidence, scores {label: probability}, valence, arousal (circumplex, -1..1,
    see emotion.labels)}],
    summary {label_counts, mean_valence, mean_arousal}, timings {name_ms: milliseconds, name_s: seconds}.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from emotion.registry import list_models
from studio.store import SOURCES as ANALYSIS_SOURCES
from studio.store import utc_now

REPORT_SCHEMA_VERSION = "1.0"
REPORT_SOURCES = (*ANALYSIS_SOURCES, "cli")  # where a report's analysis came from: the store's, or the command line
_METRIC_KEYS = ("split", "dataset", "n", "accuracy", "macro_f1", "accuracy_tta", "macro_f1_tta", "evaluated_at")

_NUMBER_OR_NULL = {"type": ["number", "null"]}
_FACE_SCHEMA = {
    "type": "object",
    "required": ["index", "box", "label", "confidence", "scores", "valence", "arousal"],
    "additionalProperties": False,
    "properties": {
        "index": {
            "type": "integer",
            "minimum": 1,
            "description": "1-based number drawn on the image: reading order (photos), track id (video)",
        },
        "box": {
            "type": "array",
            "description": "[x, y, width, height] in pixels of the analysed image",
            "items": {"type": "integer", "minimum": 0},
            "minItems": 4,
            "maxItems": 4,
        },
        "label": {"type": "string", "minLength": 1},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "scores": {
            "type": "object",
            "description": "probability per label of the model, summing to 1",
            "additionalProperties": {"type": "number", "minimum": 0, "maximum": 1},
            "minProperties": 1,
        },
        "valence": {"type": "number", "minimum": -1, "maximum": 1},
        "arousal": {"type": "number", "minimum": -1, "maximum": 1},
    },
}
REPORT_JSON_SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": f"https://emotion-studio.local/schemas/analysis-report-{REPORT_SCHEMA_VERSION}.json",
    "title": "Facial emotion analysis report",
    "type": "object",
    "required": [
        "schema_version",
        "created_at",
        "generated_at",
        "user",
        "source",
        "title",
        "image",
        "model",
        "model_info",
        "detector",
        "face_count",
        "faces",
        "summary",
        "timings",
    ],
    "additionalProperties": False,
    "properties": {
        "schema_version": {"const": REPORT_SCHEMA_VERSION},
        "analysis_id": {"type": "integer", "description": "id in the studio's store, when saved"},
        "created_at": {"type": "string", "format": "date-time", "description": "when the analysis ran (UTC)"},
        "generated_at": {"type": "string", "format": "date-time", "description": "when this report was made"},
        "user": {"type": ["string", "null"]},
        "source": {"enum": list(REPORT_SOURCES)},
        "title": {"type": ["string", "null"]},
        "image": {
            "type": "object",
            "required": ["width", "height", "original_name"],
            "additionalProperties": False,
            "properties": {
                "width": {"type": ["integer", "null"], "minimum": 1},
                "height": {"type": ["integer", "null"], "minimum": 1},
                "original_name": {"type": ["string", "null"]},
            },
        },
        "model": {"type": "string", "minLength": 1},
        "model_info": {
            "type": "object",
            "description": "what the registry knew of the model when the report was made",
            "required": ["kind", "labels", "description", "metrics"],
            "properties": {
                "kind": {"type": ["string", "null"]},
                "labels": {"type": "array", "items": {"type": "string"}},
                "description": {"type": ["string", "null"]},
                "metrics": {
                    "description": "test-set figures from the model's metrics.json; null when not evaluated",
                    "oneOf": [
                        {"type": "null"},
                        {
                            "type": "object",
                            "required": ["accuracy"],
                            "properties": {
                                "split": {"type": ["string", "null"]},
                                "dataset": {"type": ["string", "null"]},
                                "n": {"type": ["integer", "null"]},
                                "accuracy": {"type": "number", "minimum": 0, "maximum": 1},
                                "macro_f1": _NUMBER_OR_NULL,
                                "accuracy_tta": _NUMBER_OR_NULL,
                                "macro_f1_tta": _NUMBER_OR_NULL,
                                "evaluated_at": {"type": ["string", "null"]},
                            },
                        },
                    ],
                },
            },
        },
        "detector": {"type": "string", "description": "face detector, or 'none' for a whole-image face"},
        "face_count": {"type": "integer", "minimum": 0},
        "faces": {"type": "array", "items": _FACE_SCHEMA},
        "summary": {
            "type": "object",
            "required": ["label_counts", "mean_valence", "mean_arousal"],
            "properties": {
                "label_counts": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 1}},
                "mean_valence": _NUMBER_OR_NULL,
                "mean_arousal": _NUMBER_OR_NULL,
            },
        },
        "timings": {
            "type": "object",
            "description": "processing times; the key's suffix is the unit: _ms milliseconds, _s seconds",
            "additionalProperties": {"type": "number", "minimum": 0},
        },
    },
}


class AnalysisLike(Protocol):
    """The fields of studio.store.Analysis a report needs."""

    id: int
    created_at: str
    source: str
    model: str
    detector: str
    faces: list[dict]
    original_name: str | None
    title: str | None
    extra: dict


def human_time(iso: str, timezone: str | None = None) -> str:
    """An ISO-8601 time as people write it, in `timezone` (an IANA name such as the browser's
    "Europe/Paris"; UTC when None or unknown): "28 Nov 2026, 20:18 UTC"."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    moment = dt.datetime.fromisoformat(iso)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    zone: dt.tzinfo = dt.UTC
    if timezone and timezone != "UTC":
        try:
            zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            zone = dt.UTC
    local = moment.astimezone(zone)
    name = "UTC" if zone is dt.UTC else (local.tzname() or timezone)
    return f"{local.day} {local:%b %Y, %H:%M} {name}"


def model_summary(model: str) -> dict:
    """kind, labels, description and the headline metrics of a registered model (metrics None when
    it has no metrics.json; everything empty when the model is no longer registered)."""
    info = next((m for m in list_models() if m.name == model), None)
    if info is None:
        return {"kind": None, "labels": [], "description": None, "metrics": None}
    metrics = info.metrics
    headline = {k: metrics.get(k) for k in _METRIC_KEYS} if isinstance(metrics.get("accuracy"), (int, float)) else None
    return {
        "kind": info.kind,
        "labels": list(info.labels),
        "description": info.description or None,
        "metrics": headline,
    }


def _face_entry(index: int, face: dict) -> dict:
    return {
        "index": index,
        "box": [int(v) for v in face["box"]],
        "label": str(face["label"]),
        "confidence": float(face["confidence"]),
        "scores": {str(k): float(v) for k, v in face["scores"].items()},
        "valence": float(face["valence"]),
        "arousal": float(face["arousal"]),
    }


def json_report(
    *,
    faces: list[dict],
    image_size: tuple[int, int] | None,
    model: str,
    detector: str,
    source: str,
    created_at: str,
    user: str | None = None,
    title: str | None = None,
    original_name: str | None = None,
    timings: dict | None = None,
) -> dict:
    """The report document of one analysis; faces are FaceResult.to_dict() dicts, image_size (w, h)."""
    entries = [_face_entry(int(f.get("index") or i), f) for i, f in enumerate(faces, start=1)]
    counts: dict[str, int] = {}
    for face in entries:
        counts[face["label"]] = counts.get(face["label"], 0) + 1
    width, height = (int(image_size[0]), int(image_size[1])) if image_size else (None, None)
    return {
        "schema_version": REPORT_SCHEMA_VERSION,
        "created_at": created_at,
        "generated_at": utc_now("seconds"),
        "user": user,
        "source": source,
        "title": title or None,
        "image": {"width": width, "height": height, "original_name": original_name},
        "model": model,
        "model_info": model_summary(model),
        "detector": detector,
        "face_count": len(entries),
        "faces": entries,
        "summary": {
            "label_counts": counts,
            "mean_valence": round(float(np.mean([f["valence"] for f in entries])), 4) if entries else None,
            "mean_arousal": round(float(np.mean([f["arousal"] for f in entries])), 4) if entries else None,
        },
        "timings": {str(k): round(float(v), 3) for k, v in (timings or {}).items() if isinstance(v, (int, float))},
    }


def report_for_analysis(analysis: AnalysisLike, username: str) -> dict:
    """The report of a stored analysis (studio.store.Analysis), with its id."""
    extra = analysis.extra or {}
    size = extra.get("image_size")
    report = json_report(
        faces=analysis.faces,
        image_size=tuple(size) if size else None,
        model=analysis.model,
        detector=analysis.detector,
        source=analysis.source,
        created_at=analysis.created_at,
        user=username,
        title=analysis.title,
        original_name=analysis.original_name,
        timings=extra.get("timings"),
    )
    report["analysis_id"] = int(analysis.id)
    return report


def report_filename(report: dict, extension: str) -> str:
    """A safe download name: emotion-<source>-<analysis id or timestamp>.<extension>."""
    stamp = report.get("analysis_id") or "".join(c for c in report["created_at"][:19] if c.isdigit())
    return f"emotion-{report['source']}-{stamp}.{extension}"


def schema_errors(report: dict) -> list[str]:
    """Messages for every way `report` breaks REPORT_JSON_SCHEMA (empty when valid)."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(REPORT_JSON_SCHEMA, format_checker=jsonschema.FormatChecker())
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(report)]


def describe_model_accuracy(report: dict) -> str:
    """One sentence on the model's measured accuracy, or that it was not evaluated (never invented)."""
    info: dict[str, Any] = report.get("model_info") or {}
    metrics = info.get("metrics")
    if not metrics:
        return f"Model {report['model']}: not evaluated (no metrics.json), so its accuracy is unknown."
    parts = [f"accuracy {metrics['accuracy']:.1%}"]
    if metrics.get("macro_f1") is not None:
        parts.append(f"macro-F1 {metrics['macro_f1']:.3f}")
    if metrics.get("accuracy_tta") is not None:
        parts.append(f"accuracy with TTA {metrics['accuracy_tta']:.1%}")
    where = " ".join(str(metrics[k]) for k in ("dataset", "split") if metrics.get(k))
    count = f", n={metrics['n']}" if metrics.get("n") else ""
    return f"Model {report['model']}: {', '.join(parts)} on {where or 'its test set'}{count}."


# ---- PDF (reportlab only) -------------------------------------------------------------------

_PAGE_WIDTH_CM = 17.0  # A4 width minus 2 cm margins


_FONT_LOCK = threading.Lock()
_FONTS: tuple[str, str] | None = None  # (regular, bold), chosen once per process


def _font_names() -> tuple[str, str]:
    """(regular, bold): DejaVu Sans when installed (covers most scripts a title may use), else Helvetica.

    Registered once per process under a lock, both faces before either name is handed out: without it,
    concurrent first PDFs saw the regular face registered and the bold not yet, and failed."""
    global _FONTS
    if _FONTS is not None:
        return _FONTS
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFError, TTFont

    folder = "/usr/share/fonts/truetype/dejavu/"
    with _FONT_LOCK:
        if _FONTS is None:
            try:
                faces = [TTFont(name, folder + f"{name}.ttf") for name in ("DejaVuSans", "DejaVuSans-Bold")]
                for face in faces:
                    pdfmetrics.registerFont(face)
                _FONTS = ("DejaVuSans", "DejaVuSans-Bold")
            except (TTFError, OSError):  # no DejaVu on this machine
                _FONTS = ("Helvetica", "Helvetica-Bold")
    return _FONTS


def _rgb(label: str):
    from reportlab.lib import colors

    from emotion.labels import color_for

    r, g, b = color_for(label)
    return colors.Color(r / 255, g / 255, b / 255)


def _image_flowable(image: np.ndarray, max_height_cm: float = 11.0):
    """The RGB (H, W, 3) uint8 image as a JPEG flowable, fitted into the page width and max height."""
    import io

    from PIL import Image as PILImage
    from reportlab.lib.units import cm
    from reportlab.platypus import Image

    height, width = image.shape[:2]
    longest = 1600  # keep the PDF small: no need for more pixels than a printed page shows
    picture = PILImage.fromarray(np.ascontiguousarray(image[:, :, :3]))
    if max(width, height) > longest:
        picture.thumbnail((longest, longest))
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=88)
    buffer.seek(0)
    scale = min(_PAGE_WIDTH_CM * cm / width, max_height_cm * cm / height)
    return Image(buffer, width=width * scale, height=height * scale)


def _bar_chart(face: dict, font: str):
    """A horizontal bar chart of one face's probabilities, one colour per emotion."""
    from reportlab.graphics.charts.barcharts import HorizontalBarChart
    from reportlab.graphics.shapes import Drawing, String
    from reportlab.lib.units import cm

    labels = list(face["scores"])
    values = [face["scores"][k] * 100 for k in labels]
    row = 0.5 * cm
    drawing = Drawing(_PAGE_WIDTH_CM * cm, row * len(labels) + 1.6 * cm)
    chart = HorizontalBarChart()
    chart.x, chart.y = 2.4 * cm, 0.8 * cm
    chart.width, chart.height = 12 * cm, row * len(labels)
    chart.data = [values[::-1]]  # reportlab draws the first category at the bottom
    chart.categoryAxis.categoryNames = labels[::-1]
    chart.categoryAxis.labels.fontName = font
    chart.categoryAxis.labels.fontSize = 8
    chart.valueAxis.valueMin, chart.valueAxis.valueMax, chart.valueAxis.valueStep = 0, 100, 20
    chart.valueAxis.labels.fontName = font
    chart.valueAxis.labels.fontSize = 7
    chart.valueAxis.labelTextFormat = "%d%%"
    chart.barLabelFormat = "%.1f%%"
    chart.barLabels.fontName = font
    chart.barLabels.fontSize = 7
    chart.barLabels.boxAnchor = "w"
    chart.barLabels.dx = 3
    chart.bars.strokeColor = None
    for i, label in enumerate(labels[::-1]):
        chart.bars[(0, i)].fillColor = _rgb(label)
    drawing.add(chart)
    caption = f"Face {face['index']}: probability per emotion (%)"
    drawing.add(String(2.4 * cm, row * len(labels) + 1.1 * cm, caption, fontName=font, fontSize=9))
    return drawing


def _circumplex_drawing(faces: list[dict], font: str):
    """The valence (x) / arousal (y) plane: the emotions' reference points (small, labelled) and each
    face as a numbered disc in its top emotion's colour; names placed by studio.plane so that none is
    printed over a face or another name."""
    from reportlab.graphics.shapes import Circle, Drawing, Group, Line, Rect, String
    from reportlab.lib import colors
    from reportlab.lib.units import cm

    from emotion.labels import VALENCE_AROUSAL
    from studio.plane import PDF, label_positions, spread_points

    side = 9 * cm  # PDF (studio.plane) is sized for this: 127.5 points per plane unit
    left, bottom = 1.2 * cm, 1.0 * cm
    drawing = Drawing(_PAGE_WIDTH_CM * cm, side + 1.6 * cm)

    def point(v: float, a: float) -> tuple[float, float]:
        return left + (v + 1) / 2 * side, bottom + (a + 1) / 2 * side

    grey = colors.HexColor("#9aa0a6")
    drawing.add(Rect(left, bottom, side, side, strokeColor=grey, fillColor=None, strokeWidth=0.6))
    drawing.add(Line(*point(-1, 0), *point(1, 0), strokeColor=grey, strokeWidth=0.5))
    drawing.add(Line(*point(0, -1), *point(0, 1), strokeColor=grey, strokeWidth=0.5))
    drawing.add(String(left + side / 2, 0.35 * cm, "valence (unpleasant to pleasant)", fontName=font, fontSize=8,
                       textAnchor="middle"))  # fmt: skip
    axis_label = String(0, 0, "arousal (calm to excited)", fontName=font, fontSize=8, textAnchor="middle")
    turned = Group(axis_label)
    turned.rotate(90)
    turned.translate(bottom + side / 2, -0.7 * cm)
    drawing.add(turned)
    shown = {k for face in faces for k in face["scores"]} or set(VALENCE_AROUSAL)
    references = {k: v for k, v in VALENCE_AROUSAL.items() if k in shown}
    spots = spread_points([(f["valence"], f["arousal"]) for f in faces], PDF.face_gap)
    shifts = label_positions(references, spots, PDF)  # names off the faces and each other
    for label, (v, a) in references.items():
        x, y = point(v, a)
        drawing.add(Circle(x, y, PDF.dot, fillColor=_rgb(label), strokeColor=None))
        dx, dy = shifts[label]
        drawing.add(String(x + dx, y + dy - PDF.text / 2 + 1.5, label, fontName=font, fontSize=7,
                           textAnchor="middle", fillColor=colors.HexColor("#5f6368")))  # fmt: skip
    for face, (v, a) in zip(faces, spots, strict=True):
        x, y = point(v, a)
        drawing.add(Circle(x, y, PDF.face, fillColor=_rgb(face["label"]), strokeColor=colors.black, strokeWidth=0.8))
        drawing.add(String(x, y - 3, str(face["index"]), fontName=font, fontSize=8, textAnchor="middle"))
    legend = "Faces by number (disc colour: top emotion); small dots: where each emotion sits."
    drawing.add(String(left + side + 0.5 * cm, bottom + side - 0.3 * cm, legend[:44], fontName=font, fontSize=7.5))
    drawing.add(String(left + side + 0.5 * cm, bottom + side - 0.75 * cm, legend[44:].strip(), fontName=font,
                       fontSize=7.5))  # fmt: skip
    return drawing


def _gradcam_row(face: dict, overlay: np.ndarray, font: str):
    """Grad-CAM of one face (its overlay, RGB (h, w, 3)) with a caption."""
    from reportlab.lib.units import cm
    from reportlab.platypus import Table

    caption = f"Face {face['index']}: Grad-CAM for \u201c{face['label']}\u201d (red: most influential)"
    picture = _image_flowable(overlay, max_height_cm=4.0)
    table = Table([[picture, caption]], colWidths=[4.6 * cm, None], hAlign="LEFT")
    table.setStyle([("FONTNAME", (0, 0), (-1, -1), font), ("VALIGN", (0, 0), (-1, -1), "MIDDLE")])
    return table


def _page_number(canvas, doc) -> None:
    """'Page n' at the foot of every page."""
    from reportlab.lib.units import cm

    canvas.saveState()
    canvas.setFont("Helvetica", 8)
    canvas.drawRightString(doc.pagesize[0] - 2 * cm, 0.8 * cm, f"Page {canvas.getPageNumber()}")
    canvas.restoreState()


def _format_timing(key: str, value: float) -> str:
    """ "detect_ms", 70.1 -> "detect 70 ms"; "total_s", 3.25 -> "total 3.2 s"."""
    if key.endswith("_ms"):
        return f"{key.removesuffix('_ms')} {value:.0f} ms"
    if key.endswith("_s"):
        return f"{key.removesuffix('_s')} {value:.1f} s"
    return f"{key} {value:g}"


def _faces_table(report: dict, font: str, bold: str):
    from reportlab.lib import colors
    from reportlab.platypus import Table, TableStyle

    rows = [["Face", "Top emotion", "Confidence", "Box (x, y, w, h)", "Valence", "Arousal"]]
    for face in report["faces"]:
        x, y, w, h = face["box"]
        rows.append(
            [
                str(face["index"]),
                face["label"],
                f"{face['confidence']:.1%}",
                f"{x}, {y}, {w}, {h}",
                f"{face['valence']:+.2f}",
                f"{face['arousal']:+.2f}",
            ]
        )
    table = Table(rows, hAlign="LEFT")
    style = [
        ("FONTNAME", (0, 0), (-1, -1), font),
        ("FONTNAME", (0, 0), (-1, 0), bold),
        ("FONTSIZE", (0, 0), (-1, -1), 9),
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8eaed")),
        ("GRID", (0, 0), (-1, -1), 0.4, colors.HexColor("#9aa0a6")),
        ("ALIGN", (2, 1), (-1, -1), "RIGHT"),
    ]
    for i, face in enumerate(report["faces"], start=1):
        style.append(("BACKGROUND", (1, i), (1, i), _rgb(face["label"])))
    table.setStyle(TableStyle(style))
    return table


def pdf_report(
    report: dict,
    annotated_image: np.ndarray,
    *,
    gradcam: Mapping[int, np.ndarray] | None = None,
    timezone: str | None = None,
) -> bytes:
    """A PDF of a report (see json_report) with the annotated RGB uint8 (H, W, 3) image, the faces
    table, the valence-arousal plane, one bar chart per face and page numbers.

    gradcam: {face index: Grad-CAM overlay RGB (h, w, 3)} for the faces the user asked to explain.
    timezone: IANA name the dates are written in (the user's browser's; UTC when None).
    Every user-supplied string (title, original name, user) is escaped for Paragraph markup.
    """
    import io
    from xml.sax.saxutils import escape

    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
    from reportlab.lib.units import cm
    from reportlab.platypus import KeepTogether, Paragraph, SimpleDocTemplate, Spacer

    font, bold = _font_names()
    sheet = getSampleStyleSheet()
    body = ParagraphStyle("body", parent=sheet["BodyText"], fontName=font, fontSize=9.5, leading=13)
    heading = ParagraphStyle("h", parent=sheet["Heading2"], fontName=bold)
    title_style = ParagraphStyle("t", parent=sheet["Title"], fontName=bold)
    image = report["image"]
    size = f"{image['width']}x{image['height']} px" if image.get("width") else "size not recorded"
    meta = [
        ("Date", human_time(report["created_at"], timezone)),
        ("User", report.get("user") or "-"),
        ("Source", report["source"]),
        ("Image", f"{image.get('original_name') or 'unnamed'} ({size})"),
        ("Model", report["model"]),
        ("Detector", report["detector"]),
        ("Faces", str(report["face_count"])),
    ]
    timings = report.get("timings") or {}
    if timings:
        meta.append(("Processing", ", ".join(_format_timing(k, v) for k, v in timings.items())))
    story = [Paragraph(escape(report.get("title") or "Facial emotion analysis"), title_style)]
    story += [Paragraph(f"<b>{name}:</b> {escape(str(value))}", body) for name, value in meta]
    story += [Spacer(1, 0.3 * cm), _image_flowable(annotated_image), Spacer(1, 0.3 * cm)]
    if report["faces"]:
        story += [Paragraph("Faces", heading), _faces_table(report, font, bold), Spacer(1, 0.3 * cm)]
        plane = _circumplex_drawing(report["faces"], font)
        story.append(KeepTogether([Paragraph("Valence and arousal", heading), plane]))
        story += [KeepTogether(_bar_chart(face, font)) for face in report["faces"]]
        explained = [(face, gradcam[face["index"]]) for face in report["faces"] if face["index"] in (gradcam or {})]
        if explained:
            rows = [_gradcam_row(face, overlay, font) for face, overlay in explained]
            story += [KeepTogether([Paragraph("Explanations (Grad-CAM)", heading), rows[0]]), *rows[1:]]
    else:
        story.append(Paragraph("No face was found in this image.", body))
    story += [Paragraph("About the model", heading), Paragraph(escape(describe_model_accuracy(report)), body)]
    story.append(
        Paragraph(
            "Emotion labels are a model's estimate from facial appearance alone; they are not a measurement "
            "of what a person feels. Valence (unpleasant to pleasant) and arousal (calm to excited) run from "
            "-1 to 1 and are the probability-weighted positions of the emotions on Russell's circumplex.",
            body,
        )
    )
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=2 * cm,
        rightMargin=2 * cm,
        topMargin=1.5 * cm,
        bottomMargin=1.5 * cm,
        title=report.get("title") or "Facial emotion analysis",
        author=report.get("user") or "",
    )
    story.append(Paragraph(f"Report generated {escape(human_time(report['generated_at'], timezone))}.", body))
    doc.build(story, onFirstPage=_page_number, onLaterPages=_page_number)
    return buffer.getvalue()
