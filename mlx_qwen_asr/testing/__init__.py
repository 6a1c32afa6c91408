"""Test support: random and compact checkpoints, the official engine as a reference, parity
figures, word error rate and synthetic speech.

Used by the tests, benchmarks and fixture trainers; the transcription runtime never imports
it (tests/test_layout.py checks). Some modules need the `test` extra (torch, qwen-asr).
"""
