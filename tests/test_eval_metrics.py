"""Evaluation metrics on signals with known answers."""
import numpy as np
import pytest

from vssflow_core.train import metrics as M

SR = 22050


def test_text_normalisation_and_wer():
    pytest.importorskip("jiwer")
    assert M.normalise_text("Hello, World!  It's  fine-tuned.") == "hello world it's fine tuned"
    assert M.word_error_rate(["the cat sat", "a dog"], ["The cat sat.", "a frog"]) == pytest.approx(1 / 5)
    assert np.isnan(M.word_error_rate([""], ["x"]))
    # "tonight" -> "the night": every word wrong, but 3 edits for 7 characters
    assert M.word_error_rate(["tonight"], ["The night."]) == pytest.approx(2.0)
    assert M.edit_counts("tonight", "The night.", "char") == (3, 7)  # so CER (eval's "cer") still moves
    assert M.edit_counts("a dog", "a dog", "char") == (0, 5) and M.edit_counts("", "x", "char") == (0, 0)


def speechy(mouth: np.ndarray, lag: int) -> np.ndarray:
    """Noise whose loudness follows ``mouth`` delayed by ``lag`` frames (25 fps)."""
    env = np.roll(mouth, lag)
    if lag > 0:
        env[:lag] = 0
    hop = SR // 25
    rng = np.random.default_rng(0)
    return (np.repeat(env, hop) * rng.normal(size=len(env) * hop) * 0.3 + 1e-4 * rng.normal(size=len(env) * hop)).astype(np.float32)


@pytest.mark.parametrize("lag", [0, 3, -2])
def test_lip_offset_recovers_lag(lag):
    rng = np.random.default_rng(1)
    mouth = np.clip(np.convolve(rng.random(200), np.ones(5) / 5, mode="same") - 0.4, 0, None)
    mouth[rng.random(200) < 0.3] = 0
    wave = speechy(mouth, lag)
    loud = M.frame_loudness(wave, SR, 200)
    assert loud.shape == (200,)
    assert M.lip_offset_frames(mouth, loud) == lag


def test_lagged_correlation_of_a_delayed_copy():
    rng = np.random.default_rng(2)
    a = np.convolve(rng.normal(size=300), np.ones(4) / 4, mode="same")
    b = np.roll(a, 4)
    c0, lag, best = M.lagged_correlation(a, b, max_lag=10)
    assert lag == 4 and best > 0.95 and c0 < best - 0.2
    assert M.lagged_correlation(a, -a)[0] == pytest.approx(-1.0, abs=1e-6)
    assert M.lagged_correlation(a[:8], b[:8], max_lag=10)[1] in range(-5, 6)  # short tracks: lags that fit


def test_onset_matching_is_a_maximum_matching():
    """Nearest-first matching pairs 0.10 with 0.12 and leaves 0.14 alone; the best matching pairs both."""
    assert M.onset_counts([0.10, 0.14], [0.07, 0.12]) == (2, 2, 2)
    rng = np.random.default_rng(0)
    for _ in range(200):  # against brute force on small random sets
        ref, est = np.round(rng.uniform(0, 0.5, rng.integers(0, 5)), 3), np.round(rng.uniform(0, 0.5, rng.integers(0, 5)), 3)
        assert M.onset_counts(ref, est)[0] == _max_matching(ref, est, 0.05)


def _max_matching(ref, est, tol) -> int:
    """Size of the largest one-to-one matching within ``tol``, by trying every assignment."""
    import itertools

    best = 0
    for k in range(min(len(ref), len(est)), 0, -1):
        for rs in itertools.combinations(range(len(ref)), k):
            for es in itertools.permutations(range(len(est)), k):
                if all(abs(ref[r] - est[e]) <= tol + 1e-9 for r, e in zip(rs, es)):
                    return k
    return best


def test_motion_energy_and_peaks_find_visible_jolts():
    """A still picture that jumps sideways at 0.6 s and 1.4 s (25 fps): two motion peaks, there."""
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, size=(40, 60, 3), dtype=np.uint8)
    shift = np.zeros(50, int)
    shift[15:] += 3
    shift[35:] += 3  # jolts at frames 15 and 35
    frames = np.stack([np.roll(image, s, axis=1) for s in shift])
    frames = np.clip(frames.astype(int) + rng.integers(-2, 3, size=frames.shape), 0, 255).astype(np.uint8)  # sensor noise
    energy = M.motion_energy(frames)
    assert energy.shape == (50,) and energy[0] == 0
    np.testing.assert_allclose(M.motion_peaks(energy, 25.0), [0.6, 1.4])
    assert len(M.motion_peaks(M.motion_energy(frames[:1]), 25.0)) == 0


def test_onset_matching_and_f1():
    assert M.onset_counts([1.0, 2.0, 3.0], [1.04, 2.2, 3.0, 3.01]) == (2, 3, 4)
    assert M.f1_from_counts(2, 3, 4) == pytest.approx(4 / 7)
    assert M.f1_from_counts(0, 0, 0) == 1.0


def test_detected_onsets_of_clicks():
    pytest.importorskip("librosa")
    times = [0.5, 1.2, 2.0, 2.9]
    wave = np.zeros(int(3.5 * SR), np.float32)
    rng = np.random.default_rng(0)
    for t in times:
        i = int(t * SR)
        wave[i: i + 2000] += rng.normal(size=2000).astype(np.float32) * np.exp(-np.arange(2000) / 300)
    hits, n_ref, n_est = M.onset_counts(times, M.detect_onsets(wave, SR))
    assert hits == 4 and M.f1_from_counts(hits, n_ref, n_est) >= 0.85


def test_nearest_centroid_and_frechet():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(20, 8)) + np.eye(8)[0] * 5
    b = rng.normal(size=(20, 8)) + np.eye(8)[1] * 5
    x = np.concatenate([a, b])
    y = ["a"] * 20 + ["b"] * 20
    assert M.nearest_centroid_predict(x, y, x) == y
    assert M.nearest_centroid_predict(x, y, b[:5]) == ["b"] * 5
    same = M.frechet_distance(a[:10], a[10:])
    far = M.frechet_distance(a, b)
    assert same < far and far > 40  # means 5*sqrt(2) apart -> about 50


def test_frechet_distance_equals_the_matrix_square_root_form():
    """The symmetric-eigenvalue trace term is the textbook tr(sqrtm(S1 S2)), on unequal, rank-poor covariances."""
    from scipy import linalg

    rng = np.random.default_rng(1)
    x = rng.normal(size=(12, 40)) * rng.uniform(0.1, 3.0, 40)
    y = rng.normal(size=(15, 40)) + 0.5

    def cov(v):
        c = np.cov(v, rowvar=False)
        return 0.9 * c + 0.1 * np.diag(np.diag(c))

    s1, s2 = cov(x), cov(y)
    textbook = (((x.mean(0) - y.mean(0)) ** 2).sum() + np.trace(s1) + np.trace(s2)
                - 2 * np.trace(np.real(linalg.sqrtm(s1 @ s2))))
    assert M.frechet_distance(x, y) == pytest.approx(textbook, rel=1e-9)


def test_edit_counts_sum_to_the_corpus_rates():
    refs, hyps = ["the cat sat", "a dog", "", "tonight"], ["The cat sat.", "a frog", "x", "The night."]
    words = [M.edit_counts(r, h, "word") for r, h in zip(refs, hyps)]
    assert words == [(0, 3), (1, 2), (0, 0), (2, 1)]
    assert M.rate_from_counts(words) == pytest.approx(3 / 6) == pytest.approx(M.word_error_rate(refs, hyps))
    chars = [M.edit_counts(r, h, "char") for r, h in zip(refs, hyps)]
    assert chars[3] == (3, 7) and M.rate_from_counts(chars) == pytest.approx((0 + 2 + 0 + 3) / (11 + 5 + 0 + 7))
    assert np.isnan(M.rate_from_counts([]))


def test_onset_recall_by_class_counts_each_class_on_its_own():
    """Per event class: the share of its events with a detected onset within 50 ms (a class in two
    clips adds up; a class with no events in the clip is not reported)."""
    from vssflow_core.train.evaluate import onset_recall_by_class

    ev = lambda t, c: {"time_s": t, "class": c}
    items = [
        {"events": [ev(1.0, "bounce"), ev(2.0, "bounce"), ev(3.0, "bell")], "onsets_s": np.array([1.03, 2.2, 3.0])},
        {"events": [ev(0.5, "bounce")], "onsets_s": np.array([0.49])},
        {"events": [], "onsets_s": np.array([4.0])},
    ]
    assert onset_recall_by_class(items) == {"bell": {"recall": 1.0, "events": 1},
                                            "bounce": {"recall": 0.667, "events": 3}}


def test_score_leaves_out_events_past_the_clips_end():
    """score's onset metrics, by class too, count only the events inside the clip (a bell at 9 s in an
    8 s clip is neither missed nor matched)."""
    pytest.importorskip("librosa")
    from vssflow_core.train.evaluate import score

    wave = np.zeros(int(3.5 * SR), np.float32)
    rng = np.random.default_rng(0)
    for t in (0.5, 2.0):
        i = int(t * SR)
        wave[i: i + 2000] += rng.normal(size=2000).astype(np.float32) * np.exp(-np.arange(2000) / 300)
    events = [{"time_s": 0.5, "class": "bounce"}, {"time_s": 2.0, "class": "bell"}, {"time_s": 9.0, "class": "bell"}]
    item = {"row": {"kind": "sfx", "events": events}, "wave": wave, "dur": 3.5, "mouth": None}
    out = score([item], {"onset"}, {}, SR)
    assert item["onset_counts"][:2] == (2, 2) and out["onset_recall"] == 1.0
    assert out["onset_recall_by_class"] == {"bell": {"recall": 1.0, "events": 1}, "bounce": {"recall": 1.0, "events": 1}}


def test_the_sound_embedding_tells_sound_classes_apart():
    """The real aisfx network (not a stand-in): metal strikes lie nearer each other than a metal
    strike and a rattle in its 512-d space, which class accuracy and FD rely on."""
    pytest.importorskip("aisfx")
    from vssflow_core.data import sfx

    embed = M.SfxEmbedder()

    def clip(sound):  # one event in 1 s of silence
        track = np.zeros(sfx.SAMPLE_RATE, np.float32)
        sfx.place(track, sound, 0.2, 0.8)
        return embed(track, sfx.SAMPLE_RATE)

    metal = [clip(sfx.metal_impact(np.random.default_rng(s), 1.0)) for s in (1, 2)]
    rattle = clip(sfx.shake(np.random.default_rng(3), 1.0))
    assert metal[0].shape == (512,) and np.isfinite(metal[0]).all()
    cos = lambda a, b: float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    assert cos(metal[0], metal[1]) > cos(metal[0], rattle) + 0.02
