"""Per-face latency of registered models as the app serves them, side by side.

    python scripts/benchmark_models.py [--models vgg vgg_lean_soup vgg_wide_soup] [--rounds 15] [--calls 200] [--tta]

One FER2013-sized face (a 48x48 grey crop) at batch 1 through `EmotionModel.predict_faces`: the shared
preprocessing, the LiteRT call and the calibration, which is what a page pays per face. The rounds
interleave the models, so a machine whose speed drifts during the run biases none of them (this VM's
speed moves by a third from one minute to the next). Each round of a model is one
`training.evaluate.latency_figures` call, the measure its metrics record. Printed per model: the median
over rounds of each round's median CPU time of the calling thread (LiteRT runs on it, one thread), the
fastest round, and the medians over rounds of each round's wall-time median and p95.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from emotion.registry import list_models, load
from training.evaluate import latency_figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", help="registered models (default: every single model)")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=200, help="calls per model per round")
    parser.add_argument("--tta", action="store_true", help="with each model's served test-time augmentation")
    args = parser.parse_args(argv)
    names = args.models or [m.name for m in list_models() if m.kind == "single"]
    models = {name: load(name) for name in names}
    face = np.random.default_rng(0).integers(0, 256, (48, 48), dtype=np.uint8)
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for _ in range(args.rounds):
        for name, model in models.items():
            rounds[name].append(latency_figures(model, face, args.tta, runs=args.calls))
    print(f"{args.rounds} rounds of {args.calls} calls, one face, TTA {'served' if args.tta else 'off'}")
    print(f"{'model':<22} {'CPU ms median of rounds':>24} {'fastest round':>14} {'wall ms median':>15} {'wall p95':>9}")
    for name in names:
        cpu = [r["cpu_median_ms"] for r in rounds[name]]
        wall = np.median([r["median_ms"] for r in rounds[name]])
        p95 = np.median([r["p95_ms"] for r in rounds[name]])
        print(f"{name:<22} {np.median(cpu):>24.3f} {min(cpu):>14.3f} {wall:>15.3f} {p95:>9.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
