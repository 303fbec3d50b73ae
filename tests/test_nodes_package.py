"""The pack's root __init__ (ComfyUI entry point) and the sample clips the loader offers."""
import importlib.util
import sys
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]


def _import_pack(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "__init__.py", submodule_search_locations=[str(REPO)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[name]
    return module


def test_pack_imports_outside_comfyui_with_six_nodes():
    pack = _import_pack("vssflow_pack_under_test")
    assert [n.__name__ for n in pack.NODES] == ["VSSFlowModelLoader", "VSSFlowLoadVideo",
                                                "VSSFlowExtractLipFeatures", "VSSFlowTextCondition",
                                                "VSSFlowSampler", "VSSFlowMuxAudio"]
    assert not hasattr(pack, "comfy_entrypoint")  # only defined inside ComfyUI
    assert "torch" not in vars(pack)


def test_pack_import_loads_only_the_light_library_modules():
    # ComfyUI imports the pack at start: no media I/O modules (and no PyAV) until a node runs
    import ast
    import subprocess

    code = ("import importlib.util, sys; spec = importlib.util.spec_from_file_location('pack', sys.argv[1], "
            "submodule_search_locations=[sys.argv[2]]); m = importlib.util.module_from_spec(spec); "
            "sys.modules['pack'] = m; spec.loader.exec_module(m); "
            "print(len(m.NODES), sorted(k for k in sys.modules if k.startswith(('vssflow_core', 'av'))))")
    out = subprocess.run([sys.executable, "-c", code, str(REPO / "__init__.py"), str(REPO)], capture_output=True,
                         text=True, check=True, cwd=REPO.parent).stdout.split(" ", 1)
    assert out[0] == "6"
    assert ast.literal_eval(out[1]) == ["vssflow_core", "vssflow_core.config", "vssflow_core.errors"]


def test_pack_import_never_raises(monkeypatch, caplog):
    """A broken library import is logged with the fix; ComfyUI's start goes on."""
    monkeypatch.setitem(sys.modules, "vssflow_core", None)  # makes `import vssflow_core` fail
    pack = _import_pack("vssflow_pack_broken")
    assert pack.NODES == []
    assert "could not be loaded" in caplog.text and "install.py" in caplog.text


def test_sample_clips_are_copied_once_and_listed(tmp_path, monkeypatch):
    from nodes import _comfy, video

    samples = tmp_path / "samples"
    samples.mkdir()
    (samples / "a.mp4").write_bytes(b"sample a")
    (samples / "notes.txt").write_text("not a video")
    input_dir = tmp_path / "input"
    monkeypatch.setattr(video, "PACK_SAMPLES", samples)
    monkeypatch.setattr(_comfy, "FALLBACK_DIRS", dict(_comfy.FALLBACK_DIRS, input=input_dir))
    (input_dir).mkdir()
    (input_dir / "mine.mov").write_bytes(b"user file")
    assert video.input_videos() == ["a.mp4", "mine.mov"]
    (input_dir / "a.mp4").write_bytes(b"user edited")
    video.install_samples()
    assert (input_dir / "a.mp4").read_bytes() == b"user edited"  # never overwritten
    assert not (input_dir / "notes.txt").exists()
    (input_dir / "a.mp4").unlink()  # the user deletes the sample: it stays deleted
    (samples / "b.mp4").write_bytes(b"sample b")  # a sample added by a later version is copied
    assert video.input_videos() == ["b.mp4", "mine.mov"]
    assert (input_dir / video.SAMPLES_MARKER).read_text().split() == ["a.mp4", "b.mp4"]
    outside = tmp_path / "elsewhere.mp4"
    outside.write_bytes(b"outside")
    (input_dir / "link.mp4").symlink_to(outside)  # loading refuses it, so the list leaves it out
    assert video.input_videos() == ["b.mp4", "mine.mov"]


def test_an_unreadable_input_folder_gives_an_empty_video_list(tmp_path, monkeypatch):
    from nodes import _comfy, video

    monkeypatch.setattr(_comfy, "FALLBACK_DIRS", dict(_comfy.FALLBACK_DIRS, input=tmp_path / "not_a_folder"))
    (tmp_path / "not_a_folder").write_text("a file where the folder should be")
    assert video.input_videos() == []
