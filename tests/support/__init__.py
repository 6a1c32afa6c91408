"""Helpers the tests share: audio, the held-out set, stand-ins, a server started for real."""
