"""Set-up made once and safely under concurrency, each in a fresh process (the races only show on a
first use): the PDF fonts from 20 threads building their first PDF at once, and the logging handlers
from 20 threads setting logging up at once."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from emotion.config import REPO_ROOT

PDF_SCRIPT = """
import threading
import numpy as np
import emotion
from studio import reports

face = {"box": [10, 10, 40, 40], "label": "happy", "confidence": 0.9,
        "scores": {"happy": 0.9, "sad": 0.1}, "valence": 0.8, "arousal": 0.5}
report = reports.json_report(
    faces=[face], image_size=(64, 64), model=emotion.default_model_name(), detector="haar", source="photo",
    created_at=reports.utc_now(), user="u", title="Title with bold face", original_name="x.png", timings={},
)
image = np.full((64, 64, 3), 128, np.uint8)
start = threading.Barrier(20)
results, errors = [], []

def build():
    start.wait()
    try:
        results.append(reports.pdf_report(report, image))
    except Exception as error:
        errors.append(repr(error))

threads = [threading.Thread(target=build) for _ in range(20)]
for t in threads:
    t.start()
for t in threads:
    t.join()
assert not errors, errors
assert len(results) == 20 and all(pdf.startswith(b"%PDF-") for pdf in results)
print("ok", reports._font_names())
"""

LOGGING_SCRIPT = """
import logging
import sys
import threading
from pathlib import Path
from emotion.logs import setup_logging

path = Path(sys.argv[1])
start = threading.Barrier(20)

def set_up():
    start.wait()
    setup_logging("race", log_file=path)

threads = [threading.Thread(target=set_up) for _ in range(20)]
for t in threads:
    t.start()
for t in threads:
    t.join()
logging.getLogger("race").info("one line")
root = logging.getLogger()
print(len(root.handlers))
"""


def _run(script: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_pdf_builds_from_20_threads_in_a_fresh_process() -> None:
    assert _run(PDF_SCRIPT).startswith("ok")


def test_logging_set_up_from_20_threads_writes_each_line_once(tmp_path: Path) -> None:
    log_file = tmp_path / "race.log"
    handlers = int(_run(LOGGING_SCRIPT, str(log_file)).split()[-1])
    assert handlers == 2  # one console, one file
    assert log_file.read_text().count("one line") == 1
