"""Training and evaluation of VSSFlow models on synthetic data (``train`` and ``eval`` commands)."""
