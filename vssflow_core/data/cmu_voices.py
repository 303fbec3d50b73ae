"""More training voices: the CMU voices of flite and festival, with their phone timings.

The piper "joe" voice (``speech.py``) is the only voice of the first training set, so the speaker
condition never learned anything. These voices give the generator other speakers (a female US
voice, a Scottish and a US male voice) whose phone end times come from the synthesiser itself:

* ``slt``: festival 2.5 with ``festvox-us-slt-hts`` (female, HTS, the most natural; 0.4 s per call),
  timings from ``utt.save.segs``;
* ``flite-slt``, ``awb``, ``rms``: flite 2.2's built-in voices, timings from ``-psdur``.

Both print CMU (radio) phones, which are ARPAbet in lower case plus ``ax``/``axr`` and ``pau``.
Speaking rate: ``length_scale`` (> 1 slower) is flite's ``duration_stretch`` and the speed rate
(``-r``, its inverse) of festival's HTS engine. Output is resampled to 22050 Hz (torchaudio) and peak-normalised.

Requires the Debian packages (none on PyPI): ``apt-get install flite festival festvox-us-slt-hts``.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vssflow_core.errors import VSSFlowError

CMU_TO_ARPABET = {"ax": "AH", "axr": "ER", "pau": "<blank>", "h#": "<blank>", "brth": "<blank>"}
INSTALL_HINT = "apt-get install flite festival festvox-us-slt-hts"
TIMEOUT_S = 60


@dataclass(frozen=True)
class CmuVoice:
    """One flite or festival voice: ``engine`` ("flite" | "festival") and its voice name there."""

    engine: str
    name: str


VOICES = {
    "slt": CmuVoice("festival", "voice_cmu_us_slt_arctic_hts"),
    "flite-slt": CmuVoice("flite", "slt"),
    "awb": CmuVoice("flite", "awb"),
    "rms": CmuVoice("flite", "rms"),
}


def cmu_segments(ends: list[tuple[str, float]]) -> list[tuple[str, float, float]]:
    """CMU phones with end times ``[(phone, end_s), ...]`` -> ARPAbet ``(symbol, start_s, end_s)``.

    Each phone starts where the previous one ended; neighbouring pauses merge into one ``<blank>``.
    """
    out: list[list] = []
    start = 0.0
    for phone, end in ends:
        sym = CMU_TO_ARPABET.get(phone.lower(), phone.upper())
        if out and sym == out[-1][0] == "<blank>":
            out[-1][2] = end
        elif end > start:
            out.append([sym, start, end])
        start = max(start, end)
    return [(s, float(a), float(b)) for s, a, b in out]


def _parse_psdur(text: str) -> list[tuple[str, float]]:
    """flite ``-psdur`` output (``pau:0.195 p:0.280 ...``) -> ``[(phone, end_s), ...]``."""
    pairs = []
    for token in text.split():
        phone, sep, end = token.rpartition(":")
        if sep and phone:
            try:
                pairs.append((phone, float(end)))
            except ValueError:
                continue
    return pairs


def _parse_segs(text: str) -> list[tuple[str, float]]:
    """festival ``utt.save.segs`` file (a ``#`` line, then ``end_s 100 phone`` rows) -> ``[(phone, end_s)]``."""
    pairs = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3:
            try:
                pairs.append((parts[2], float(parts[0])))
            except ValueError:
                continue
    return pairs


def _require(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        raise VSSFlowError(f"the training voices need `{program}`, which is not installed: {INSTALL_HINT}")
    return path


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _run(cmd: list[str], what: str) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise VSSFlowError(f"{what} took more than {TIMEOUT_S} s") from exc
    if done.returncode != 0:
        raise VSSFlowError(f"{what} failed (exit {done.returncode}): {done.stderr.strip()[:300]}")
    return done.stdout


def synthesize_cmu(voice_id: str, text: str, length_scale: float, sample_rate: int):
    """Speak ``text`` with CMU voice ``voice_id``.

    Returns ``(audio, segments)``: float32 [S] at ``sample_rate`` Hz, peak 1, and ARPAbet segments
    ``(symbol, start_s, end_s)`` from the utterance start.
    """
    import soundfile as sf
    import torch
    import torchaudio

    voice = VOICES.get(voice_id)
    if voice is None:
        raise VSSFlowError(f"unknown CMU voice {voice_id!r}; choose from {sorted(VOICES)}")
    with tempfile.TemporaryDirectory(prefix="vssflow_tts_") as tmp:
        wav = Path(tmp) / "out.wav"
        if voice.engine == "flite":
            out = _run([_require("flite"), "-voice", voice.name, "--setf", f"duration_stretch={length_scale:.4f}",
                        "-t", text, "-o", str(wav), "-psdur"], f"flite ({voice_id})")
            ends = _parse_psdur(out)
        else:
            segs = Path(tmp) / "out.segs"
            script = Path(tmp) / "say.scm"
            # HTS voices ignore Duration_Stretch; hts_engine's speed rate "-r" (> 1 faster) sets the rate
            script.write_text(f"({voice.name})\n(set! hts_engine_params (append hts_engine_params "
                              f"(list (list \"-r\" {1.0 / length_scale:.4f}))))\n"
                              f"(set! u (SynthText {_scheme_string(text)}))\n"
                              f"(utt.save.wave u {_scheme_string(str(wav))} 'riff)\n"
                              f"(utt.save.segs u {_scheme_string(str(segs))})\n", encoding="utf-8")
            _run([_require("festival"), "-b", str(script)], f"festival ({voice_id})")
            if not segs.is_file():
                raise VSSFlowError(f"festival ({voice_id}) wrote no timings; is {INSTALL_HINT.split()[-1]} installed?")
            ends = _parse_segs(segs.read_text(encoding="utf-8"))
        if not wav.is_file() or os.path.getsize(wav) == 0:
            raise VSSFlowError(f"{voice.engine} ({voice_id}) wrote no audio for {text!r}")
        audio, rate = sf.read(str(wav), dtype="float32", always_2d=True)
    audio = torch.from_numpy(audio.mean(axis=1))
    if rate != sample_rate:
        audio = torchaudio.functional.resample(audio, rate, sample_rate)
    audio = audio.numpy()
    if not ends or audio.size == 0:
        raise VSSFlowError(f"{voice.engine} ({voice_id}) gave no audio or phone timings for {text!r}")
    audio = audio / max(float(np.max(np.abs(audio))), 1e-6)
    return audio.astype(np.float32), cmu_segments(ends)
