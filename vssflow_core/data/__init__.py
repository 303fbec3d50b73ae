"""Synthetic audio-visual training data (deterministic by seed, nothing downloaded at run time).

* ``generate``  the ``make-data`` command: manifest.jsonl + clips/*.safetensors (+ mp4s).
* ``clips``     one clip from (seed, index): speech, sound scene or both; render at any size.
* ``speech``    piper TTS (joe voice, CC0) with phoneme timings -> ARPAbet segments.
* ``faces``     the talking face (warped ``skimage.data.astronaut()``) the lip detector reads.
* ``scenes``    visible sound events; ``sfx`` their sounds; ``canvas`` drawing helpers.
* ``sentences`` random everyday sentences; ``samples`` the videos in ``example_workflows/input/``.
"""
