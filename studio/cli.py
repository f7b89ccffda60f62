"""Command line: `python -m emotion predict PATH [PATH ...]` and `python -m emotion models`."""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

from emotion.config import IMAGE_SUFFIXES
from emotion.detectors import DEFAULT_DETECTOR, DETECTORS
from emotion.imageio import ImageLoadError, load_image

log = logging.getLogger("studio.cli")
PROGRESS_THRESHOLD = 10  # show a progress bar on stderr from this many files


def iter_image_paths(paths: list[str]) -> Iterator[Path]:
    """Files as given, and image files under folders (recursed, sorted)."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            yield path


def predict_file(path: Path, args: argparse.Namespace) -> dict:
    """One image -> {"path", "faces": [...], "error"}; a bad file gets its error, never an exception."""
    from emotion.pipeline import analyze

    try:
        image = load_image(path)
    except ImageLoadError as error:
        return {"path": str(path), "faces": [], "error": str(error)}
    faces = analyze(
        image, model=args.model, detector=args.detector, tta=args.tta, detect=not args.no_detect, min_face=args.min_face
    )
    return {
        "path": str(path),
        "faces": [
            {"box": f.box.as_list(), "label": f.label, "scores": {k: round(v, 6) for k, v in f.scores.items()}}
            for f in faces
        ],
        "error": None,
    }


def to_csv(results: list[dict]) -> str:
    """Kaggle-style submission: filename,emotion (the largest face's label; empty when none)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["filename", "emotion"])
    for result in sorted(results, key=lambda r: Path(r["path"]).name):
        faces = result["faces"]
        largest = max(faces, key=lambda f: f["box"][2] * f["box"][3]) if faces else None
        writer.writerow([Path(result["path"]).name, largest["label"] if largest else ""])
    return out.getvalue()


def cmd_predict(args: argparse.Namespace) -> int:
    from emotion.registry import ModelNotFoundError, load

    try:
        load(args.model)  # fail early, with the registry's message, on an unknown model
    except ModelNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    paths = list(iter_image_paths(args.paths))
    if not paths:
        print("error: no image files found in the given paths", file=sys.stderr)
        return 2
    progress = None
    if len(paths) >= PROGRESS_THRESHOLD and not args.quiet:
        from tqdm import tqdm

        progress = tqdm(total=len(paths), file=sys.stderr, unit="img")
    results = []
    for path in paths:
        results.append(predict_file(path, args))
        if progress is not None:
            progress.update()
    if progress is not None:
        progress.close()
    text = to_csv(results) if args.format == "csv" else json.dumps(results, indent=2) + "\n"
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    if args.pdf:
        _write_pdfs(results, args)
    failed = [r for r in results if r["error"]]
    for r in failed:
        print(f"warning: {r['path']}: {r['error']}", file=sys.stderr)
    return 1 if failed else 0


def _write_pdfs(results: list[dict], args: argparse.Namespace) -> None:
    """--pdf OUT.pdf: one report per image (OUT.pdf for one image, OUT-<stem>.pdf for several)."""
    import datetime as dt

    from emotion.pipeline import FaceResult, annotate
    from emotion.registry import load
    from studio.reports import json_report, pdf_report

    model_name = load(args.model).name
    target = Path(args.pdf)
    good = [r for r in results if not r["error"]]
    for result in good:
        image = load_image(result["path"])
        faces = [FaceResult.from_dict(f) for f in result["faces"]]
        report = json_report(
            faces=[f.to_dict() for f in faces],
            image_size=(image.shape[1], image.shape[0]),
            model=model_name,
            detector="none" if args.no_detect else args.detector,
            source="cli",
            created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            original_name=Path(result["path"]).name,
        )
        out = target if len(good) == 1 else target.with_name(f"{target.stem}-{Path(result['path']).stem}.pdf")
        out.write_bytes(pdf_report(report, annotate(image, faces)))


def cmd_models(args: argparse.Namespace) -> int:
    from emotion.registry import default_model_name, list_models

    models = list_models()
    if not models:
        print("no model registered in models/", file=sys.stderr)
        return 1
    default = default_model_name()
    rows = []
    for info in models:
        m = info.metrics

        def pct(key: str, m: dict = m) -> str:
            return f"{m[key] * 100:.1f}%" if key in m else "-"

        rows.append(
            [
                info.name + (" *" if info.name == default else ""),
                info.kind,
                pct("accuracy"),
                pct("accuracy_tta"),
                f"{m['macro_f1']:.3f}" if "macro_f1" in m else "-",
                f"{m['latency_ms_per_face']:.2f}" if "latency_ms_per_face" in m else "-",
            ]
        )
    if args.format == "json":
        print(
            json.dumps(
                [{"name": i.name, "kind": i.kind, "labels": list(i.labels), "metrics": i.metrics} for i in models],
                indent=2,
            )
        )
        return 0
    header = ["model (* default)", "kind", "accuracy", "acc. TTA", "macro-F1", "ms/face"]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)))
    print("accuracy and macro-F1 on FER2013 PrivateTest, measured by `python -m training.evaluate`")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m emotion", description="Facial emotion recognition from the shell.")
    sub = parser.add_subparsers(dest="command", required=True)
    predict = sub.add_parser("predict", help="classify the faces in images or folders of images")
    predict.add_argument("paths", nargs="+", metavar="PATH", help="an image file or a folder (recursed)")
    predict.add_argument("--format", choices=("json", "csv"), default="json")
    predict.add_argument("--no-detect", action="store_true", help="treat each image as one aligned face crop")
    predict.add_argument("--model", help="a registered model (default: the best one)")
    predict.add_argument("--detector", choices=sorted(DETECTORS), default=DEFAULT_DETECTOR)
    predict.add_argument(  # on by default, as on every page: the same face gets the same answer everywhere
        "--tta",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="average over the face and its mirror or ten crops, as the model chose (default); --no-tta: one view",
    )
    predict.add_argument(
        "--min-face", type=int, metavar="PX", help="smallest face in pixels (default: a tenth of the shorter side)"
    )
    predict.add_argument("--output", "-o", help="write to this file instead of stdout")
    predict.add_argument("--pdf", metavar="OUT.pdf", help="also write a PDF report per image")
    predict.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    predict.set_defaults(func=cmd_predict)
    models = sub.add_parser("models", help="list the registered models with their headline metrics")
    models.add_argument("--format", choices=("table", "json"), default="table")
    models.set_defaults(func=cmd_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    from emotion.logs import setup_logging

    args = build_parser().parse_args(argv)
    setup_logging("cli", level=logging.WARNING)
    return args.func(args)
