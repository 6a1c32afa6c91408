"""Speaker diarization: who spoke when (pipeline.py), with networks shipped in the package."""
