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


def write_json_report(path: str | os.PathLike, data, default=float, replace: bool = False) -> Path:
    """Write ``data`` as indented JSON to ``path`` through a temporary file in the same folder, so a
    reader never sees half a report. Values JSON cannot hold go through ``default`` (numpy scalars
    as floats). An existing report is replaced only with ``replace``; otherwise (a file that appeared
    while the run worked, after :func:`check_json_target` passed) the results go to the next free
    ``STEM_NNNNN_.json`` beside it, and a line says so, rather than being lost or overwriting it.
    Returns the path written."""
    from vssflow_core.media.files import unique_path

    out = Path(path)
    if out.exists() and not replace:
        out = unique_path(out.parent, out.stem, out.suffix or ".json")
        print(f"--json {path} appeared while this ran; not overwriting it, results written to {out}", flush=True)
    with atomic_output(out, replace=replace) as tmp:
        tmp.write_text(json.dumps(data, indent=1, default=default))
    return out
