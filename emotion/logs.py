"""Logging set-up: console and a rotating file under logs/, configured once per process."""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

from emotion.config import LOG_DIR

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(app_name: str, level: int = logging.INFO, log_file: Path | None = None) -> None:
    """Idempotent: a second call (Streamlit reruns the script) adds no handlers."""
    root = logging.getLogger()
    if getattr(root, "_emotion_configured", False):
        return
    root.setLevel(level)
    console = logging.StreamHandler()
    console.setFormatter(logging.Formatter(_FORMAT))
    root.addHandler(console)
    path = log_file or LOG_DIR / f"{app_name}.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        rotating = logging.handlers.RotatingFileHandler(path, maxBytes=5_000_000, backupCount=3, encoding="utf-8")
        rotating.setFormatter(logging.Formatter(_FORMAT))
        root.addHandler(rotating)
    except OSError as error:  # a read-only checkout still runs, logging to the console only
        root.warning("file logging disabled: %s", error)
    for noisy in ("PIL", "matplotlib", "h5py", "absl", "tensorflow", "aioice", "aiortc", "watchdog"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    root._emotion_configured = True  # type: ignore[attr-defined]
