"""``python -m vssflow_core eval --model embedded|PATH|run:NAME --n N --seed S --json OUT.json``.

Generates N fresh synthetic clips with the data generator (seed S, never a training seed), runs the
model on each clip's own features (lips, phonemes, motion, appearance, speaker), decodes with the
model's codec and scores the audio:

* ``wer``: Whisper tiny.en transcript vs the transcript, speech and mixed clips (corpus WER); the
  same with characters as ``cer`` (moves while every word is still wrong);
* ``lip_offset_ok_frac``: share of speech clips whose mouth-opening / loudness cross-correlation
  peaks within 1 frame (25 fps) of zero;
* ``onset_f1``: detected onsets vs the true event times, 50 ms tolerance, sound clips; with
  ``onset_recall_by_class`` (per event class: ``recall``, the share of its events that have a
  detected onset within 50 ms, and ``events``), which shows what kind of event is missed;
* ``class_acc``: nearest-centroid class (aisfx embedding; centroids from the real clips of the
  eval split) of each generated sound clip vs its true class;
* ``fd``: Fréchet distance of aisfx embeddings, generated vs real sound clips;
* ``speaker_sim``: cosine similarity of the speaker embedding (resemblyzer, as the voice front-end)
  of each speech clip to the reference voice, averaged: with ``--voice FILE`` that recording, which
  is also given to the model as the speaker of every clip with a transcript; without, the data's
  own voice (the mean embedding of the real speech of the eval set's first 8 speech clips; no
  speaker condition). ``speaker_unscored`` counts clips with too little speech to embed.
  ``--voice own`` (an eval set made with ``make-data --voices``): each clip with a transcript gets
  as its speaker the real speech of *another* clip of its own voice (the next in the set), and is
  measured against it; ``speaker_id_acc`` is the share of speech clips whose generated voice is
  nearest (cosine) to the centroid of their own voice among the set's voices.

The same metrics on the real clips (``reference``) and on their vocoder resynthesis (real mel ->
vocoder, ``vocoder_ceiling``) bound what the model can reach. The JSON also keeps each generated
clip's own counts and embeddings (``clips``), from which ``eval-compare``
(:mod:`vssflow_core.train.compare`) gives intervals and paired comparisons.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from vssflow_core.audio.level import limit_peak
from vssflow_core.config import is_guidance_rescale
from vssflow_core.errors import VSSFlowError
from vssflow_core.train.paths import CENTROID_DATA_DIR, EVAL_CACHE_DIR, TRAIN_STATE_DIR
from vssflow_core.train.report import check_json_target, write_json_report

TRAIN_SEEDS = (1,)  # seeds of the shipped training data (make-data --seed 1)
METRICS = ("wer", "lip", "onset", "class", "fd", "speaker")
KINDS = ("speech", "sfx", "mixed")  # clip kinds of make-data
VOICE_CLIPS = 8  # real speech clips whose mean embedding stands for the data's voice (no --voice)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Register the ``eval`` options on ``p``."""
    p.add_argument("--model", default="embedded", help="'embedded', a model file, or run:NAME (EMA of a training run)")
    p.add_argument("--n", type=int, default=12, help="number of fresh clips (40%% speech, 40%% sfx, 20%% mixed)")
    p.add_argument("--start", type=int, default=0,
                   help="first clip of the set to score (clips START to N-1; a clip's noise depends on its "
                        "position in the set, so evals split into chunks score as one run would)")
    p.add_argument("--seed", type=int, default=1000, help="data seed of the eval clips (must not be a training seed)")
    p.add_argument("--json", default=None, help="write the results here (JSON)")
    p.add_argument("--data", default=None, help="use this make-data folder instead of generating one")
    p.add_argument("--cache-dir", default=EVAL_CACHE_DIR, help=f"where generated eval sets are kept for reuse (default {EVAL_CACHE_DIR})")
    p.add_argument("--state-dir", default=TRAIN_STATE_DIR, help=f"training runs (for --model run:NAME; default {TRAIN_STATE_DIR})")
    p.add_argument("--steps", type=int, default=None, help="solver steps (default: the model's)")
    p.add_argument("--solver", default=None, help="euler, midpoint, heun, dopri5 (default: the model's)")
    p.add_argument("--guidance", type=float, default=None,
                   help="guidance scale of every clip (default: the model's, which may differ with and without a transcript)")
    p.add_argument("--time-shift", type=float, default=None,
                   help="step-time shift of the fixed-step solvers for every clip (default: the model's, which may "
                        "differ with and without a transcript; 1 = equal steps)")
    p.add_argument("--guidance-rescale", type=float, default=None,
                   help="guidance rescale of every clip, 0..1 (default: the model's, which may differ with and "
                        "without a transcript; 0 = plain guidance)")
    p.add_argument("--noise-scale", type=float, default=None,
                   help="standard deviation of the starting noise for every clip (default: the model's, which may "
                        "differ with and without a transcript; 1 = official)")
    p.add_argument("--precision", default="fp32", choices=("fp32", "fp32-fused", "int8", "bf16"),
                   help="inference arithmetic of the DiT (VSSFlow.set_precision): measure what int8 or bf16 costs")
    p.add_argument("--vocoder", default="griffinlim", choices=("hifigan", "griffinlim"), help="mel_patch decoder")
    p.add_argument("--kinds", default=",".join(KINDS), help=f"which clip kinds of the first N to evaluate: {', '.join(KINDS)}")
    p.add_argument("--metrics", default=",".join(METRICS), help=f"comma list of {METRICS}")
    p.add_argument("--no-ceiling", action="store_true", help="skip the reference / vocoder-ceiling rows")
    p.add_argument("--centroid-data", default=CENTROID_DATA_DIR,
                   help="make-data folder whose real sound clips give the class centroids (fallback: leave-one-out on the eval clips)")
    p.add_argument("--centroid-n", type=int, default=48, help="sound clips used for the class centroids")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--save-audio", default=None, help="folder for the generated wavs (optional)")
    p.add_argument("--lip-fps", type=float, default=None,
                   help="read each clip's lips as a video made at this frame rate shows them (e.g. 16, a video "
                        "generator's): the mouth measured at this rate and put on the 25 Hz grid by the front-end; "
                        "the lip-offset metric keeps the true 25 fps mouth (default: 25 fps lips)")
    p.add_argument("--voice", default=None,
                   help="a reference recording (any format PyAV reads): given to the model as the speaker of every "
                        "speech clip, and the voice that speaker_sim is measured against; 'own': each clip's own "
                        "voice, taken from another clip of that voice (eval sets made with make-data --voices)")


def load_model(spec: str, state_dir: str = TRAIN_STATE_DIR):
    """(model, codec) for 'embedded', a model file path or 'run:NAME' (EMA weights of a run)."""
    from vssflow_core.audio.codec import build_codec

    if spec.startswith("run:"):
        from vssflow_core.train.run_state import Run

        path = Path(state_dir) / spec[4:] / "last.pt"
        if not path.is_file():
            raise VSSFlowError(f"--model {spec}: {path} does not exist; train that run first")
        state = Run.load(path, 1e-4, 0.0)
        model = state.ema.eval()
        model.training_info = {"run": spec[4:], "steps": state.step, "train_hours": round(state.train_seconds / 3600, 3)}
        return model, build_codec(model.config.codec).eval()
    from vssflow_core.model.checkpoint import load_model_file

    if spec == "embedded":
        from vssflow_core.embedded import EMBEDDED_WEIGHTS

        spec = str(EMBEDDED_WEIGHTS)
    model, extra, meta = load_model_file(spec, dtype=torch.float32)
    try:
        model.training_info = json.loads(meta.get("training", "null"))
    except ValueError:
        model.training_info = None
    return model.eval(), build_codec(model.config.codec, extra or None).eval()


def eval_data(args) -> Path:
    """The eval clips' folder: ``--data`` or a cached make-data run with ``--seed`` and ``--n``."""
    if args.data:
        return Path(args.data)
    if args.seed in TRAIN_SEEDS:
        raise VSSFlowError(f"--seed {args.seed} is a training seed {TRAIN_SEEDS}; evaluate on fresh clips (e.g. --seed 1000)")
    out = Path(args.cache_dir) / f"seed{args.seed}"
    from vssflow_core.data import generate

    parser = argparse.ArgumentParser(prog="make-data")
    generate.add_arguments(parser)
    rc = generate.run(parser.parse_args(["--out", str(out), "--n", str(args.n), "--seed", str(args.seed), "--kind", "all"]))
    if rc != 0:
        raise VSSFlowError(f"make-data failed for the eval set in {out}")
    return out


def generate_clip(model, codec, clip: dict, seed: int, steps: int, solver: str, guidance: float,
                  time_shift: float = 1.0, noise_scale: float = 1.0, guidance_rescale: float = 0.0) -> np.ndarray:
    """Sample audio for one cropped clip (features at native rates) -> waveform [S] at the codec rate.
    ``noise_scale``: standard deviation of the starting noise (as the pipeline's); ``guidance_rescale``
    0..1 (:meth:`VSSFlow.velocity`)."""
    cfg = model.config
    length = cfg.latent_length
    keys = {c.feature_key for c in cfg.conditions}
    feats = {}
    for k in keys:
        v = clip.get(k)
        if v is None:
            continue
        feats[k] = torch.from_numpy(np.asarray(v))[None]
    with torch.no_grad():
        cond = model.encode_conditions(length, batch_size=1, **feats)
        noise = torch.randn((1, cfg.audio_channels, length), generator=torch.Generator().manual_seed(seed)) * noise_scale
        latent = model.sample(noise, cond, solver=solver, steps=steps, guidance_scale=guidance, time_shift=time_shift,
                              x_range=codec.latent_range, guidance_rescale=guidance_rescale)
        return limit_peak(codec.decode(latent))[0].numpy()  # as the pipeline hands it to users


def onset_recall_by_class(items: list[dict]) -> dict:
    """{class: {"recall", "events"}} over the events of ``items`` (each: events, the manifest's
    events inside the clip; onsets_s, the detected onsets, s): the share of a class's events with a
    detected onset within 50 ms. In a clip with two classes each class's events are matched on their
    own against all the clip's onsets."""
    from vssflow_core.train import metrics as M

    hits: dict[str, list[int]] = {}
    for it in items:
        for cls in sorted({e["class"] for e in it["events"]}):
            h, n, _ = M.onset_counts([e["time_s"] for e in it["events"] if e["class"] == cls], it["onsets_s"])
            total = hits.setdefault(cls, [0, 0])
            total[0] += h
            total[1] += n
    return {cls: {"recall": round(h / n, 3), "events": n} for cls, (h, n) in sorted(hits.items()) if n}


def score(items: list[dict], metrics: set, tools: dict, sample_rate: int) -> dict:
    """Metrics over ``items`` (each: row, wave [S], mouth [F] or None); see the module docstring.

    Also leaves each item's own counts on it (``wer_counts``, ``cer_counts``: (edits, length);
    ``lip_offset``: frames; ``onset_counts``: (hits, true events, detected onsets);
    ``speaker_sim``: cosine, None when the clip has too little speech) for :func:`clip_records`.
    """
    from vssflow_core.train import metrics as M

    out: dict = {}
    speech = [it for it in items if it["row"]["kind"] in ("speech", "mixed") and it["row"].get("transcript")]
    if "wer" in metrics and speech:
        for it in speech:
            it["asr"] = tools["asr"](it["wave"], sample_rate)
            it["wer_counts"] = M.edit_counts(it["row"]["transcript"], it["asr"], "word")
            it["cer_counts"] = M.edit_counts(it["row"]["transcript"], it["asr"], "char")
        out["wer"] = M.rate_from_counts([it["wer_counts"] for it in speech])
        out["cer"] = M.rate_from_counts([it["cer_counts"] for it in speech])
    lips = [it for it in items if it["row"]["kind"] == "speech" and it.get("mouth") is not None]
    if "lip" in metrics and lips:
        for it in lips:
            it["lip_offset"] = M.lip_offset_frames(it["mouth"], M.frame_loudness(it["wave"], sample_rate, len(it["mouth"])))
        out["lip_offsets"] = [it["lip_offset"] for it in lips]
        out["lip_offset_ok_frac"] = float(np.mean([abs(o) <= 1 for o in out["lip_offsets"]]))
    sfx = [it for it in items if it["row"]["kind"] == "sfx"]
    if "onset" in metrics and sfx:
        for it in sfx:
            it["events"] = [e for e in it["row"].get("events", []) if e["time_s"] < it["dur"]]
            it["onsets_s"] = M.detect_onsets(it["wave"], sample_rate)
            it["onset_counts"] = M.onset_counts([e["time_s"] for e in it["events"]], it["onsets_s"])
        counts = np.array([it["onset_counts"] for it in sfx])
        out["onset_f1"] = M.f1_from_counts(*counts.sum(axis=0).tolist())
        out["onset_precision"] = float(counts[:, 0].sum() / max(1, counts[:, 2].sum()))
        out["onset_recall"] = float(counts[:, 0].sum() / max(1, counts[:, 1].sum()))
        out["onset_recall_by_class"] = onset_recall_by_class(sfx)
    if ("class" in metrics or "fd" in metrics) and sfx:
        for it in sfx:
            it["emb"] = tools["sfx"](it["wave"], sample_rate)
    talking = [it for it in items if it["row"]["kind"] == "speech"]
    if "speaker" in metrics and talking:
        for it in talking:
            emb = tools["speaker"](it["wave"], sample_rate)
            ref = it.get("voice_ref", tools.get("voice"))
            it["speaker_sim"] = None if emb is None or ref is None else float(np.dot(emb, ref))
            centroids = tools.get("voice_centroids")
            if emb is not None and centroids and it["row"].get("voice") in centroids:
                names = list(centroids)
                nearest = names[int(np.argmax([np.dot(emb, centroids[v]) for v in names]))]
                it["speaker_id_ok"] = nearest == it["row"]["voice"]
        sims = [it["speaker_sim"] for it in talking if it["speaker_sim"] is not None]
        out["speaker_clips"] = len(sims)  # clips with enough detected speech to be scored
        out["speaker_unscored"] = len(talking) - len(sims)
        if sims:
            out["speaker_sim"] = float(np.mean(sims))
        ids = [it["speaker_id_ok"] for it in talking if "speaker_id_ok" in it]
        if ids:
            out["speaker_id_acc"] = float(np.mean(ids))
    return out


def _voice_embedding(path_text: str) -> np.ndarray:
    """Speaker embedding [256] of the ``--voice`` recording (any format PyAV reads)."""
    from vssflow_core.features.speaker import read_voice_file, speaker_embedding

    voice = speaker_embedding(*read_voice_file(path_text, "--voice"))
    if voice is None:
        raise VSSFlowError(f"--voice {path_text}: too little speech for a speaker embedding; give a few seconds")
    return voice.numpy()


def _speaker_tools(voice: np.ndarray | None, source, sample_rate: int) -> dict:
    """``{"speaker": embed, "voice": reference [256]}`` for the speaker metric: ``voice`` (the
    ``--voice`` embedding) or, without it, the data's own voice (the normalised mean embedding of
    the real speech of the eval set's first ``VOICE_CLIPS`` speech clips; clips among them that are
    also scored are compared partly with themselves). A clip with too little speech scores nothing."""
    from vssflow_core.features.speaker import quiet_speaker_embedding as embed

    if voice is not None:
        return {"speaker": embed, "voice": voice}
    rows = [r for r in source.rows if r["kind"] == "speech"][:VOICE_CLIPS]
    embs = [e for e in (embed(source.load(r).wave, sample_rate) for r in rows) if e is not None]
    if not embs:
        raise VSSFlowError("speaker metric: no real speech clip in the eval set to stand for its voice; "
                           "give --voice FILE or leave 'speaker' out of --metrics")
    centroid = np.mean(embs, axis=0)
    return {"speaker": embed, "voice": centroid / np.linalg.norm(centroid)}


def own_voice_references(source, sample_rate: int) -> tuple[dict, dict]:
    """For ``--voice own``: ``(refs, centroids)``. ``refs`` maps the id of each clip with a transcript
    to the embedding [256] of the real speech of the next speech clip of the same voice (cyclic, in
    set order; never the clip itself); ``centroids`` maps each voice to the normalised mean embedding
    of its speech clips."""
    from vssflow_core.features.speaker import quiet_speaker_embedding as embed

    rows = [r for r in source.rows if r.get("transcript")]
    if not rows:  # a sound-only set: nobody speaks
        return {}, {}
    if any(not r.get("voice") for r in rows):
        raise VSSFlowError("--voice own: the eval clips carry no voice names; make them with "
                           "`make-data --voices joe,slt,...` (a recent version) and pass --data")
    by_voice: dict[str, list] = {}
    for r in (r for r in rows if r["kind"] == "speech"):
        emb = embed(source.load(r).wave, sample_rate)
        if emb is not None:
            by_voice.setdefault(r["voice"], []).append((r["id"], emb))
    refs = {}
    for r in rows:
        pool = [(i, e) for i, e in by_voice.get(r["voice"], []) if i != r["id"]]
        if pool:
            later = [(i, e) for i, e in pool if i > r["id"]]
            refs[r["id"]] = (later or pool)[0][1]
    missing = sorted({r["voice"] for r in rows if r["id"] not in refs})
    if missing:
        raise VSSFlowError(f"--voice own: voice(s) {missing} have no other speech clip in the eval set to take the "
                           "reference from; use a larger --n or a set with at least two speech clips per voice")
    centroids = {v: np.mean([e for _, e in es], axis=0) for v, es in by_voice.items()}
    return refs, {v: c / np.linalg.norm(c) for v, c in centroids.items()}


def clip_records(generated: list[dict], real: list[dict]) -> list[dict]:
    """One JSON record per generated clip: id, kind and whatever :func:`score` and the class step left
    on it (``class_pred``: the predicted class of a single-class sound clip); ``emb`` / ``real_emb``:
    the generated and the real clip's aisfx embeddings [512] (sound clips). ``eval-compare``
    recomputes every metric from these on resampled clips."""
    real_emb = {it["row"]["id"]: it["emb"] for it in real if "emb" in it}
    records = []
    for it in generated:
        rec = {"id": it["row"]["id"], "kind": it["row"]["kind"]}
        for key in ("wer_counts", "cer_counts", "lip_offset", "onset_counts", "class_pred", "class_ok", "speaker_sim",
                    "speaker_id_ok"):
            if it.get(key) is not None:
                rec[key] = it[key]
        if "emb" in it and it["row"]["id"] in real_emb:
            rec["emb"] = np.round(it["emb"], 6).tolist()
            rec["real_emb"] = np.round(real_emb[it["row"]["id"]], 6).tolist()
        records.append(rec)
    return records


def run(args) -> int:
    """Evaluate and print a table; writes ``--json`` if given."""
    from vssflow_core.train.data import ClipSource, crop_clip
    from vssflow_core.train.pack import placed_phones
    from vssflow_core.train import metrics as M

    torch.set_num_threads(max(1, args.threads))
    metrics = {m.strip() for m in args.metrics.split(",") if m.strip()}
    unknown = metrics - set(METRICS)
    if unknown:
        raise VSSFlowError(f"--metrics: unknown {sorted(unknown)}; choose from {METRICS}")
    if args.guidance_rescale is not None and not is_guidance_rescale(args.guidance_rescale):
        raise VSSFlowError(f"--guidance-rescale {args.guidance_rescale}: give a number from 0 (plain guidance) to 1")
    if args.noise_scale is not None and not (math.isfinite(args.noise_scale) and args.noise_scale > 0):
        raise VSSFlowError(f"--noise-scale {args.noise_scale}: give a number > 0 (1 = N(0, I), the official noise)")
    kinds = {k.strip() for k in args.kinds.split(",") if k.strip()}
    if not kinds or kinds - set(KINDS):
        raise VSSFlowError(f"--kinds {args.kinds!r}: choose from {', '.join(KINDS)} (comma-separated)")
    if args.json:
        check_json_target(args.json)
    if args.save_audio and Path(args.save_audio).is_dir() and any(Path(args.save_audio).glob("*.wav")):
        raise VSSFlowError(f"--save-audio {args.save_audio} already holds .wav files; give a new or empty folder "
                           "(an earlier run's audio is not overwritten)")
    if args.n < 1:
        raise VSSFlowError(f"--n {args.n}: evaluate at least 1 clip")
    if args.lip_fps is not None and not (math.isfinite(args.lip_fps) and 1 <= args.lip_fps <= 120):
        raise VSSFlowError(f"--lip-fps {args.lip_fps}: give a frame rate from 1 to 120 fps (e.g. 16)")
    if not 0 <= args.start < args.n:
        raise VSSFlowError(f"--start {args.start}: give a clip index from 0 to --n - 1 ({args.n - 1})")
    t_start = time.time()
    model, codec = load_model(args.model, args.state_dir)
    model.set_precision(args.precision)
    if hasattr(codec, "set_vocoder"):
        codec.set_vocoder(args.vocoder)
    cfg = model.config
    steps, solver = args.steps or cfg.steps, args.solver or cfg.solver
    # the model's default guidance depends on the transcript (ModelConfig.guidance_for), as in the pipeline
    guidance = {with_text: cfg.guidance_for(with_text) if args.guidance is None else args.guidance
                for with_text in (True, False)}
    time_shift = {with_text: cfg.time_shift_for(with_text) if args.time_shift is None else args.time_shift
                  for with_text in (True, False)}
    noise_scale = {with_text: cfg.noise_scale_for(with_text) if args.noise_scale is None else args.noise_scale
                   for with_text in (True, False)}
    rescale = {with_text: cfg.guidance_rescale_for(with_text) if args.guidance_rescale is None else args.guidance_rescale
               for with_text in (True, False)}
    source = ClipSource(eval_data(args), "joint", sample_rate=codec.sample_rate)
    # each clip keeps its noise seed (its position among the first N) whichever kinds are evaluated,
    # so a specialist scored on one kind meets the same noise as the joint model on that kind
    picked = [(pos, r) for pos, r in enumerate(source.rows[: args.n]) if pos >= args.start and r["kind"] in kinds]
    rows = [r for _, r in picked]
    num_samples = cfg.latent_length * codec.samples_per_latent
    dur = num_samples / codec.sample_rate
    # features that older data folders lack: crop_clip would fill them with zeros (= "absent") unnoticed
    needed_features = [c.feature_key for c in cfg.conditions if c.feature_key == "event_feat"]
    tools = {}
    if "wer" in metrics:
        tools["asr"] = M.Transcriber(threads=args.threads)
    if metrics & {"class", "fd"}:
        tools["sfx"] = M.SfxEmbedder()
    own_voice = args.voice == "own"
    voice = _voice_embedding(args.voice) if args.voice and not own_voice else None  # given whatever is scored
    voice_refs = {}
    if own_voice:
        from vssflow_core.features.speaker import quiet_speaker_embedding

        tools["speaker"] = quiet_speaker_embedding
        voice_refs, tools["voice_centroids"] = own_voice_references(source, codec.sample_rate)
    elif "speaker" in metrics and any(r["kind"] == "speech" for r in rows):
        tools.update(_speaker_tools(voice, source, codec.sample_rate))
    generated, reference, resynth = [], [], []
    gen_seconds = 0.0
    for i, (pos, row) in enumerate(picked):
        clip = source.load(row)
        for key in needed_features:
            if key not in clip.features:
                raise VSSFlowError(f"eval set {source.root}: clip {row['id']} has no {key}, which the model reads; the "
                                   "folder was made by an older make-data. Delete it (or give another --cache-dir) "
                                   "so that the eval set is made again")
        mouth_25fps = clip.features.get("lip_raw")  # the true mouth, for the lip-offset metric
        if args.lip_fps is not None and mouth_25fps is not None and mouth_25fps[:, 5].any():
            from vssflow_core.data.clips import lips_seen_at
            from vssflow_core.features.lip_space import normalise_lip_track

            seen = lips_seen_at(mouth_25fps, args.lip_fps)
            clip.features.update(lip_raw=seen, lip_feat=normalise_lip_track(seen))
        crop = crop_clip(clip, 0.0, cfg.duration_s, num_samples, codec.sample_rate)
        lip_phones = placed_phones(row, clip.features, cfg.phone_placement)  # as inference places them
        if lip_phones is not None:
            crop["phone_id"] = lip_phones[: len(crop["phone_id"])].astype(np.int64)
        if row.get("transcript") and (voice is not None or own_voice):
            crop["ref_audio_ebd"] = voice_refs[row["id"]] if own_voice else voice
        mouth = None
        if mouth_25fps is not None:
            mouth = mouth_25fps[: len(crop["lip_feat"]), 0]
        elif row["kind"] == "speech":
            mouth = crop["lip_feat"][:, 0]
        t0 = time.time()
        with_text = bool(row.get("transcript"))
        wave = generate_clip(model, codec, crop, args.seed * 1000 + pos, steps, solver, guidance[with_text],
                             time_shift[with_text], noise_scale[with_text], rescale[with_text])
        gen_seconds += time.time() - t0
        base = {"row": row, "mouth": mouth, "dur": dur}
        if own_voice and row["id"] in voice_refs:
            base["voice_ref"] = voice_refs[row["id"]]
        generated.append({**base, "wave": wave})
        if not args.no_ceiling:
            reference.append({**base, "wave": crop["wave"]})
            with torch.no_grad():
                resynth.append({**base, "wave": codec.decode(codec.encode(torch.from_numpy(crop["wave"])[None]))[0].numpy()})
        elif "fd" in metrics and row["kind"] == "sfx":  # FD's real side, embedded below without the ceiling rows
            reference.append({**base, "wave": crop["wave"]})
        if args.save_audio:
            from vssflow_core.media.audio_io import save_audio

            Path(args.save_audio).mkdir(parents=True, exist_ok=True)
            save_audio(Path(args.save_audio) / f"{row['id']}_{row['kind']}.wav", wave, codec.sample_rate)
        print(f"eval: clip {i + 1}/{len(rows)} ({row['kind']}) {time.time() - t0:.1f} s", file=sys.stderr, flush=True)
    sr = codec.sample_rate
    results = {"model": args.model, "training": getattr(model, "training_info", None), "n": len(rows), "start": args.start,
               "seed": args.seed, "steps": steps, "solver": solver,
               "guidance": guidance[True], "sound_guidance": guidance[False], "time_shift": time_shift[True],
               "sound_time_shift": time_shift[False], "noise_scale": noise_scale[True],
               "sound_noise_scale": noise_scale[False], "guidance_rescale": rescale[True],
               "sound_guidance_rescale": rescale[False], "precision": args.precision, "vocoder": args.vocoder, "window_s": dur,
               "voice": args.voice, "lip_fps": args.lip_fps,
               "kinds": {k: sum(r["kind"] == k for r in rows) for k in ("speech", "sfx", "mixed")},
               "gen_seconds_per_clip": gen_seconds / max(1, len(rows))}
    results.update(score(generated, metrics, tools, sr))
    sets = {"generated": generated}
    if not args.no_ceiling:
        results["reference"] = score(reference, metrics, tools, sr)
        results["vocoder_ceiling"] = score(resynth, metrics, tools, sr)
        sets.update(reference=reference, vocoder_ceiling=resynth)
    if args.no_ceiling:
        for it in reference:
            it["emb"] = tools["sfx"](it["wave"], sr)
    ref_sfx = [it for it in reference if "emb" in it]
    label = lambda row: row["classes"][0] if len(set(row.get("classes") or [])) == 1 else None  # single-class clips only
    cent_x, cent_y = None, None
    if "class" in metrics and args.centroid_data and (Path(args.centroid_data) / "manifest.jsonl").is_file():
        csrc = ClipSource(args.centroid_data, "v2s", sample_rate=sr)
        crow = [r for r in csrc.rows if label(r)][: args.centroid_n]
        cent_x = np.stack([tools["sfx"](csrc.load(r).wave, sr) for r in crow]) if crow else None
        cent_y = [label(r) for r in crow]
        results["class_centroids"] = {"data": str(args.centroid_data), "clips": len(crow)}
    for name, items in sets.items():
        with_emb = [it for it in items if "emb" in it]
        target = results if name == "generated" else results[name]
        labelled = [it for it in with_emb if label(it["row"])]
        if "class" in metrics and labelled:
            if cent_x is not None:
                predicted = M.nearest_centroid_predict(cent_x, cent_y, np.stack([it["emb"] for it in labelled]))
            else:  # leave-one-out centroids from the eval set's real single-class clips
                ref_l = [it for it in ref_sfx if label(it["row"])]
                predicted = []
                for it in labelled:
                    keep = [r for r in ref_l if r["row"]["id"] != it["row"]["id"]]
                    predicted.append(M.nearest_centroid_predict(np.stack([r["emb"] for r in keep]), [label(r["row"]) for r in keep],
                                                                it["emb"][None])[0] if keep else None)
            for it, p in zip(labelled, predicted):
                if p is not None:
                    it["class_pred"], it["class_ok"] = p, p == label(it["row"])
            judged = [it["class_ok"] for it in labelled if "class_ok" in it]
            if judged:
                target["class_acc"] = float(np.mean(judged))
            target["class_clips"] = len(labelled)
        if "fd" in metrics and with_emb and name != "reference" and len(ref_sfx) > 1:
            target["fd"] = M.frechet_distance(np.stack([it["emb"] for it in with_emb]), np.stack([it["emb"] for it in ref_sfx]))
    results["clips"] = clip_records(generated, reference)
    results["transcripts"] = [{"id": it["row"]["id"], "ref": it["row"]["transcript"], "asr": it.get("asr")}
                              for it in generated if "asr" in it]
    results["wall_seconds"] = time.time() - t_start
    keys = ("wer", "cer", "lip_offset_ok_frac", "onset_f1", "class_acc", "fd", "speaker_sim", "speaker_id_acc")
    print(f"{'':18}" + "".join(f"{k:>20}" for k in keys))
    for name, res in (("generated", results), ("reference", results.get("reference", {})),
                      ("vocoder_ceiling", results.get("vocoder_ceiling", {}))):
        print(f"{name:18}" + "".join(f"{res[k]:>20.3f}" if isinstance(res.get(k), float) and math.isfinite(res[k])
                                     else f"{'-':>20}" for k in keys))
    if results.get("onset_recall_by_class"):
        print("onset recall by class (events): " + ", ".join(
            f"{cls} {v['recall']:.2f} ({v['events']})" for cls, v in results["onset_recall_by_class"].items()))
    if args.json:
        write_json_report(args.json, results)
    return 0
