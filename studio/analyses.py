"""Analyse and save: the one service behind every page that keeps an analysis (a photo, a batch of
photos, a webcam snapshot, a video) and behind History's detail view.

`save` is the single place an analysis is written to the store, with one error policy: a failed
save is logged and reported in `AnalysisResult.save_error` (a sentence for the user), the result
itself is still returned, shown and downloadable. An analysis is keyed by the hash of its input and
its options (`content_key`): the same input with the same options is saved once, and asking again
returns the entry already in the history (`duplicate`; a title typed this time replaces its title, since
a title is a note, not an option). `save_analysis` prepares and saves at once;
`prepare_analysis` (or `analyze_photo(save=False)`) gives a result to show first and `save` later
(the Photo page saves in its worker pool after the result is on screen: the user does not wait for
the kept JPEG and the row).

`AnalysisResult` is what a page shows (annotated image, its display JPEG at column size, faces in
reading order, report) and offers for download (`downloads()`: PDF and JSON built when clicked, and
for a video the mp4, per-frame CSV and JSON). Nothing here imports streamlit.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import cv2
import numpy as np

from emotion.detectors import Box, crop, expand_box
from emotion.imageio import encode_png, load_image
from emotion.pipeline import FaceResult, analyze, annotate, classify_crops, reading_order
from emotion.video import frames_to_csv
from studio import reports

log = logging.getLogger(__name__)
WHOLE_IMAGE_DETECTOR = "none"  # the detector recorded for a whole-image analysis (no detection)
FACE_KEYS = ("box", "label", "confidence", "scores", "valence", "arousal")  # FaceResult.to_dict() fields
SAVE_FAILED = "The result could not be saved to your history ({}). It is still shown here and can be downloaded."
DISPLAY_MAX_WIDTH = 1280  # px of the picture sent to the browser: its column, twice, on a wide layout
# The kept picture: a JPEG this good encodes in a fifteenth of the time of even a fast PNG (73 against 4 ms
# for a 1126x661 photo, 264 against 15 ms at 2000x1428) at a fifth of its bytes; the save is on the path
# of every first result (its downloads wait for it) and the history shows it no larger than the page.
HISTORY_JPEG_QUALITY = 95


def display_jpeg(image: np.ndarray, max_width: int | None = DISPLAY_MAX_WIDTH, quality: int = 85) -> bytes:
    """What the browser gets of an RGB (H, W, 3) uint8 picture: a JPEG at most `max_width` px wide
    (its column on a high-density screen; None: full size); a full-size PNG of a large photo is
    megabytes and most of a second to encode."""
    height, width = image.shape[:2]
    if max_width is not None and width > max_width:
        image = cv2.resize(image, (max_width, max(1, round(height * max_width / width))), interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("the annotated image could not be encoded")
    return data.tobytes()


@dataclass(frozen=True)
class Download:
    """One download button: its label, the file's bytes (or a function making them when clicked),
    file name and MIME type."""

    label: str
    data: bytes | str | Callable[[], bytes]
    file_name: str
    mime: str


@dataclass
class AnalysisResult:
    """What a page shows and offers for download after an analysis (saved or not).

    annotated: RGB (H, W, 3) uint8 with the faces drawn and numbered as in report["faces"];
    image: the analysed RGB (H, W, 3) image when known (Grad-CAM, clean face thumbnails), else None;
    media: the annotated mp4 of a video; frames: its per-frame results (emotion.video layout).
    pending: prepared, not saved yet (`save`); save_ms: how long the save took; timings: this
    analysis' own (ms by step); shown: the page's own measurements of the user's wait (waited_ms,
    page_ms), for its timing caption.
    """

    report: dict
    annotated: np.ndarray
    content_key: str
    image: np.ndarray | None = None
    analysis_id: int | None = None
    duplicate: bool = False
    retitled: bool = False  # a duplicate given the title typed this time (save)
    save_error: str | None = None
    media: bytes | None = None
    frames: list[dict] | None = None
    labels: tuple[str, ...] = ()
    gradcam: dict[int, np.ndarray] = field(default_factory=dict)  # face index -> Grad-CAM overlay kept
    save_ms: float | None = None
    timings: dict[str, float] = field(default_factory=dict)  # this run's (a duplicate's report has the first's)
    shown: dict[str, float] = field(default_factory=dict)
    _kept_jpeg: bytes | None = field(default=None, repr=False)
    _record: dict | None = field(default=None, repr=False)  # Store.add_analysis arguments until `save` runs
    _displays: dict[int, bytes] = field(default_factory=dict, repr=False)  # max width -> display JPEG
    _pdfs: dict[tuple, bytes] = field(default_factory=dict, repr=False)  # (Grad-CAM faces, time zone) -> PDF

    @property
    def saved(self) -> bool:
        return self.analysis_id is not None

    @property
    def pending(self) -> bool:
        """Prepared but not saved yet (nor found in the history, nor failed)."""
        return self._record is not None

    @property
    def pdf_built(self) -> bool:
        """Whether a PDF was built (they are built when a download asks, then kept)."""
        return bool(self._pdfs)

    @property
    def faces(self) -> list[dict]:
        """The report's faces: index (the number drawn on the image), box, label, scores, ..."""
        return self.report["faces"]

    @property
    def kept_jpeg(self) -> bytes:
        """The annotated image as the history keeps it: full size, JPEG of HISTORY_JPEG_QUALITY."""
        if self._kept_jpeg is None:
            self._kept_jpeg = display_jpeg(self.annotated, max_width=None, quality=HISTORY_JPEG_QUALITY)
        return self._kept_jpeg

    def display_jpeg(self, max_width: int = DISPLAY_MAX_WIDTH) -> bytes:
        """The annotated image for the page: JPEG at most `max_width` px wide, made once per width."""
        if max_width not in self._displays:
            self._displays[max_width] = display_jpeg(self.annotated, max_width)
        return self._displays[max_width]

    def face_thumbnail(self, face: dict, margin: float = 0.1) -> np.ndarray:
        """The face's crop (RGB (h, w, 3)) from the clean image, else from the annotated one."""
        from emotion.explain import face_crop

        return face_crop(self.image if self.image is not None else self.annotated, face["box"], margin)

    def json_bytes(self) -> bytes:
        return json.dumps(self.report, indent=2, ensure_ascii=False).encode()

    def pdf(self, gradcam: Mapping[int, np.ndarray] | None = None, timezone: str | None = None) -> bytes:
        """The PDF report with the Grad-CAM overlays (RGB, by face index) kept with the analysis and
        those in `gradcam`; built on first use and kept (a Grad-CAM computed since makes a new one)."""
        overlays = {**self.gradcam, **(gradcam or {})}
        key = (tuple(sorted(overlays)), timezone)
        if key not in self._pdfs:
            self._pdfs[key] = reports.pdf_report(self.report, self.annotated, gradcam=overlays, timezone=timezone)
        return self._pdfs[key]

    def frames_csv(self) -> str | None:
        return frames_to_csv(self.frames, self.labels) if self.frames else None

    def _frames_csv_bytes(self) -> bytes:
        return (self.frames_csv() or "").encode()

    def _frames_json(self) -> bytes:
        return frames_json(self.frames or [], self.labels)

    def downloads(
        self, gradcam: Callable[[], Mapping[int, np.ndarray]] | None = None, timezone: str | None = None
    ) -> list[Download]:
        """PDF and JSON (both built when clicked: the PDF with the overlays kept with the result and
        those `gradcam()` returns then); for a video also the annotated mp4, the per-frame CSV and the
        per-frame JSON (built when clicked too)."""
        report = self.report
        files = [
            Download(
                "PDF report",
                lambda: self.pdf(gradcam() if gradcam else None, timezone),
                reports.report_filename(report, "pdf"),
                "application/pdf",
            ),
            Download("JSON report", self.json_bytes, reports.report_filename(report, "json"), "application/json"),
        ]
        stem = reports.report_filename(report, "")[:-1]
        if self.media is not None:
            files.append(Download("Annotated video", self.media, f"{stem}-annotated.mp4", "video/mp4"))
        if self.frames:
            files.append(Download("Per-frame CSV", self._frames_csv_bytes, f"{stem}-frames.csv", "text/csv"))
            files.append(Download("Per-frame JSON", self._frames_json, f"{stem}-frames.json", "application/json"))
        return files


def frames_json(frames: list[dict], labels: Sequence[str]) -> bytes:
    """A video's per-frame results as the Per-frame JSON download: {"labels", "frames"}."""
    return json.dumps({"labels": list(labels), "frames": frames}).encode()


def content_key(content: bytes, options: Mapping[str, Any]) -> str:
    """sha256 of the input's bytes, then of the options that change the result (sorted JSON)."""
    digest = hashlib.sha256(content)
    digest.update(json.dumps(dict(options), sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _numbered(faces: Sequence[dict], *, reorder: bool) -> list[dict]:
    """Faces as FaceResult.to_dict() dicts in reading order (when reorder), each with its "index"."""
    if reorder:
        faces = [faces[i] for i in reading_order([Box(*f["box"]) for f in faces])]
    return [{**{k: f[k] for k in FACE_KEYS}, "index": int(f.get("index") or i)} for i, f in enumerate(faces, 1)]


def prepare_analysis(
    user: Any,
    *,
    source: str,
    content: bytes,
    options: Mapping[str, Any],
    faces: Sequence[dict],
    image: np.ndarray | None = None,
    annotated: np.ndarray | None = None,
    original_name: str | None = None,
    title: str | None = None,
    timings: Mapping[str, float] | None = None,
    extra: Mapping[str, Any] | None = None,
    media: bytes | None = None,
    frames: list[dict] | None = None,
    labels: Sequence[str] = (),
) -> AnalysisResult:
    """What the page shows of one analysis for `user` (studio.store.User), not saved yet (`save`).

    faces: FaceResult.to_dict() dicts. Given only `image` (RGB (H, W, 3)), the faces are put in
    reading order and drawn numbered on it; given `annotated` (a video's representative frame, drawn
    with track ids), faces keep their order and an "index" they carry. content and options make the
    content key. An analysis without a face is not pending (nothing to keep). options["model"] and
    options["detector"] are recorded.
    """
    if image is None and annotated is None:
        raise ValueError("save_analysis needs the image or its annotated copy")
    numbered = _numbered(faces, reorder=annotated is None)
    if annotated is None:
        annotated = annotate(image, [FaceResult.from_dict(f) for f in numbered])
    key = content_key(content, {"source": source, **options})
    picture = annotated if image is None else image
    size = (int(picture.shape[1]), int(picture.shape[0]))
    model, detector = str(options["model"]), str(options["detector"])
    report = reports.json_report(
        faces=numbered, image_size=size, model=model, detector=detector, source=source,
        created_at=reports.utc_now(), user=user.username, title=title or None, original_name=original_name,
        timings=dict(timings or {}),
    )  # fmt: skip
    result = AnalysisResult(
        report=report,
        annotated=annotated,
        content_key=key,
        image=image,
        media=media,
        frames=frames,
        labels=tuple(labels),
        timings=dict(timings or {}),
    )
    if numbered:
        result._record = dict(
            source=source, model=model, detector=detector, faces=numbered, original_name=original_name,
            title=title or None, media_bytes=media, media_ext="mp4" if media is not None else None,
            extra={**dict(extra or {}), "image_size": list(size), "timings": dict(timings or {}),
                   "options": {k: v for k, v in options.items() if k not in ("model", "detector")},
                   **({"frames": frames, "labels": list(labels)} if frames else {})},
        )  # fmt: skip
    return result


def save(store: Any, user: Any, result: AnalysisResult) -> AnalysisResult:
    """Keep a prepared result in `user`'s history in `store` (studio.store.Store), once; never raises
    because of the store. The same content key already in the history is returned (`duplicate`, with
    the Grad-CAMs kept then) instead of saved again; a failure is logged and put in `save_error`. Safe
    to run in a worker thread while the page shows the result (the page reads it after this ends).
    """
    record, result._record = result._record, None
    if record is None:  # saved already, or nothing to keep
        return result
    started = time.perf_counter()
    try:
        existing = store.find_analysis(user.id, result.content_key)
        if existing is not None:
            result.duplicate = True
            result.gradcam = {**_stored_gradcam(existing.extra), **result.gradcam}  # asked for before
            saved = existing
            if record["title"] and record["title"] != existing.title:  # the title is a note, not an option:
                store.set_title(user.id, existing.id, record["title"])  # the newest one typed is kept
                saved = replace(existing, title=record["title"])
                result.retitled = True
        else:
            saved = store.add_analysis(
                user.id, image=result.kept_jpeg, image_ext="jpg", content_key=result.content_key, **record
            )
        result.analysis_id = saved.id
        result.report = reports.report_for_analysis(saved, user.username)
        result._pdfs.clear()  # a PDF built before names no analysis
    except (OSError, ValueError, sqlite3.Error) as error:  # the result stays on screen and downloadable
        log.exception("saving a %s analysis failed", record["source"])
        result.save_error = SAVE_FAILED.format(error)
    result.save_ms = (time.perf_counter() - started) * 1000
    return result


def save_analysis(store: Any, user: Any, **analysis: Any) -> AnalysisResult:
    """`prepare_analysis(user, **analysis)` then `save` in `store`: the result, saved (or found in
    the history, or with its save_error). An analysis without a face is not saved."""
    return save(store, user, prepare_analysis(user, **analysis))


def analyze_photo(
    store: Any,
    user: Any,
    data: bytes,
    *,
    name: str | None,
    source: str,
    options: Mapping[str, Any],
    detect: bool = True,
    keep: bool = True,
    on_ready: Callable[[AnalysisResult], None] | None = None,
) -> AnalysisResult:
    """Decode, analyse, annotate and save one photo (or camera picture); raises ImageLoadError for a
    bad file. keep=False leaves the save to the caller (`save`). on_ready gets the result before it
    is saved: run in a worker, the page shows it while this goes on to save it (and the save happens
    even when the page's run is interrupted, e.g. by another click).

    options: model, detector, tta, min_face and title. detect=False classifies the whole image as
    one face (recorded with detector "none"). timings: decode, detect, classify, encode (numbering
    and the display JPEG: the image for the page) and total, in ms.
    """
    started = time.perf_counter()
    image = load_image(data, name=name)
    decoded = time.perf_counter()
    faces = analyze(
        image, options["model"], options["detector"], bool(options.get("tta")), min_face=options.get("min_face"),
        detect=detect,
    )  # fmt: skip
    classified = time.perf_counter()
    timings = {
        "decode_ms": (decoded - started) * 1000,
        "detect_ms": faces[0].timings["detect_ms"] if faces else (classified - decoded) * 1000,
        "classify_ms": sum(f.timings.get("classify_ms", 0.0) for f in faces),
    }
    recorded = {
        "model": options["model"],
        "detector": options["detector"] if detect else WHOLE_IMAGE_DETECTOR,
        "tta": bool(options.get("tta")),
        "min_face": options.get("min_face"),
    }
    result = prepare_analysis(
        user, source=source, content=data, options=recorded, faces=[f.to_dict() for f in faces],
        image=image, original_name=name, title=options.get("title") or None, timings=timings,
    )  # fmt: skip
    result.display_jpeg()
    done = time.perf_counter()
    timings.update(encode_ms=(done - classified) * 1000, total_ms=(done - started) * 1000)
    result.timings = dict(timings)
    result.report["timings"] = {k: round(v, 3) for k, v in timings.items()}  # as json_report writes them
    if result._record is not None:
        result._record["extra"]["timings"] = dict(timings)
    if on_ready is not None:
        on_ready(result)
    return save(store, user, result) if keep else result


@dataclass(frozen=True)
class ModelComparison:
    """Two models on the same faces: one row per face (index, each model's label and confidence)."""

    models: tuple[str, str]
    rows: list[dict]

    @property
    def disagreements(self) -> list[dict]:
        return [row for row in self.rows if not row["agree"]]


def compare_models(result: AnalysisResult, other_model: str, tta: bool = False) -> ModelComparison:
    """Classify the faces of `result` (same boxes, same crops) with another model, face by face.

    Needs result.image (a photo analysed in this session). Each row: index, label_a, confidence_a,
    label_b, confidence_b, scores_b, agree.
    """
    if result.image is None:
        raise ValueError("the original image is needed to compare models")
    height, width = result.image.shape[:2]
    whole = result.report["detector"] == WHOLE_IMAGE_DETECTOR
    boxes = [Box(*f["box"]) for f in result.faces]
    crops = [crop(result.image, b if whole else expand_box(b, 0.1, width, height)) for b in boxes]
    theirs = classify_crops(crops, boxes, other_model, tta)
    rows = [
        {
            "index": face["index"],
            "label_a": face["label"],
            "confidence_a": face["confidence"],
            "label_b": other.label,
            "confidence_b": other.confidence,
            "scores_b": other.scores,
            "agree": face["label"] == other.label,
        }
        for face, other in zip(result.faces, theirs, strict=True)
    ]
    return ModelComparison((result.report["model"], other_model), rows)


def batch_rows(items: Sequence[tuple[str, AnalysisResult | str]]) -> list[dict]:
    """One row per face of a batch [(file name, result or error message)]: file, analysis id, face
    number, label, confidence, error and one column per label; a photo without a face (or that could
    not be read) gets one row with its error."""
    rows = []
    for name, outcome in items:
        if not isinstance(outcome, AnalysisResult):
            rows.append({"file": name, "analysis": None, "face": None, "label": None, "confidence": None,
                         "error": outcome})  # fmt: skip
            continue
        for face in outcome.faces or [None]:
            rows.append({
                "file": name, "analysis": outcome.analysis_id, "face": face and face["index"],
                "label": face and face["label"], "confidence": face and round(face["confidence"], 4),
                "error": None if face else "no face found",
                **({k: round(v, 4) for k, v in face["scores"].items()} if face else {}),
            })  # fmt: skip
    return rows


def batch_csv(rows: list[dict]) -> str:
    """batch_rows as CSV (empty cells for what a row has not)."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def batch_json(items: Sequence[tuple[str, AnalysisResult | str]]) -> str:
    """{"photos": [{"file", "report"} | {"file", "error"}]}: every report of a batch in one document."""
    photos = []
    for name, outcome in items:
        kept = {"report": outcome.report} if isinstance(outcome, AnalysisResult) else {"error": outcome}
        photos.append({"file": name, **kept})
    return json.dumps({"photos": photos}, indent=2, ensure_ascii=False)


def keep_gradcam(store: Any, user: Any, result: AnalysisResult, index: int, overlay: np.ndarray) -> None:
    """Keep a face's Grad-CAM overlay (RGB (h, w, 3)) with the result and, when saved, with the stored
    analysis, so that History shows it and puts it in the PDF. A failed write is logged only: the
    overlay is still on screen and in this session's PDF."""
    result.gradcam[int(index)] = overlay
    if result.analysis_id is None:
        return
    encoded = {str(k): base64.b64encode(encode_png(v)).decode() for k, v in result.gradcam.items()}
    try:
        store.update_extra(user.id, result.analysis_id, {"gradcam_png": encoded})
    except (OSError, ValueError, sqlite3.Error):
        log.exception("keeping the Grad-CAM of analysis %s failed", result.analysis_id)


def stored_gradcam_pngs(extra: Mapping[str, Any]) -> dict[int, bytes]:
    """The Grad-CAM overlays kept with a stored analysis (keep_gradcam), as PNG bytes by face number;
    a damaged entry (bad base64) is left out."""
    pngs = {}
    for index, encoded in (extra.get("gradcam_png") or {}).items():
        try:
            pngs[int(index)] = base64.b64decode(encoded)
        except ValueError:  # binascii.Error
            log.warning("a kept Grad-CAM cannot be read")
    return pngs


def _stored_gradcam(extra: Mapping[str, Any]) -> dict[int, np.ndarray]:
    kept = {}
    for index, png in stored_gradcam_pngs(extra).items():
        try:
            kept[index] = load_image(png, name="a kept Grad-CAM")
        except ValueError:  # a damaged picture (ImageLoadError): left out
            log.warning("a kept Grad-CAM cannot be read")
    return kept


def stored_analysis(store: Any, user: Any, analysis_id: int) -> AnalysisResult | None:
    """A saved analysis as History's detail view shows it (annotated image, video and its frames),
    or None when it is not this user's."""
    analysis = store.get_analysis(user.id, analysis_id)
    if analysis is None:
        return None
    report = reports.report_for_analysis(analysis, user.username)
    kept = store.read_image(user.id, analysis_id)
    annotated = None
    if kept:
        try:
            annotated = load_image(kept, name="the saved image")
        except ValueError:  # ImageLoadError: a damaged file; a placeholder below
            log.warning("the saved image of analysis %s cannot be read", analysis_id)
    if annotated is None:
        width, height = report["image"]["width"] or 640, report["image"]["height"] or 480
        scale = min(1.0, 800 / max(width, height))
        annotated = np.full((max(1, round(height * scale)), max(1, round(width * scale)), 3), 235, np.uint8)
    extra = analysis.extra or {}
    return AnalysisResult(
        report=report,
        annotated=annotated,
        content_key=analysis.content_key or "",
        analysis_id=analysis.id,
        media=store.read_media(user.id, analysis_id) if analysis.has_media else None,
        frames=extra.get("frames") or None,
        labels=tuple(extra.get("labels") or ()),
        gradcam=_stored_gradcam(extra),
    )
