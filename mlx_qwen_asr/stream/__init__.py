"""Streaming transcription: the session (schedule, commit, close), its step decoder, its
text and regions, the encoder-window cache."""
