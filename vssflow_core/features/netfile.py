"""Small front-end networks in safetensors files: weights plus the few numbers that rebuild them,
and the windows of neighbouring frames they read.

The lip reader (``features.lipread``) and the event detector (``features.events``) are tiny
networks that ship next to the model. Each file holds the float32 state dict and string metadata
(sizes, a ``training`` note); nothing is unpickled. Callers cache the built network per
:func:`file_key` (resolved path, modification time and size), so an edited file is read again.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from vssflow_core.errors import VSSFlowError


def frame_windows(x: np.ndarray, window: int) -> np.ndarray:
    """Each frame with its neighbours: ``[F, ...]`` -> float32 ``[F, 2 * window + 1, ...]``, frame
    k - window first; frames past either end are zeros."""
    f = len(x)
    x = np.asarray(x, dtype=np.float32)
    padded = np.pad(x, ((window, window),) + ((0, 0),) * (x.ndim - 1))
    return np.stack([padded[j:j + f] for j in range(2 * window + 1)], axis=1)


def save_net(net, path: str | Path, metadata: dict[str, str]) -> None:
    """Write ``net``'s weights (float32) with ``metadata``; refuses an existing file (atomic write)."""
    from safetensors.torch import save_file

    from vssflow_core.media.files import atomic_output

    tensors = {k: v.detach().float().contiguous() for k, v in net.state_dict().items()}
    with atomic_output(Path(path)) as tmp:
        save_file(tensors, str(tmp), metadata=dict(metadata))


def check_training_command(args, what: str, counts: tuple[str, ...]) -> Path:
    """The ``--out`` of a small-net trainer's command line, refused unless it is a new ``*.safetensors``
    file; each option in ``counts`` (attribute names) must be at least 1."""
    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise VSSFlowError(f"--out {out}: name the {what} file *.safetensors")
    if out.exists():
        raise VSSFlowError(f"--out {out} already exists; not overwriting it, choose a new name")
    for name in counts:
        if getattr(args, name) < 1:
            raise VSSFlowError(f"--{name} {getattr(args, name)}: must be at least 1")
    return out


def file_key(path: str | Path, what: str, fix: str) -> tuple[str, int, int]:
    """(resolved path, modification time in ns, size in bytes) of a file, the key to cache it by."""
    resolved = Path(path).resolve()
    try:
        stat = resolved.stat()
    except OSError as e:
        raise VSSFlowError(f"{what} {path}: cannot read it ({e.strerror}); {fix}") from None
    return str(resolved), stat.st_mtime_ns, stat.st_size


def read_net(path: str, what: str, fix: str, required: tuple[str, ...], writer: str) -> tuple[dict, dict]:
    """(tensors, metadata) of a file written by :func:`save_net`.

    Args:
        path: the file.
        what: what it is, for messages (e.g. ``"lip reader"``).
        fix: what the user should do when it cannot be used.
        required: metadata keys it must have.
        writer: the command that writes such files (e.g. ``"train-lipread"``).
    Raises:
        VSSFlowError naming the file and ``fix`` when it is damaged or lacks a key.
    """
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (OSError, SafetensorError) as e:
        raise VSSFlowError(f"{what} {path}: cannot load it ({str(e).splitlines()[0]}); {fix}") from None
    missing = [k for k in required if k not in meta]
    if missing:
        raise VSSFlowError(f"{what} {path}: no {'/'.join(missing)} in its metadata, so it is not a file written "
                           f"by {writer}; {fix}")
    return tensors, meta


def load_state(net, tensors: dict, path: str | Path, what: str, fix: str, described: str):
    """``net`` with ``tensors`` loaded, in eval mode; a shape mismatch becomes a VSSFlowError that
    says what the metadata ``described`` (e.g. ``"a reader of window 8 and width 128"``)."""
    try:
        net.load_state_dict(tensors)
    except RuntimeError as e:
        raise VSSFlowError(f"{what} {path}: its tensors do not fit {described} "
                           f"({str(e).splitlines()[-1].strip()}); {fix}") from None
    return net.eval()
