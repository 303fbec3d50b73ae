"""The 6-d lip feature space: raw tracks from geometry, per-clip normalisation, phoneme visemes."""

import numpy as np
import pytest

from vssflow_core.errors import VSSFlowError
from vssflow_core.features.lip_space import (
    LIP_DIM,
    LIP_FEATURE_NAMES,
    lip_features_from_openings,
    normalise_lip_track,
    openings_from_phoneme_timings,
)


def _track(scale=1.0, offset=0.0, fps=25.0):
    t = np.arange(50) / fps
    inner = offset + scale * (0.07 + 0.3 * np.clip(np.sin(2 * np.pi * 2.0 * t), 0, None))
    outer = offset + scale * (0.25 + 0.3 * np.clip(np.sin(2 * np.pi * 2.0 * t), 0, None))
    width = scale * np.full(50, 0.95)
    return lip_features_from_openings(inner, outer, width, fps=fps)


def test_raw_track_columns_and_velocity():
    raw = _track()
    assert raw.shape == (50, LIP_DIM) and raw.dtype == np.float32
    assert LIP_FEATURE_NAMES[4] == "velocity"
    np.testing.assert_allclose(raw[:, 3], raw[:, 0] / raw[:, 2], rtol=1e-5)
    # velocity is d(inner)/dt per second: a linear ramp of 0.01 per frame at 25 fps = 0.25 /s
    ramp = lip_features_from_openings(np.arange(10) * 0.01, np.ones(10) * 0.3, np.ones(10), fps=25.0)
    np.testing.assert_allclose(ramp[:, 4], 0.25, rtol=1e-5)
    assert np.all(raw[:, 5] == 1.0)


def test_found_mask_zeroes_rows_in_raw_and_normalised():
    found = np.ones(50, bool)
    found[10:20] = False
    raw = lip_features_from_openings(np.linspace(0.05, 0.4, 50), np.linspace(0.2, 0.6, 50), np.ones(50), found=found)
    assert np.all(raw[10:20] == 0)
    norm = normalise_lip_track(raw)
    assert np.all(norm[10:20] == 0) and np.all(norm[~found, 5] == 0) and np.all(norm[found, 5] == 1)
    assert np.all(normalise_lip_track(np.zeros((7, 6))) == 0)
    assert normalise_lip_track(np.zeros((0, 6))).shape == (0, 6)


def test_normalisation_cancels_face_scale_and_detector_offset():
    a = normalise_lip_track(_track())
    b = normalise_lip_track(_track(scale=1.3))  # other face proportions / scale calibration
    c = normalise_lip_track(_track(offset=0.05))  # a detector whose closed mouth reads wider
    np.testing.assert_allclose(a[:, [0, 1, 3]], b[:, [0, 1, 3]], atol=0.08)
    np.testing.assert_allclose(a[:, :2], c[:, :2], atol=1e-5)
    # closed mouth ~0, widest opening ~1
    assert abs(np.percentile(a[:, 0], 5)) < 0.05 and 0.8 < a[:, 0].max() < 1.2


def test_still_mouth_stays_small_after_normalisation():
    rng = np.random.default_rng(0)
    raw = lip_features_from_openings(0.1 + rng.normal(0, 0.003, 50), 0.3 + rng.normal(0, 0.003, 50), np.ones(50))
    assert np.abs(normalise_lip_track(raw)[:, :4]).max() < 0.2


def test_bad_shape_is_a_clear_error():
    with pytest.raises(VSSFlowError, match=r"\[T, 6\]"):
        normalise_lip_track(np.zeros((10, 5)))
    with pytest.raises(VSSFlowError, match="length"):
        lip_features_from_openings(np.zeros(5), np.zeros(4), np.zeros(5))


def test_phoneme_timings_close_on_bilabials_and_open_on_vowels():
    segs = [("<blank>", 0.0, 0.3), ("M", 0.3, 0.42), ("AA1", 0.42, 0.7), ("P", 0.7, 0.82), ("<blank>", 0.82, 1.2)]
    inner, outer, width = openings_from_phoneme_timings(segs, 1.2, fps=25.0)
    assert inner.shape == (30,)
    t = np.arange(30) / 25
    vowel = inner[(t >= 0.46) & (t < 0.66)].max()
    assert vowel > 0.3 and inner[t < 0.2].max() < 0.12 and inner[t > 1.0].max() < 0.12
    assert np.all(outer > inner) and np.all((width > 0.6) & (width < 1.2))
    # the lips meet on the bilabial between two vowels ("a-pa"), as real mouths do
    segs2 = [("AA1", 0.0, 0.3), ("P", 0.3, 0.38), ("AA1", 0.38, 0.7)]
    inner2, _, _ = openings_from_phoneme_timings(segs2, 0.7, fps=25.0)
    t2 = np.arange(len(inner2)) / 25
    assert inner2[(t2 >= 0.3) & (t2 < 0.38)].max() < 0.1 and inner2[t2 < 0.25].max() > 0.3
