"""The shipped model file (vssflow_core/weights/embedded.safetensors) loads and does its two jobs.

Every other test samples from tiny random models; these run the real weights on clips that the
synthetic-data generator draws (seed 777, never used in training or evaluation), with the same
metrics as ``eval``, at thresholds that random or broken weights cannot reach and that leave room
for small numeric differences between machines (measured here: 10/10 and 5/5 events on time,
speech 650-12,000x louder inside its window than outside, WER 0.29-0.44 on the two faces).
"""

import warnings

import numpy as np
import pytest

pytest.importorskip("librosa")

from vssflow_core.data.clips import build_clip, render_frames  # noqa: E402
from vssflow_core.data.speech import SAMPLE_RATE as SPEECH_RATE  # noqa: E402
from vssflow_core.pipeline import generate, load_bundle  # noqa: E402

SEED = 777  # a make-data seed of its own
DURATION_S = 4.0


@pytest.fixture(scope="module")
def shipped():
    return load_bundle("embedded")


def _generate(bundle, frames, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no face found" and the like
        audio, sample_rate = generate(bundle, frames=frames, fps=25.0, seed=0, **kwargs)
    assert audio.shape == (1, 1, int(DURATION_S * sample_rate)) and bool(audio.isfinite().all())
    return audio[0, 0].numpy(), sample_rate


def test_the_shipped_file_loads_whole_as_the_embedded_preset(shipped):
    from safetensors.torch import load_file

    from vssflow_core.embedded import EMBEDDED_WEIGHTS, embedded_config

    assert shipped.config.dit == embedded_config().dit and shipped.config.prediction == "x"
    stored, state = load_file(str(EMBEDDED_WEIGHTS)), shipped.model.state_dict()
    assert set(stored) == set(state)  # every tensor of the model comes from the file
    assert all(state[k].to(v.dtype).equal(v) for k, v in stored.items())


@pytest.mark.parametrize("index", [0, 2])
def test_sound_comes_on_the_frames_where_something_visible_happens(shipped, index):
    from vssflow_core.train.metrics import detect_onsets, onset_counts

    clip = build_clip(SEED, index, "sfx", duration_s=DURATION_S)
    wave, sample_rate = _generate(shipped, render_frames(clip, 224))
    events = [e["time_s"] for e in clip.events]
    matched, n_events, n_onsets = onset_counts(events, detect_onsets(wave, sample_rate), 0.05)
    assert n_events >= 5 and matched >= 0.8 * n_events and matched >= 0.6 * n_onsets, (events, n_onsets)


def test_speech_stays_inside_its_window(shipped):
    """No face, so the transcript is spread over the window given: 1-3 s of a 4 s grey video."""
    frames = np.full((int(DURATION_S * 25), 64, 64, 3), 128, np.uint8)
    wave, sample_rate = _generate(shipped, frames, text="Please find the clean cookie in the garden.",
                                  speech_start_s=1.0, speech_end_s=3.0)
    inside = np.sqrt(np.mean(wave[int(1.1 * sample_rate):int(2.9 * sample_rate)] ** 2))
    outside = np.sqrt(np.mean(np.concatenate([wave[:int(0.8 * sample_rate)], wave[int(3.3 * sample_rate):]]) ** 2))
    assert inside > 0.02 and inside > 30 * outside, (inside, outside)


def test_speech_from_a_talking_face_is_understood_by_whisper(shipped):
    """Lips measured from the rendered face (mediapipe), phonemes placed by the lip reader, Whisper
    tiny.en as in ``eval``; the TTS's own speech checks the recogniser itself."""
    pytest.importorskip("mediapipe")
    pytest.importorskip("faster_whisper")
    from vssflow_core.train.metrics import Transcriber, word_error_rate

    transcribe = Transcriber()
    references, generated, real = [], [], []
    for index in (1, 2):
        clip = build_clip(SEED, index, "speech", duration_s=DURATION_S)
        wave, sample_rate = _generate(shipped, render_frames(clip, 224), text=clip.transcript,
                                      speech_start_s=clip.speech_start_s, speech_end_s=clip.speech_end_s)
        references.append(clip.transcript)
        generated.append(transcribe(wave, sample_rate))
        real.append(transcribe(clip.wave, SPEECH_RATE))
    assert word_error_rate(references, real) < 0.2, real
    assert word_error_rate(references, generated) < 0.7, generated
