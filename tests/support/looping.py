"""A model that loops on any audio, for the repetition guard and loop-recovery tests."""

import mlx.core as mx


def always_token(model, monkeypatch, token=5):
    """Make the model's head prefer one token whatever it hears: a loop, on any audio."""
    vocab = model.config.text.vocab_size
    favourite = mx.arange(vocab) == token

    def logits(hidden):
        return mx.broadcast_to(favourite.astype(hidden.dtype), hidden.shape[:-1] + (vocab,))

    monkeypatch.setattr(model.network, "logits", logits)
