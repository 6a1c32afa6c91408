"""Audio in: reading files and arrays, resampling, reading block by block, cutting at
quiet moments, voice activity, log-mel features. Imports nothing above itself."""
