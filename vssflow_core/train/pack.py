"""Packed training data: a make-data folder squeezed into a few small files for a remote machine.

A data folder keeps 8 s of float32 waveform and float32 features per clip (about 1.1 MB); training
only needs the codec's log-mel and the features, quantised. ``pack`` stores per clip:

* ``log_mel``  uint8 ``[N, 80, M]`` (M = 4 x latent frames): natural-log mel, step 0.06 from -11.6
  (the codec's floor is log(1e-5) = -11.51; rounding error <= 0.03, about 0.26 dB);
* ``motion``   int8 ``[N, F25, 256]``: ``motion_feat`` x 127 (features in [-1, 1]);
* ``appearance`` uint8 ``[N, F10, 768]``: the 16x16 RGB thumbnail x 255 (``appearance_feat`` is its
  fixed standardisation), stored as differences along time modulo 256 (compresses better);
* ``event`` uint8 ``[N, F25]``: ``event_feat`` (the event detector's probability) x 255, when the
  clips carry it (make-data clips made before it existed do not; a pack of those trains without it);
* ``lip_feat`` float16 ``[N, F25, 6]``, ``phone_id`` uint8 ``[N, F25]``, ``kind`` uint8 ``[N]``
  (0 speech, 1 sfx, 2 mixed) and ``speech_window`` float32 ``[N, 2]`` (seconds, NaN if no speech);
* ``ref_audio_ebd`` float16 ``[N, 256]``: the speaker embedding (``features.speaker``) of the
  clip's own speech window (or the clip's stored one), NaN for clips without (enough) speech. Packs written before it existed
  lack the key: their clips train without a speaker condition.

Several pack folders train together when ``--data`` lists them (``A,B``): their clips are joined.

Each shard is ``pack_NNN.safetensors.xz`` (LZMA-compressed safetensors: no pickle) of up to
``clips_per_shard`` clips, about 42 kB per clip; ``pack.json`` holds the constants and the codec.
:class:`PackedSampler` rebuilds training batches from it on any device, with the official
add/insert mixing done on log-mel power (:func:`mix_log_mel`), so a GPU trains with no data loader.
"""
from __future__ import annotations

import dataclasses
import json
import lzma
import math
import os
from pathlib import Path

import numpy as np
import torch

from vssflow_core.config import FEATURE_RATE_HZ, PHONE_PLACEMENTS
from vssflow_core.errors import VSSFlowError
from vssflow_core.media.files import atomic_output
from vssflow_core.train.data import FEATURE_RATES, TASK_KINDS, mix_feature_streams

MEL_LO, MEL_STEP = -11.6, 0.06
MOTION_SCALE = 127.0
EVENT_SCALE = 255.0
KINDS = ("speech", "sfx", "mixed")
FORMAT = "vssflow-pack-1"


def _quantise_clip(codec, tensors: dict, num_samples: int) -> dict[str, np.ndarray]:
    """One clip's stored arrays (see the module docstring)."""
    from vssflow_core.features.visual import APPEARANCE_MEAN, APPEARANCE_STD

    wave = torch.zeros(1, num_samples)
    w = torch.from_numpy(np.asarray(tensors["wave"], dtype=np.float32))[:num_samples]
    wave[0, : len(w)] = w
    with torch.no_grad():
        mel = codec.log_mel(wave)[0].numpy()  # [80, M]
    thumb = np.asarray(tensors["appearance_feat"], np.float32) * APPEARANCE_STD + APPEARANCE_MEAN
    thumb = np.clip(np.round(thumb * 255.0), 0, 255).astype(np.uint8)
    event = {} if tensors.get("event_feat") is None else {
        "event": np.clip(np.round(np.asarray(tensors["event_feat"], np.float32)[:, 0] * EVENT_SCALE), 0, 255).astype(np.uint8)}
    return {
        **event,
        "log_mel": np.clip(np.round((mel - MEL_LO) / MEL_STEP), 0, 255).astype(np.uint8),
        "motion": np.clip(np.round(np.asarray(tensors["motion_feat"]) * MOTION_SCALE), -127, 127).astype(np.int8),
        "appearance": np.diff(thumb, axis=0, prepend=np.zeros_like(thumb[:1])),  # uint8 wraps modulo 256
        "lip_feat": np.asarray(tensors["lip_feat"], np.float16),
        "phone_id": np.asarray(tensors["phone_id"]).astype(np.uint8),
    }


def clip_speaker_embedding(wave: np.ndarray, row: dict, sample_rate: int, stored=None) -> np.ndarray:
    """A clip's speaker embedding: float16 [256]. ``stored`` (the clip's own ``ref_audio_ebd``
    tensor, if its data folder has one) wins; otherwise the voice front-end embeds the speech window
    (+-0.1 s) of ``wave`` [S]. NaN when the clip has no speech window or too little speech."""
    from vssflow_core.features.speaker import EMBED_DIM, quiet_speaker_embedding

    start, end = row.get("speech_start_s"), row.get("speech_end_s")
    if row["kind"] not in ("speech", "mixed") or start is None or end is None:
        return np.full(EMBED_DIM, np.nan, np.float16)
    if stored is not None:
        return np.asarray(stored, np.float32).reshape(EMBED_DIM).astype(np.float16)
    a, b = max(0, int((start - 0.1) * sample_rate)), int((end + 0.1) * sample_rate)
    emb = quiet_speaker_embedding(np.asarray(wave, np.float32)[a:b], sample_rate)
    return np.full(EMBED_DIM, np.nan, np.float16) if emb is None else emb.astype(np.float16)


def _write_shard(path: Path, arrays: dict[str, np.ndarray]) -> None:
    from safetensors.numpy import save

    with atomic_output(path, replace=True) as tmp:
        tmp.write_bytes(lzma.compress(save(arrays), preset=6))


def _read_shard(path: Path) -> dict[str, np.ndarray]:
    """One shard's arrays; a damaged one (cut short in a copy) is a ``VSSFlowError`` naming it."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    try:
        return load(lzma.decompress(path.read_bytes()))
    except (lzma.LZMAError, EOFError, SafetensorError) as e:
        raise VSSFlowError(f"pack shard {path} is damaged ({e}); copy it again from where it was packed, or "
                           "delete it to train on the other shards") from None


def placed_phones(row: dict, features: dict, placement: str) -> np.ndarray | None:
    """A speech or mixed clip's phoneme ids on the 25 Hz grid placed by its lips, as inference places
    them for a model with ``phone_placement`` "lips" or "lipread": uint8 [F25].

    ``row``: the manifest row (transcript, speech window, duration); ``features``: the clip's
    features, with ``lip_raw`` float32 [F25, 6]. Returns None when the stored (uniform) track stands:
    ``placement`` is "uniform", or the clip has no speech, transcript or measured lips.
    """
    from vssflow_core.features import phone_timing
    from vssflow_core.features.text import phoneme_ids, text_to_phonemes

    has_speech = row["kind"] in ("speech", "mixed") and row.get("speech_start_s") is not None
    if placement == "uniform" or not has_speech or not row.get("transcript") or "lip_raw" not in features:
        return None
    lip_raw = features["lip_raw"]
    ids = phoneme_ids(text_to_phonemes(row["transcript"]))
    track = phone_timing.mouth_placement(placement)(ids, lip_raw, float(row["speech_start_s"]),
                                                   float(row["speech_end_s"]), float(row["duration_s"]))
    return track.numpy()[: len(lip_raw)].astype(np.uint8)


def pack(data_dir: str | os.PathLike, out_dir: str | os.PathLike, clips_per_shard: int = 250,
         limit: int | None = None, config=None, phone_placement: str = "uniform", speaker: bool = True) -> Path:
    """Pack the clips of a make-data folder (``manifest.jsonl`` + ``clips/``) into ``out_dir``.

    Every clip must be at least the model's window long (``config``, default the embedded model's;
    the training crop starts at 0). ``phone_placement`` "lips" or "lipread" re-places the transcripts'
    phonemes by the clips' lips (:func:`placed_phones`) instead of the generator's uniform stretch.
    ``speaker`` stores each clip's speaker embedding (:func:`clip_speaker_embedding`; needs resemblyzer).
    Returns the path of ``pack.json``. An existing ``out_dir/pack.json`` is refused (never overwritten).
    """
    from vssflow_core.audio.codec import build_codec
    from vssflow_core.embedded import embedded_config
    from vssflow_core.train.data import ClipSource

    if phone_placement not in PHONE_PLACEMENTS:
        raise VSSFlowError(f"pack: phone placement must be one of {PHONE_PLACEMENTS}, got {phone_placement!r}")
    if limit is not None and limit < 1:
        raise VSSFlowError(f"pack: --limit {limit}: the number of clips to pack, at least 1 (leave it out to pack all)")
    if clips_per_shard < 1:
        raise VSSFlowError(f"pack: --clips-per-shard {clips_per_shard}: must be at least 1 (default 250)")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise VSSFlowError(f"pack: --out {out} is a file; give a new folder")
    if (out / "pack.json").exists():
        raise VSSFlowError(f"pack: {out / 'pack.json'} exists; choose a new --out folder")
    out.mkdir(parents=True, exist_ok=True)
    cfg = config or embedded_config()
    codec = build_codec(cfg.codec)
    num_samples = cfg.latent_length * codec.samples_per_latent
    source = ClipSource(data_dir, "joint", sample_rate=codec.sample_rate)
    rows = source.rows[:limit] if limit is not None else source.rows
    shards, buf, ids = [], {}, []

    def flush():
        if not ids:
            return
        name = f"pack_{len(shards):03d}.safetensors.xz"
        _write_shard(out / name, {k: np.stack(v) for k, v in buf.items()})
        shards.append({"file": name, "clips": len(ids), "ids": list(ids)})
        buf.clear()
        ids.clear()

    for row in rows:
        if float(row.get("duration_s") or 0) * codec.sample_rate < num_samples:
            raise VSSFlowError(f"pack: clip {row['file']} is {row.get('duration_s')} s; the packed format needs "
                               f">= {num_samples / codec.sample_rate:.3f} s (make-data --duration-s {cfg.duration_s})")
        clip = source.load(row)
        arrays = _quantise_clip(codec, {"wave": clip.wave, **clip.features}, num_samples)
        has_speech = row["kind"] in ("speech", "mixed") and row.get("speech_start_s") is not None
        lip_phones = placed_phones(row, clip.features, phone_placement)
        if lip_phones is not None:
            arrays["phone_id"] = lip_phones
        arrays["kind"] = np.asarray(KINDS.index(row["kind"]), np.uint8)
        arrays["speech_window"] = np.asarray([row["speech_start_s"], row["speech_end_s"]] if has_speech
                                             else [math.nan, math.nan], np.float32)
        if speaker:
            arrays["ref_audio_ebd"] = clip_speaker_embedding(clip.wave, row, codec.sample_rate,
                                                             clip.features.get("ref_audio_ebd"))
        for k, v in arrays.items():
            buf.setdefault(k, []).append(v)
        ids.append(row["id"])
        if len(ids) >= clips_per_shard:
            flush()
    flush()
    meta = {"format": FORMAT, "source": str(Path(data_dir).resolve()), "clips": sum(s["clips"] for s in shards),
            "shards": shards, "mel_lo": MEL_LO, "mel_step": MEL_STEP, "motion_scale": MOTION_SCALE,
            "duration_s": cfg.duration_s, "num_samples": num_samples, "phone_placement": phone_placement,
            "speaker": bool(speaker), "codec": dataclasses.asdict(cfg.codec)}
    if phone_placement == "lipread":  # which reader placed them: a retrained reader needs a new pack
        from vssflow_core.features.lipread import reader_sha256

        meta["lipread_sha256"] = reader_sha256()
    with atomic_output(out / "pack.json") as tmp:  # written last and whole: its presence marks a finished pack
        tmp.write_text(json.dumps(meta, indent=1))
    return out / "pack.json"


def add_arguments(p) -> None:
    """Register the ``pack`` options on the argparse parser ``p``."""
    p.add_argument("--data", required=True, help="make-data output folder (manifest.jsonl + clips/)")
    p.add_argument("--out", required=True, help="new folder for pack.json and the shards")
    p.add_argument("--clips-per-shard", type=int, default=250, help="clips per shard file (about 42 kB each)")
    p.add_argument("--limit", type=int, default=None, help="pack only the first N clips (N >= 1; default all)")
    p.add_argument("--phone-placement", choices=PHONE_PLACEMENTS, default="uniform",
                   help="place the transcripts' phonemes by uniform stretch (official), by the lips' opening and "
                        "width (lips: DTW) or by the lip reader (lipread: forced alignment)")
    p.add_argument("--no-speaker", action="store_true",
                   help="do not store speaker embeddings (they need resemblyzer and about 0.1 s per speaking clip)")


def run(args) -> int:
    """``python -m vssflow_core pack``: write the pack and print its size."""
    path = pack(args.data, args.out, args.clips_per_shard, args.limit, phone_placement=args.phone_placement,
                speaker=not args.no_speaker)
    meta = json.loads(path.read_text())
    size = sum((path.parent / s["file"]).stat().st_size for s in meta["shards"])
    print(f"packed {meta['clips']} clips into {len(meta['shards'])} shards, {size / 1e6:.1f} MB: {path}")
    return 0


def pack_folders(path: str | os.PathLike) -> list[Path]:
    """The folders of a ``--data`` value: one folder, or several joined by commas (``A,B``)."""
    return [Path(p) for p in str(path).split(",") if p]


def is_packed(path: str | os.PathLike) -> bool:
    """True if ``path`` (one folder, or comma-joined folders) holds what :func:`pack` writes."""
    folders = pack_folders(path)
    return bool(folders) and all((f / "pack.json").is_file() for f in folders)


class PackedClips:
    """All clips of a packed folder (or of several, ``A,B``), dequantised on ``device``.

    Attributes (N clips): ``log_mel`` float32 [N, 80, M]; ``lip_feat`` float32 [N, F25, 6];
    ``phone_id`` int64 [N, F25]; ``motion_feat`` float32 [N, F25, 256]; ``appearance_feat`` float32
    [N, F10, 768]; ``kind`` int64 [N]; ``speech_window`` float32 [N, 2] (seconds, NaN if none);
    ``ref_audio_ebd`` float32 [N, 256] (zeros where a clip has none, the model's "no speaker") or
    None when no clip has one; ``event_feat`` float32 [N, F25, 1] or None when the packs have none. Shards missing from a folder are skipped (a folder may be carried in
    parts). Joined folders must share the packing constants, window and phoneme placement.
    """

    SHARED_META = ("mel_lo", "mel_step", "motion_scale", "duration_s", "num_samples", "phone_placement", "codec",
                   "lipread_sha256")

    def __init__(self, root: str | os.PathLike, device="cpu"):
        from vssflow_core.features.speaker import EMBED_DIM
        from vssflow_core.features.visual import APPEARANCE_MEAN, APPEARANCE_STD

        self.root = str(root)
        loaded = [self._load_folder(folder) for folder in pack_folders(root)]
        if not loaded:
            raise VSSFlowError(f"{root!r}: no pack folder given")
        self.meta = dict(loaded[0][0])
        for folder, (meta, _) in zip(pack_folders(root)[1:], loaded[1:]):
            differ = [k for k in self.SHARED_META if meta.get(k) != self.meta.get(k)]
            if differ:
                raise VSSFlowError(f"{folder}: packed with other {', '.join(differ)} than {pack_folders(root)[0]}; "
                                   "pack both with the same model config and --phone-placement")
        self.meta["clips"] = sum(int(m.get("clips", 0)) for m, _ in loaded)
        for _, part in loaded:  # clips of older packs have no speaker embedding: NaN rows
            part.setdefault("ref_audio_ebd", np.full((len(part["kind"]), EMBED_DIM), np.nan, np.float16))
        with_event = [folder for folder, (_, part) in zip(pack_folders(root), loaded) if "event" in part]
        if with_event and len(with_event) < len(loaded):
            raise VSSFlowError(f"{root}: {', '.join(map(str, with_event))} carry event features and the other "
                               "packs do not; pack all of them with this version's make-data clips")
        cat = {k: np.concatenate([part[k] for _, part in loaded]) for k in loaded[0][1]}
        dev = torch.device(device)
        self.log_mel = torch.from_numpy(cat["log_mel"]).to(dev).float() * self.meta["mel_step"] + self.meta["mel_lo"]
        self.motion_feat = torch.from_numpy(cat["motion"]).to(dev).float() / self.meta["motion_scale"]
        thumb = np.cumsum(cat["appearance"], axis=1, dtype=np.uint8)  # undo the modulo-256 differences
        self.appearance_feat = (torch.from_numpy(thumb).to(dev).float() / 255.0 - APPEARANCE_MEAN) / APPEARANCE_STD
        self.lip_feat = torch.from_numpy(cat["lip_feat"]).to(dev).float()
        self.phone_id = torch.from_numpy(cat["phone_id"]).to(dev).long()
        self.kind = torch.from_numpy(cat["kind"]).to(dev).long()
        self.speech_window = torch.from_numpy(cat["speech_window"]).float()  # CPU: read per mixed example
        ref = torch.from_numpy(cat["ref_audio_ebd"].astype(np.float32))
        self.ref_audio_ebd = torch.nan_to_num(ref, nan=0.0).to(dev) if bool(torch.isfinite(ref).any()) else None
        self.event_feat = (torch.from_numpy(cat["event"]).to(dev).float()[..., None] / EVENT_SCALE
                           if "event" in cat else None)
        self.num_clips = self.log_mel.shape[0]

    @staticmethod
    def _load_folder(folder: Path) -> tuple[dict, dict]:
        """(pack.json, its present shards' arrays joined) of one pack folder."""
        if not is_packed(folder):
            raise VSSFlowError(f"{folder}: no pack.json; write one with `python -m vssflow_core pack --data DIR --out {folder}`")
        try:
            meta = json.loads((folder / "pack.json").read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise VSSFlowError(f"{folder}/pack.json is damaged ({e}); pack the clips again into a new --out") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
            raise VSSFlowError(f"{folder}/pack.json: format {found!r}, expected {FORMAT!r}")
        parts = [_read_shard(folder / s["file"]) for s in meta["shards"] if (folder / s["file"]).is_file()]
        if not parts:
            raise VSSFlowError(f"{folder}: none of the shards listed in pack.json is present")
        return meta, {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def require_placement(self, placement: str, fix: str) -> None:
        """Refuse (``VSSFlowError``, ending with ``fix``) a model whose phoneme placement differs from
        the one these clips were packed with."""
        packed = self.meta.get("phone_placement", "uniform")
        if packed != placement:
            raise VSSFlowError(f"{self.root}: phonemes packed with placement {packed!r}, the model uses "
                               f"{placement!r}; {fix}")
        reader = self.meta.get("lipread_sha256")
        if placement == "lipread" and reader is not None:
            from vssflow_core.features.lipread import LIPREAD_WEIGHTS, reader_sha256

            shipped = reader_sha256()
            if reader != shipped:
                raise VSSFlowError(f"{self.root}: phonemes placed by a lip reader (sha256 {reader[:12]}...) other than "
                                   f"{LIPREAD_WEIGHTS} ({shipped[:12]}...), which inference uses; pack the "
                                   "clips again with --phone-placement lipread")


def mix_log_mel(base: torch.Tensor, speech: torch.Tensor, gain: float, mode: str) -> torch.Tensor:
    """Log-mel of a waveform mix, from the parts' log-mels (uncorrelated sources add in power).

    Args: ``base``, ``speech`` log-mel ``[80, M]`` of the same span; ``gain`` scales the base
    waveform (``add``); ``mode`` ``add`` (base * gain + speech) or ``insert`` (speech replaces base).
    Returns: ``[80, M]`` natural-log mel magnitude.
    """
    if mode == "insert":
        return speech.clone()
    return 0.5 * torch.logaddexp(2 * (base + math.log(gain)), 2 * speech)


class PackedSampler:
    """Training batches from :class:`PackedClips` for one task, on the clips' device.

    The same recipe as :class:`vssflow_core.train.data.ExampleSampler` (joint task: with chance
    ``p_mix`` a sound example gets a speech clip's speech window added or inserted at a random
    offset on the 25 Hz grid), with the waveform mix replaced by :func:`mix_log_mel`.
    """

    def __init__(self, clips: PackedClips, task: str, codec, latent_length: int, p_mix: float = 0.2):
        if task not in TASK_KINDS:
            raise VSSFlowError(f"task: expected one of {sorted(TASK_KINDS)}, got {task!r}")
        self.clips, self.codec, self.latent_length = clips, codec, latent_length
        self.kinds = kinds = clips.kind.cpu()  # read per example without a device sync
        task_ids = torch.tensor([KINDS.index(k) for k in TASK_KINDS[task]])
        self.pool = torch.nonzero(torch.isin(kinds, task_ids)).flatten()
        self.speech_pool = torch.nonzero(kinds == 0).flatten()
        if len(self.pool) == 0:
            raise VSSFlowError(f"packed data has no clips for task {task!r}")
        self.p_mix = p_mix if task == "joint" and len(self.speech_pool) else 0.0
        self.mel_rate = codec.sample_rate / codec.hop_length  # mel frames per second (86.13)

    def batch(self, size: int, gen: torch.Generator) -> dict:
        """A batch of ``size`` examples drawn with the CPU generator ``gen``.

        Returns: ``latent`` [B, 320, L], ``lip_feat`` [B, F25, 6], ``phone_id`` [B, F25],
        ``motion_feat`` [B, F25, 256], ``appearance_feat`` [B, F10, 768], ``event_feat`` [B, F25, 1]
        (None when the pack has no event features), ``ref_audio_ebd`` [B, 256] (zeros for clips
        without speech; a sound example with speech mixed in gets the speech's) or None when the pack
        has no speaker embeddings.
        """
        c = self.clips
        idx = self.pool[torch.randint(len(self.pool), (size,), generator=gen)]
        dev_idx = idx.to(c.log_mel.device)
        out = {"log_mel": c.log_mel[dev_idx].clone(), "lip_feat": c.lip_feat[dev_idx].clone(),
               "phone_id": c.phone_id[dev_idx].clone(), "motion_feat": c.motion_feat[dev_idx].clone(),
               "appearance_feat": c.appearance_feat[dev_idx].clone(),
               "event_feat": None if c.event_feat is None else c.event_feat[dev_idx].clone(),
               "ref_audio_ebd": None if c.ref_audio_ebd is None else c.ref_audio_ebd[dev_idx].clone()}
        if self.p_mix > 0:
            for b in range(size):
                if int(self.kinds[idx[b]]) == 1 and float(torch.rand((), generator=gen)) < self.p_mix:
                    self._mix(out, b, int(self.speech_pool[torch.randint(len(self.speech_pool), (), generator=gen)]), gen)
        latent = self.codec.mel_to_latent(out.pop("log_mel"))[..., : self.latent_length]
        return {"latent": latent, **out}

    def _mix(self, out: dict, b: int, s: int, gen: torch.Generator) -> None:
        """Put clip ``s``'s speech window (+-0.1 s, on the 25 Hz grid) into example ``b`` of ``out``."""
        c, duration = self.clips, float(self.clips.meta["duration_s"])
        start, end = (float(v) for v in c.speech_window[s])
        grid = FEATURE_RATE_HZ
        a, e = round(max(0.0, start - 0.1) * grid) / grid, round(min(duration, end + 0.1) * grid) / grid
        offset = round(float(torch.rand((), generator=gen)) * max(0.0, duration - (e - a)) * grid) / grid
        mode = "add" if float(torch.rand((), generator=gen)) < 0.5 else "insert"
        gain = 0.3 + 0.4 * float(torch.rand((), generator=gen))
        m0, m1, d0 = round(a * self.mel_rate), round(e * self.mel_rate), round(offset * self.mel_rate)
        n = max(0, min(m1 - m0, out["log_mel"].shape[-1] - d0))
        mel = out["log_mel"][b]
        mel[:, d0: d0 + n] = mix_log_mel(mel[:, d0: d0 + n], c.log_mel[s, :, m0: m0 + n], gain, mode)
        keys = [k for k in FEATURE_RATES if out[k] is not None]
        mix_feature_streams({k: out[k][b] for k in keys}, {k: getattr(c, k)[s] for k in keys},
                            (a, e), offset, mode)  # views: writes land in out
        if out["ref_audio_ebd"] is not None:  # the voice heard is the speech's
            out["ref_audio_ebd"][b] = c.ref_audio_ebd[s]

