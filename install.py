"""Install the pack's dependencies into the running Python (ComfyUI-Manager runs this file).

`requirements.txt` holds the ordinary dependencies; `requirements-nodeps.txt` lists packages whose
PyPI metadata would downgrade numpy/torch, so they are installed with ``--no-deps``.
"""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def pip_install(*args: str) -> None:
    subprocess.check_call([sys.executable, "-m", "pip", "install", *args])


if __name__ == "__main__":
    pip_install("-r", str(HERE / "requirements.txt"))
    pip_install("--no-deps", "-r", str(HERE / "requirements-nodeps.txt"))
