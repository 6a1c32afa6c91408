"""The ways in: command line, folder runs, Ray, microphone, live output, dictation,
setup checks, the server. Nothing in the package imports this folder (the public API in
`mlx_qwen_asr/__init__.py` re-exports `transcribe_folder`)."""
