"""Per-face latency of registered models as the app serves them, measured side by side.

    python scripts/benchmark_models.py [--models vgg vgg_wide_soup] [--rounds 40] [--calls 100] [--record]

One FER2013-sized face (a 48x48 grey crop) at batch 1 through `EmotionModel.predict_faces`: the shared
preprocessing, the LiteRT call(s) and the calibration, which is what a page pays per face; without
TTA and with each TTA mode the model was evaluated with. The rounds interleave the models
(`training.evaluate.interleaved_latencies`), so a machine whose speed drifts during the run biases
none of them. Printed per model and mode: the medians over rounds of each round's median CPU time (the
cost: every LiteRT thread of the app's `config.serve_threads()`), wall-time median (the wait) and
wall-time p95; and the fastest round's CPU median.

`--record` writes the figures into each model's metrics file (`training.evaluate.record_latencies`),
where the Models page reads them: run it on a quiet machine after evaluating or adding models, so the
page ranks every model on figures measured together rather than in separate runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from emotion.registry import ModelNotFoundError, list_models, load
from training.evaluate import interleaved_latencies, record_latencies


def processor_name() -> str:
    """The CPU's model name from /proc/cpuinfo ("" where there is none)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return ""
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", help="registered models (default: every evaluated model)")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--calls", type=int, default=100, help="calls per model per round without TTA")
    parser.add_argument("--tta-calls", type=int, default=20, help="calls per model, TTA mode and round")
    parser.add_argument("--record", action="store_true", help="write the figures into the models' metrics files")
    args = parser.parse_args(argv)
    names = args.models or [m.name for m in list_models() if m.metrics]
    try:
        models = [load(name) for name in names]
    except ModelNotFoundError as err:
        parser.error(str(err))
    if args.record and (unevaluated := [m.name for m in models if not m.info.metrics]):
        parser.error(f"no metrics file to record into: {', '.join(unevaluated)} (python -m training.evaluate first)")
    face = np.random.default_rng(0).integers(0, 256, (48, 48), dtype=np.uint8)
    started = dt.datetime.now(dt.UTC)
    latencies = interleaved_latencies(models, face, args.rounds, args.calls, args.tta_calls)
    print(
        f"{args.rounds} interleaved rounds; {args.calls} calls without TTA, {args.tta_calls} with; one face; "
        f"{models[0].threads} LiteRT thread(s) a call"
    )
    print(f"{'model':<22} {'TTA':<6} {'CPU ms':>8} {'fastest':>8} {'wall ms':>8} {'wall p95':>9}")
    for model in models:
        for mode, figures in latencies[model.name].items():
            served = " (served)" if mode == model.info.tta_mode else ""
            print(
                f"{model.name:<22} {mode:<6} {figures['cpu_median_ms']:>8.3f} {figures['fastest_cpu_ms']:>8.3f} "
                f"{figures['median_ms']:>8.3f} {figures['p95_ms']:>9.3f}{served}"
            )
    if args.record:
        run = {
            "by": "scripts/benchmark_models.py --record",
            "measured_at": started.isoformat(timespec="seconds"),
            "rounds": args.rounds,
            "calls": args.calls,
            "tta_calls": args.tta_calls,
            "models": names,
            "processor": processor_name(),  # the machine changes between sessions (Xeon, EPYC): say which
            "threads": models[0].threads,  # LiteRT threads per call, as the app serves (config.serve_threads)
        }
        record_latencies(models, latencies, run)
        print(f"recorded in the metrics files of {len(models)} models")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
