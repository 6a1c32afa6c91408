"""Test support: random and compact checkpoints, the official engine as a reference, parity
figures, word error rate and synthetic speech.

Used by the tests, benchmarks and fixture trainers; the transcription runtime never imports
it (tests/test_layout.py checks). The official engine runs out of process, in an
environment of its own (official_env.py).
"""
