"""Official VSSFlow checkpoints: strict key-compatible loading and conversion to our model file.

An official checkpoint is a PyTorch-Lightning ``.ckpt`` whose ``state_dict`` holds the DiT
(``vaflow.*``), the condition heads (``lip_proj``, ``phone_embedding``, ``synch_proj``,
``ref_proj``, ``cond_proj``) and the frozen sub-models (``image_encoder.*`` CLIP, ``vae.*``,
``vocoder.*``). Every size is read from tensor shapes except the head split, which the weights
cannot tell (``attention_head_dim``, 64 for the released models).

``convert_checkpoint`` (CLI ``python -m vssflow_core convert``) writes one model file holding the DiT,
the codec and CLIP, and optionally the Synchformer and RawNet3 extractor weights (``--synchformer``,
``--rawnet3``), i.e. everything the official front-end needs.
"""
from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path

import torch

from vssflow_core.config import CodecConfig, DiTConfig, ModelConfig, official_conditions
from vssflow_core.errors import VSSFlowError

# Frozen sub-models inside the Lightning state_dict: not part of the DiT, kept as extra tensors.
FROZEN_PREFIXES = ("image_encoder.", "vae.", "vocoder.")
AUDIO_CHANNELS = 128  # AudioLDM VAE latent: 8 channels x 16 mel bins


def _shape(sd: dict, key: str) -> tuple[int, ...]:
    if key not in sd:
        raise VSSFlowError(f"official state_dict lacks {key!r}, needed to infer the model size; "
                           "is this a VSSFlow (VAFlow) Lightning checkpoint's state_dict?")
    return tuple(sd[key].shape)


def infer_config(state_dict: dict, attention_head_dim: int = 64) -> ModelConfig:
    """Build the :class:`ModelConfig` whose weights have the shapes of ``state_dict``."""
    sd = state_dict
    width, in_channels = _shape(sd, "vaflow.proj_in.weight")
    layers = {int(m.group(1)) for k in sd if (m := re.match(r"vaflow\.transformer_blocks\.(\d+)\.", k))}
    if not layers:
        raise VSSFlowError("official state_dict has no 'vaflow.transformer_blocks.*' keys")
    if width % attention_head_dim:
        raise VSSFlowError(f"attention_head_dim {attention_head_dim} does not divide the DiT width {width}; "
                           "the official models use 64")
    kv_out, cross_dim = _shape(sd, "vaflow.transformer_blocks.0.attn2.to_k.weight")
    if kv_out % attention_head_dim:
        raise VSSFlowError(f"attention_head_dim {attention_head_dim} does not divide the cross-attention "
                           f"key width {kv_out}")
    dit = DiTConfig(
        num_layers=max(layers) + 1,
        num_heads=width // attention_head_dim,
        head_dim=attention_head_dim,
        num_kv_heads=kv_out // attention_head_dim,
        cross_dim=cross_dim,
        time_proj_dim=2 * _shape(sd, "vaflow.time_proj.weight")[0],
        ff_inner_dim=_shape(sd, "vaflow.transformer_blocks.0.ff.net.2.weight")[1],
    )
    specs = []
    for spec in official_conditions():
        key = spec.module_name
        if spec.projection == "embedding":
            rows, dim = _shape(sd, f"{key}.weight")
            specs.append(dataclasses.replace(spec, input_dim=rows, out_dim=dim))
        else:
            hidden, in_dim = _shape(sd, f"{key}.0.weight")
            out_dim = _shape(sd, f"{key}.2.weight")[0]
            specs.append(dataclasses.replace(spec, input_dim=in_dim, hidden_dim=hidden, out_dim=out_dim))
    concat = sum(s.out_dim for s in specs if s.route == "concat")
    if in_channels != AUDIO_CHANNELS + concat:
        raise VSSFlowError(f"official state_dict: DiT input has {in_channels} channels, but audio {AUDIO_CHANNELS} + "
                           f"lip/phone/synch heads {concat} = {AUDIO_CHANNELS + concat}")
    try:
        return ModelConfig(name=f"official-{dit.num_layers}l", dit=dit, codec=CodecConfig(), conditions=tuple(specs))
    except ValueError as e:
        raise VSSFlowError(f"official state_dict has inconsistent sizes: {e}") from None


def check_keys(expected: dict, given: dict) -> list[str]:
    """Readable report lines for missing, unexpected and mis-shaped keys (empty list = match)."""
    lines = []
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    shapes = sorted(k for k in set(expected) & set(given) if tuple(expected[k].shape) != tuple(given[k].shape))
    for k in missing:
        lines.append(f"  missing     {k}  (model expects {list(expected[k].shape)})")
    for k in unexpected:
        lines.append(f"  unexpected  {k}  {list(given[k].shape)}")
    for k in shapes:
        lines.append(f"  shape       {k}: checkpoint {list(given[k].shape)}, model {list(expected[k].shape)}")
    return lines


def split_state_dict(state_dict: dict) -> tuple[dict, dict]:
    """(model weights, frozen sub-model tensors ``image_encoder.*``/``vae.*``/``vocoder.*``)."""
    if "state_dict" in state_dict and isinstance(state_dict["state_dict"], dict):
        state_dict = state_dict["state_dict"]
    model, frozen = {}, {}
    for k, v in state_dict.items():
        (frozen if k.startswith(FROZEN_PREFIXES) else model)[k] = v
    return model, frozen


def load_official(state_dict: dict, attention_head_dim: int = 64):
    """Build a VSSFlow from an official Lightning ``state_dict`` (strict keys, eval mode).

    Every size (layers, width, heads, kv heads, cross width, feed-forward width, condition head
    widths) is read from the shapes. ``image_encoder.*``, ``vae.*`` and ``vocoder.*`` are skipped
    here (frozen CLIP / codec weights; :func:`convert_checkpoint` keeps them). Any other missing,
    unexpected or mis-shaped key raises :class:`VSSFlowError` with the full list.
    """
    from vssflow_core.model import VSSFlow

    if not isinstance(state_dict, dict):
        raise VSSFlowError(f"load_official: expected the checkpoint's state_dict (a dict of tensors), got "
                           f"{type(state_dict).__name__}; read a .ckpt with vssflow_core.official.read_checkpoint")
    weights, _frozen = split_state_dict(state_dict)
    config = infer_config(weights, attention_head_dim)
    model = VSSFlow(config)
    report = check_keys(model.state_dict(), weights)
    if report:
        raise VSSFlowError(f"official state_dict does not match the {config.name} layout "
                           f"({len(report)} problem(s)):\n" + "\n".join(report[:40]))
    model.load_state_dict({k: v.to(torch.float32) if v.is_floating_point() else v for k, v in weights.items()}, strict=True)
    return model.eval()


def read_checkpoint(path) -> dict:
    """The ``state_dict`` of an official ``.ckpt`` (``torch.load(weights_only=True)``) or of a
    ``.safetensors`` file holding the same keys. Never unpickles arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise VSSFlowError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        from vssflow_core.features.official.extractors import load_weights

        return load_weights(path)  # clear VSSFlowError for a damaged or non-safetensors file
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # legacy (non-zip) files cannot be memory-mapped
        ckpt = _load_weights_only(path)
    except Exception as e:
        raise _unsafe_error(path, e) from None
    if not isinstance(ckpt, dict):
        raise VSSFlowError(f"checkpoint {path} holds a {type(ckpt).__name__}, expected a dict with 'state_dict'")
    state = ckpt["state_dict"] if isinstance(ckpt.get("state_dict"), dict) else ckpt
    others = [f"{k} ({type(v).__name__})" for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if others:
        raise VSSFlowError(f"checkpoint {path}: {len(others)} state_dict entries are not tensors "
                           f"({', '.join(others[:3])}); expected an official VSSFlow .ckpt")
    return state


def _load_weights_only(path):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise _unsafe_error(path, e) from None


def _unsafe_error(path, e) -> VSSFlowError:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    detail = next((ln for ln in lines if "Unsupported global" in ln or "GLOBAL" in ln), None)
    if detail is None:  # not a pickle with foreign objects: a damaged or non-PyTorch file
        return VSSFlowError(f"checkpoint {path} is not a readable PyTorch checkpoint ({type(e).__name__}: "
                            f"{lines[0] if lines else repr(e)}); expected an official VSSFlow .ckpt, check the file "
                            "is complete (re-download it)")
    return VSSFlowError(
        f"checkpoint {path} cannot be read with torch.load(weights_only=True): {detail}\n"
        "It stores Python objects besides tensors, and unpickling them could run arbitrary code, so we refuse. "
        "If you trust the file, re-save only the weights in a separate Python session: "
        "torch.save({'state_dict': torch.load(P, weights_only=False)['state_dict']}, 'weights.ckpt'), "
        "then convert weights.ckpt.")


def _sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def extractor_extras(synchformer=None, rawnet3=None) -> dict:
    """Extractor weights for a model file: ``synchformer.vfeat_extractor.*`` and ``rawnet3.*`` tensors.

    ``synchformer``: MMAudio's ``synchformer_state_dict.pth`` (or any file/state dict holding
    ``vfeat_extractor.*``); ``rawnet3``: RawNet3's ``model.pt`` (``{"model": ...}``). Each file is read
    safely (safetensors or ``torch.load(weights_only=True)``, see
    :func:`vssflow_core.features.official.load_weights`), renamed with
    :func:`~vssflow_core.features.official.extractor_tensors`, and checked by building the extractor
    once, so a wrong file fails here and not at generation time. ``None`` skips that extractor.
    """
    from vssflow_core.features.official.extractors import extractor_tensors, load_weights

    extras: dict = {}
    for kind, source in (("synchformer", synchformer), ("rawnet3", rawnet3)):
        if source is None:
            continue
        weights = load_weights(source) if isinstance(source, (str, Path)) else source
        renamed = extractor_tensors(kind, weights)
        if not renamed:
            raise VSSFlowError(f"--{kind} {source}: no {kind} weights found in it; expected "
                               f"{'vfeat_extractor.*' if kind == 'synchformer' else 'RawNet3 (conv1.*, layer1.*, fc6.*)'} tensors")
        _check_extractor(kind, renamed, source)
        extras.update(renamed)
    return extras


def _check_extractor(kind: str, renamed: dict, source) -> None:
    """Build the extractor from ``renamed`` (strict keys) or raise a VSSFlowError naming ``source``."""
    from vssflow_core.features.official.extractors import extractor_model

    try:  # one head for Synchformer: the head split does not change any shape
        extractor_model(kind, renamed, heads=1 if kind == "synchformer" else None)
    except VSSFlowError as e:
        raise VSSFlowError(f"--{kind} {source}: the weights do not form a {kind} extractor: {e}") from None


def _check_frozen(config, frozen: dict, source) -> None:
    """Build the audio codec (``vae.*``, ``vocoder.*``) and, when present, the CLIP visual tower
    (``image_encoder.visual.*``) from a checkpoint's frozen tensors, so a file that could not run is
    refused before it is written."""
    from vssflow_core.audio.codec import build_codec
    from vssflow_core.features.official.extractors import extractor_model

    parts = [("the audio codec (vae.*, vocoder.*)", lambda: build_codec(config.codec, frozen))]
    if any(k.startswith("image_encoder.visual.") for k in frozen):
        parts.append(("the CLIP visual tower (image_encoder.visual.*)", lambda: extractor_model("clip", frozen)))
    for what, build in parts:
        try:
            build()
        except (VSSFlowError, KeyError, IndexError, ValueError, RuntimeError) as e:
            raise VSSFlowError(f"{source}: its tensors do not form {what}: {str(e)[:300]}; convert a complete official "
                               "VSSFlow checkpoint") from None


def convert_checkpoint(ckpt_path, out_path, attention_head_dim: int = 64, synchformer=None, rawnet3=None) -> Path:
    """Convert an official Lightning ``.ckpt`` into our model file (safetensors).

    The file holds the DiT and condition heads under their official keys, the frozen ``vae.*``,
    ``vocoder.*`` and ``image_encoder.*`` tensors as extra tensors, optionally the Synchformer and
    RawNet3 extractor weights (``synchformer``/``rawnet3``: weights file paths, see
    :func:`extractor_extras`), and metadata (config, source file names and sha256). Everything is
    read and checked before anything is written. Refuses to overwrite ``out_path``. Returns the
    written path.
    """
    from vssflow_core.model.checkpoint import save_model_file

    out_path = Path(out_path)
    if out_path.suffix != ".safetensors":
        raise VSSFlowError(f"output {out_path}: name the model file *.safetensors (the ComfyUI loader and --model "
                           "list only those)")
    if out_path.exists():
        raise VSSFlowError(f"output {out_path} already exists; choose another name")
    for kind, source in (("synchformer", synchformer), ("rawnet3", rawnet3)):  # fail before the slow part
        if isinstance(source, (str, Path)) and not Path(source).is_file():
            raise VSSFlowError(f"--{kind} {source}: file does not exist")
    state = read_checkpoint(ckpt_path)
    model = load_official(state, attention_head_dim)
    _, frozen = split_state_dict(state)
    _check_frozen(model.config, frozen, ckpt_path)
    frozen.update(extractor_extras(synchformer, rawnet3))
    meta = {"source_file": Path(ckpt_path).name, "source_sha256": _sha256(ckpt_path),
            "source_format": "vssflow-lightning", "attention_head_dim": str(attention_head_dim)}
    for kind, source in (("synchformer", synchformer), ("rawnet3", rawnet3)):
        if isinstance(source, (str, Path)):
            meta[f"{kind}_file"] = Path(source).name
            meta[f"{kind}_sha256"] = _sha256(source)
    return save_model_file(out_path, model, extra_tensors=frozen, metadata=meta)


def add_convert_arguments(parser) -> None:
    """Arguments of ``python -m vssflow_core convert``."""
    parser.add_argument("checkpoint", help="official VSSFlow Lightning .ckpt (or .safetensors state_dict)")
    parser.add_argument("output", help="output .safetensors model file (must not exist)")
    parser.add_argument("--attention-head-dim", type=int, default=64,
                        help="head width of the DiT (64 for the released models; the weights cannot tell)")
    parser.add_argument("--synchformer", metavar="PATH", default=None,
                        help="also store the Synchformer visual extractor (synchformer_state_dict.pth) in the output")
    parser.add_argument("--rawnet3", metavar="PATH", default=None,
                        help="also store the RawNet3 speaker extractor (RawNet3 model.pt) in the output")


def run_convert(args) -> int:
    """Run the converter CLI; prints a one-line summary. Returns the exit code."""
    out = convert_checkpoint(args.checkpoint, args.output, args.attention_head_dim,
                             synchformer=getattr(args, "synchformer", None), rawnet3=getattr(args, "rawnet3", None))
    from vssflow_core.model.checkpoint import read_metadata

    meta = read_metadata(out)
    added = [k for k in ("synchformer", "rawnet3") if f"{k}_file" in meta]
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB), config {ModelConfig.from_json(meta['config']).name}"
          + (f", extractors: clip, {', '.join(added)}" if added else ""))
    return 0
