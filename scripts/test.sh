#!/usr/bin/env bash
# Install everything the test suite needs, then run it. Used by the README and by .ci/run.
#   bash scripts/test.sh [pytest args]
# Needs Python 3.11. Browser tests use Debian's chromium (installed here with apt-get when
# missing and we are root or have sudo); PDF rendering checks use poppler-utils.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -r requirements-dev.txt

if ! command -v chromium >/dev/null 2>&1 || ! command -v pdftoppm >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo -n"
  if [ "$(id -u)" -eq 0 ] || [ -n "$SUDO" ]; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver poppler-utils >/dev/null
  else
    echo "note: chromium/poppler-utils missing and no root: browser tests will be skipped (they fail under CI=true)" >&2
  fi
fi

export TF_CPP_MIN_LOG_LEVEL=3
# pytest-xdist: one worker process per core (at most 4), each taking whole test files, so a module's
# fixtures (PrivateTest, a server) load once. Most tests wait on a server, a browser or one LiteRT
# thread, so two workers on two cores take about 60% of the serial time. PYTEST_WORKERS=0: serial.
cores=$(nproc)
exec .venv/bin/python -m pytest -n "${PYTEST_WORKERS:-$((cores < 4 ? cores : 4))}" --dist loadfile "$@"
