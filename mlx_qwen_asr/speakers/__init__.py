"""Who spoke when: speaker diarization in MLX, with its networks and weights shipped here.

segmentation.py: local speakers per 10 s window (pyannote segmentation-3.0's network);
embedding.py and fbank.py: a voice print per speech segment (3D-Speaker's CAM++);
pipeline.py: audio of any length -> speaker turns (clustering.py: global speakers);
attach.py: speakers onto a transcription's segments and words.
"""
