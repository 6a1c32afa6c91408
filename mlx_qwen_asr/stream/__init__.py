"""Streaming transcription: the session (schedule, commit, close), its text and regions,
the encoder-window cache."""
