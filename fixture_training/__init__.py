"""Training the tiny trained fixtures in tests/fixtures (not part of the mlx_qwen_asr package).

    python -m fixture_training.model      # tiny_asr.npz and the held-out set
    python -m fixture_training.aligner    # tiny_aligner.npz, from the ASR fixture's run state

The recipes and their history: docs/fixtures.md. They train the official PyTorch classes
(PyPI qwen-asr, torch), imported only inside the functions that need them.
"""
