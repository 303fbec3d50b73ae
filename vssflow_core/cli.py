"""``python -m vssflow_core COMMAND ...``: generate, convert, make-data, make-samples, pack, train,
eval, eval-compare, diagnose, placement-check, train-lipread, train-events, bench.

Each command other than ``generate`` lives in its own module, imported only when that command runs
(``add_arguments(parser)`` then ``run(args)``). Bad input exits with status 2 and one line on stderr.
This is the one command line of the package: the modules have no ``__main__`` of their own (except
``bench.gpu``, the device machine's script with options of its own), so every command gets the same
one-line errors and SIGTERM clean-up. ``args.command_line`` holds the command's own words, for the
records a command writes (the trainer's ``args.json``).
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
import threading
import warnings

from vssflow_core.config import PRECISIONS, SOLVERS, is_guidance_rescale

COMMANDS = {  # name: (module, add-arguments function, run function, help)
    "generate": ("vssflow_core.cli", "add_generate_arguments", "run_generate",
                 "generate the sound (and speech) of a video and write the video with it"),
    "convert": ("vssflow_core.official", "add_convert_arguments", "run_convert",
                "convert an official VSSFlow checkpoint to a model file"),
    "make-data": ("vssflow_core.data.generate", "add_arguments", "run", "write a synthetic training set"),
    "make-samples": ("vssflow_core.data.samples", "add_arguments", "run",
                     "write the sample videos of example_workflows/input (same frames and sound every run)"),
    "pack": ("vssflow_core.train.pack", "add_arguments", "run", "pack a training set small for a remote (GPU) machine"),
    "train": ("vssflow_core.train.trainer", "add_arguments", "run", "train a model (resumable)"),
    "eval": ("vssflow_core.train.evaluate", "add_arguments", "run", "evaluate a model on fresh synthetic clips"),
    "eval-compare": ("vssflow_core.train.compare", "add_arguments", "run",
                     "confidence intervals of eval's metrics, and whether model / settings B beats A"),
    "diagnose": ("vssflow_core.train.diagnose", "add_arguments", "run",
                 "measure how much a model leans on each condition (held-out packed clips)"),
    "placement-check": ("vssflow_core.train.placement", "add_arguments", "run",
                        "how well phonemes are placed against the synthetic speech's true timings"),
    "train-lipread": ("vssflow_core.train.lipread", "add_arguments", "run",
                      "train the lip reader that places phonemes (phone placement 'lipread')"),
    "train-events": ("vssflow_core.train.events", "add_arguments", "run",
                     "train the visual event detector (the embedded model's 'event' condition)"),
    "bench": ("vssflow_core.bench", "add_arguments", "run", "measure speed and memory"),
}


class UsageError(Exception):
    """Bad command line or input: reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse prints usage + message on two lines; we want one
        raise UsageError(f"{self.prog}: {message}")


def add_generate_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``python -m vssflow_core generate`` (the README's main command)."""
    p.add_argument("video", help="input video file")
    p.add_argument("--out", required=True, help="output video file (.mp4); must not exist")
    p.add_argument("--text", help="transcript to speak (omit for sound effects only)")
    p.add_argument("--speech-start", type=float, default=0.0, help="speech start (s); 0 and 0 = from the lips")
    p.add_argument("--speech-end", type=float, default=0.0, help="speech end (s); 0 and 0 = from the lips")
    p.add_argument("--voice", help="reference voice recording (wav, flac, ...)")
    p.add_argument("--model", default="embedded", help="'embedded' (default) or a model file path")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--steps", type=int, default=None, help="solver steps per window (default: the model's)")
    p.add_argument("--guidance", type=float, default=None,
                   help="guidance scale, 1..30 (1 = none; default or 0: the model's)")
    p.add_argument("--guidance-rescale", type=float, default=None,
                   help="guidance rescale, 0..1 (0 = plain guidance; default: the model's, for the embedded model "
                        "0.7 for sound effects and 0 for speech)")
    p.add_argument("--solver", choices=SOLVERS, default=None,
                   help="ODE solver (default: the model's); dopri5 is the official adaptive solver: it ignores "
                        "--steps and takes about 10x longer")
    p.add_argument("--mode", choices=["replace", "mix"], default="replace",
                   help="replace the video's sound or mix with it")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--precision", default="auto", choices=PRECISIONS)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")


def run_generate(args) -> int:
    """Generate the audio of ``args.video`` and write the video with it to ``args.out`` (never
    overwritten; cheap checks before torch is imported). Returns the exit code."""
    from pathlib import Path

    from vssflow_core.errors import VSSFlowError

    out, video = Path(args.out), Path(args.video)  # cheap checks first: no torch import for a typo
    if video.is_dir():
        raise VSSFlowError(f"input video {video} is a folder; give a video file")
    if not video.is_file():
        raise VSSFlowError(f"input video not found: {video}")
    if out.is_dir():
        raise VSSFlowError(f"--out {out} is a folder; give a file name, e.g. {out / 'out.mp4'}")
    if out.exists() or out.is_symlink():
        raise VSSFlowError(f"output file already exists: {out}; choose another --out (nothing is overwritten)")
    if out.suffix.lower() not in (".mp4", ".mov", ".mkv"):
        raise VSSFlowError(f"--out must end in .mp4 (or .mov/.mkv), got {out.name!r}")
    if not out.parent.is_dir():
        raise VSSFlowError(f"output folder does not exist: {out.parent}; create it first")
    if args.threads < 0:
        raise VSSFlowError(f"--threads must be 0 (torch's default) or more, got {args.threads}")
    if args.guidance_rescale is not None and not is_guidance_rescale(args.guidance_rescale):
        raise VSSFlowError(f"--guidance-rescale must be from 0 (plain guidance) to 1, got {args.guidance_rescale}")
    if args.text is None:
        ignored = [flag for flag, given in (("--speech-start", args.speech_start), ("--speech-end", args.speech_end),
                                            ("--voice", args.voice)) if given]
        if ignored:
            raise VSSFlowError(f"{' and '.join(ignored)} only work with speech: add --text with the words to speak, "
                               "or leave them out for sound effects only")

    import torch

    from vssflow_core.pipeline import generate_to_file, load_bundle

    if args.threads:
        torch.set_num_threads(args.threads)
    voice = None
    if args.voice:
        from vssflow_core.features.speaker import read_voice_file

        voice = read_voice_file(args.voice, "--voice")
    bundle = load_bundle(args.model, device=args.device, dtype=args.precision)
    with _progress() as callback:
        generate_to_file(bundle, video, out, mode=args.mode, callback=callback, text=args.text,
                         speech_start_s=args.speech_start, speech_end_s=args.speech_end, voice=voice,
                         seed=args.seed, steps=args.steps, guidance=args.guidance or None, solver=args.solver,
                         guidance_rescale=args.guidance_rescale)
    print(out)
    return 0


class _progress:
    """A tqdm bar on a terminal (stderr), nothing otherwise; yields ``callback(done, total)``."""

    def __enter__(self):
        self.bar = None
        if not sys.stderr.isatty():
            return None
        try:
            from tqdm import tqdm
        except ImportError:
            return None

        def callback(done, total):
            if self.bar is None:
                self.bar = tqdm(total=total, unit="step", desc="sampling", file=sys.stderr)
            self.bar.total = total
            self.bar.update(done - self.bar.n)

        return callback

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()


def _print_help(file=sys.stdout) -> None:
    print("usage: python -m vssflow_core COMMAND [options]   (COMMAND --help for its options)\n", file=file)
    for name, (_, _, _, text) in COMMANDS.items():
        print(f"  {name:15s} {text}", file=file)


class _Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``timeout``, job schedulers), raised so that temporary files are removed."""


def _on_sigterm(signum, frame):
    raise _Terminated()


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    print(f"warning: {' '.join(str(message).split())}", file=file or sys.stderr)


@contextlib.contextmanager
def _command_line_session():
    """For the length of one command: SIGTERM unwinds like Ctrl-C (``finally`` blocks delete
    temporary files), warnings print as one line, and mediapipe's native INFO logs stay quiet."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if in_main else None
    shown = warnings.showwarning
    warnings.showwarning = _one_line_warning
    try:
        yield
    finally:
        warnings.showwarning = shown
        if in_main:
            signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status (0 ok, 2 bad input, 130 interrupted, 143 terminated)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        _print_help(sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    with _command_line_session():
        return _run_command(argv[0], argv[1:])


def _run_command(name: str, rest: list[str]) -> int:
    from vssflow_core.errors import VSSFlowError

    try:
        if name not in COMMANDS:
            raise UsageError(f"unknown command {name!r}; commands: {', '.join(COMMANDS)}")
        module_name, add_name, run_name, text = COMMANDS[name]
        try:
            module = importlib.import_module(module_name)
            add, run = getattr(module, add_name), getattr(module, run_name)
        except (ImportError, AttributeError) as e:
            raise UsageError(f"the '{name}' command is not available: {module_name}.{add_name}/{run_name} could "
                             f"not be loaded ({e})") from None
        parser = _Parser(prog=f"python -m vssflow_core {name}", description=text)
        add(parser)
        args = parser.parse_args(rest)
        args.command_line = [name, *rest]
        rc = run(args)
        return int(rc or 0)
    except (UsageError, VSSFlowError) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except OSError as e:  # a file system refusal (missing, not allowed, full): the OS's words and the path
        from vssflow_core.media.files import NO_ROOM, write_failed

        message = str(write_failed(e.filename or "a file", e)) if e.errno in NO_ROOM else str(e)
        print(f"error: {' '.join(message.split())}", file=sys.stderr)
        return 1
    except _Terminated:
        print("error: terminated", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
