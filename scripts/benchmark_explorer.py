"""Time the dataset explorer's data path on FER2013: the first visit (empty cache) and a later one.

    python scripts/benchmark_explorer.py [--csv PATH] [--repeats 5] [--page | --browser]

Each repeat runs two fresh Python processes on a new, empty EMOTION_CACHE_DIR: the first visit
(imports, parse the CSV, write the decoded-array cache, compute the statistics and cache them, the
mean/std face tiles) and then a revisit (the same calls, now reading the cache). This is the
explorer page's path without Streamlit's rendering: `datasets.load_fer2013`, `eda.cached_stats`,
`eda.face_tiles`. With --page, each visit instead runs the whole page script headless
(streamlit.testing AppTest: the same calls plus building every chart and image, no browser).
With --browser, what a user waits: each repeat starts `streamlit run pages/dataset_explorer.py` on an
empty cache, and headless Chromium opens it (first visit: from navigation until the FER2013 summary is
shown and the script has stopped) and reloads it (revisit); the server's start-up is not counted.
Prints the median and p95 of each phase in seconds (wall clock, and CPU seconds of all threads
in `cpu`). Run it on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def visit_page(csv_path: Path) -> dict[str, float]:
    """One headless run of pages/dataset_explorer.py with FER2013 chosen -> seconds."""
    started, cpu = time.perf_counter(), time.process_time()
    sys.path.insert(0, str(REPO))
    from streamlit.testing.v1 import AppTest

    from emotion import config

    config.DATA_DIR = csv_path.parent  # the page looks for FER2013 there first
    at = AppTest.from_file(str(REPO / "pages" / "dataset_explorer.py"), default_timeout=600).run()
    if at.exception:
        raise SystemExit(f"the page failed: {at.exception}")
    return {"total": time.perf_counter() - started, "cpu": time.process_time() - cpu}


def visit(csv_path: Path) -> dict[str, float]:
    """One visit of the explorer's data path in this process -> seconds per phase (and 'total')."""
    started, cpu = time.perf_counter(), time.process_time()
    sys.path.insert(0, str(REPO))
    from emotion import datasets
    from studio import eda

    marks = {"imports": time.perf_counter()}
    ds = datasets.load_fer2013(csv_path)
    marks["load"] = time.perf_counter()
    stats, summary = eda.cached_stats(ds)
    marks["stats"] = time.perf_counter()
    eda.face_tiles(stats.mean_faces)
    eda.face_tiles(stats.std_faces)
    marks["faces"] = time.perf_counter()
    if summary["images"] != len(ds):
        raise SystemExit("inconsistent summary")
    times, previous = {}, started
    for name, at in marks.items():
        times[name] = at - previous
        previous = at
    times["total"] = previous - started
    times["cpu"] = time.process_time() - cpu
    return times


def child(csv_path: Path, cache_dir: Path, page: bool) -> dict[str, float]:
    """Run `visit` in a fresh interpreter with EMOTION_CACHE_DIR=cache_dir (wall time included)."""
    env = {**os.environ, "EMOTION_CACHE_DIR": str(cache_dir), "TF_CPP_MIN_LOG_LEVEL": "3"}
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, __file__, "--child", "--csv", str(csv_path), *(["--page"] if page else [])],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    times = json.loads(out.stdout.strip().splitlines()[-1])
    times["process"] = time.perf_counter() - started  # interpreter start-up included
    return times


def browser_visits(csv_path: Path, repeats: int) -> tuple[list[dict], list[dict]]:
    """First visit and reload of the explorer page in headless Chromium, a fresh server and cache each
    repeat -> ([{"total": s}], [{"total": s}])."""
    sys.path.insert(0, str(REPO))
    from tests.browser_support import ROOT, launch_chromium, serve_streamlit
    from tests.test_browser_offline import IDLE_JS

    def ready(page) -> float:
        started = time.perf_counter()
        page.get_by_text("FER2013: 35,887 images").first.wait_for(state="visible", timeout=300_000)
        page.wait_for_function(IDLE_JS, timeout=300_000)
        return time.perf_counter() - started

    first, later = [], []
    with launch_chromium() as browser:
        for _ in range(repeats):
            with tempfile.TemporaryDirectory(prefix="explorer-bench-") as tmp:
                env = {
                    "PYTHONPATH": str(ROOT),
                    "EMOTION_DATA_DIR": str(csv_path.parent),
                    "EMOTION_CACHE_DIR": str(Path(tmp) / "cache"),
                    "EMOTION_LOG_DIR": str(Path(tmp) / "logs"),
                }
                with serve_streamlit(ROOT / "pages" / "dataset_explorer.py", Path(tmp) / "server.log", env) as url:
                    page = browser.new_page(viewport={"width": 1400, "height": 1000})
                    started = time.perf_counter()
                    page.goto(url)
                    ready(page)
                    first.append({"total": time.perf_counter() - started})
                    started = time.perf_counter()
                    page.reload()
                    ready(page)
                    later.append({"total": time.perf_counter() - started})
                    page.close()
    return first, later


def report(title: str, runs: list[dict[str, float]]) -> None:
    print(f"{title} ({len(runs)} runs), seconds: median / p95")
    for key in runs[0]:
        values = np.array([r[key] for r in runs])
        print(f"  {key:<8} {np.median(values):7.2f} / {np.percentile(values, 95):7.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=None, help="FER2013 CSV (default: config.find_fer2013_csv())")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--page", action="store_true", help="time the whole page script (headless AppTest)")
    parser.add_argument("--browser", action="store_true", help="time the page in headless Chromium (fresh server)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.csv is None:
        sys.path.insert(0, str(REPO))
        from emotion import config

        args.csv = config.find_fer2013_csv()
        if args.csv is None:
            raise SystemExit(config.FER2013_MISSING_HELP)
    if args.child:
        print(json.dumps(visit_page(args.csv) if args.page else visit(args.csv)))
        return
    if args.browser:
        first, later = browser_visits(args.csv, args.repeats)
        print(f"the page in headless Chromium, {args.csv}, {os.cpu_count()} CPUs")
        report("First visit after a fresh start, empty cache", first)
        report("Reload", later)
        return
    first, later = [], []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="explorer-bench-") as cache:
            first.append(child(args.csv, Path(cache), args.page))
            later.append(child(args.csv, Path(cache), args.page))
    print(f"{'the page' if args.page else 'the data path'}, {args.csv}, {os.cpu_count()} CPUs")
    report("First visit, empty cache", first)
    report("Revisit, cache filled", later)


if __name__ == "__main__":
    main()
