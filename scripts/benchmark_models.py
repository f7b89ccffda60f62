"""Per-face latency of registered models as the app serves them, side by side.

    python scripts/benchmark_models.py [--models vgg vgg_lean_soup vgg_wide_soup] [--rounds 15] [--calls 200] [--tta]

One FER2013-sized face (a 48x48 grey crop) at batch 1 through `EmotionModel.predict_faces`: the shared
preprocessing, the LiteRT call and the calibration, which is what a page pays per face. The rounds
interleave the models, so a machine whose speed drifts during the run biases none of them (this VM's
speed moves by a third from one minute to the next). Printed per model: the median over rounds of each
round's median CPU time of the calling thread (LiteRT runs on it, one thread), the fastest round, and
the median and p95 of every call's wall time. `training.evaluate` records one such figure per model in
its metrics; this compares several in one run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from emotion.registry import list_models, load


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
    round_cpu: dict[str, list[float]] = {name: [] for name in names}
    wall: dict[str, list[float]] = {name: [] for name in names}
    for model in models.values():  # warm-up: first calls allocate
        for _ in range(20):
            model.predict_faces([face], tta=args.tta)
    for _ in range(args.rounds):
        for name, model in models.items():
            cpu = []
            for _ in range(args.calls):
                started, started_cpu = time.perf_counter(), time.thread_time()
                model.predict_faces([face], tta=args.tta)
                wall[name].append(time.perf_counter() - started)
                cpu.append(time.thread_time() - started_cpu)
            round_cpu[name].append(float(np.median(cpu)))
    print(f"{args.rounds} rounds of {args.calls} calls, one face, TTA {'served' if args.tta else 'off'}")
    print(f"{'model':<22} {'CPU ms median of rounds':>24} {'fastest round':>14} {'wall ms median':>15} {'wall p95':>9}")
    for name in names:
        print(
            f"{name:<22} {np.median(round_cpu[name]) * 1000:>24.3f} {min(round_cpu[name]) * 1000:>14.3f}"
            f" {np.median(wall[name]) * 1000:>15.3f} {np.percentile(wall[name], 95) * 1000:>9.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
