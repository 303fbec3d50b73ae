#!/usr/bin/env bash
# Set up .venv if needed, then run the whole test suite (.ci/run runs exactly this script).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# espeak-ng makes the speech used by the speaker-embedding tests, flite and festival speak the extra
# training voices (make-data --voices); without them those tests skip.
# Installed only where that needs no password (root with apt-get), as on CI.
if { ! command -v espeak-ng || ! command -v flite || ! command -v festival; } >/dev/null 2>&1 \
    && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && apt-get install -y -qq --no-install-recommends espeak-ng flite festival festvox-us-slt-hts) \
    >/dev/null 2>&1 || echo "note: could not install espeak-ng/flite/festival; speaker and voice tests will be skipped"
fi
exec .venv/bin/python -m pytest -q -p no:cacheprovider tests "$@"
