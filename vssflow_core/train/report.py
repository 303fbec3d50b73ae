"""JSON reports of the ``eval``, ``eval-compare``, ``diagnose`` and ``placement-check`` commands."""
from __future__ import annotations

import json
import os
from pathlib import Path

from vssflow_core.media.files import atomic_output


def check_json_target(path: str | os.PathLike, replace: bool = False) -> None:
    """Refuse a ``--json`` path before the work starts rather than after it: its folder must exist,
    and an existing file is refused unless ``replace``."""
    from vssflow_core.errors import VSSFlowError

    out = Path(path)
    if not out.parent.is_dir():
        raise VSSFlowError(f"--json {out}: folder {out.parent} does not exist; create it first")
    if out.is_dir():
        raise VSSFlowError(f"--json {out} is a folder; give a file name")
    if out.exists() and not replace:
        raise VSSFlowError(f"--json {out} exists; choose another name (an earlier run's results are not overwritten)")


def write_json_report(path: str | os.PathLike, data, default=float) -> None:
    """Write ``data`` as indented JSON to ``path`` through a temporary file in the same folder, so a
    reader never sees half a report. An existing report at ``path`` is replaced (callers that must
    not replace one refuse it first with :func:`check_json_target`). Values JSON cannot hold go
    through ``default`` (numpy scalars as floats)."""
    out = Path(path)
    with atomic_output(out, replace=True) as tmp:
        tmp.write_text(json.dumps(data, indent=1, default=default))
