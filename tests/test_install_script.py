"""install.py: one --no-deps package that has no wheel for this Python does not stop the others."""
import importlib.util
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _install_module():
    spec = importlib.util.spec_from_file_location("vssflow_install", ROOT / "install.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_nodeps_packages_are_the_requirement_lines():
    packages = _install_module().nodeps_packages()
    assert "mediapipe==0.10.21" in packages and all(p and not p.startswith("#") for p in packages)


def test_a_failing_package_is_reported_and_the_rest_installed(monkeypatch, capsys):
    install = _install_module()
    calls = []

    def fake_pip(*args):
        calls.append(args)
        if any(a.startswith("mediapipe") for a in args):
            raise subprocess.CalledProcessError(1, ["pip"])

    monkeypatch.setattr(install, "pip_install", fake_pip)
    assert install.main() == 0
    installed = [a[-1] for a in calls if a[0] == "--no-deps"]
    assert installed == install.nodeps_packages()  # every package tried, mediapipe's failure did not stop them
    assert calls[0][0] == "-r"
    err = capsys.readouterr().err
    assert "could not install mediapipe==0.10.21" in err and "lip features" in err
