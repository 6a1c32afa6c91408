"""The audio encoder over a growing clip, reusing what did not change: the output of each
completed 8 s window, and in the open window the conv stem of each completed 1 s chunk.

Windows attend only within themselves, so a window whose mel frames are unchanged has an
unchanged output; the mel is compared rather than assumed, which also covers the
utterance-global `max - 8` clamp moving. Streaming uses it for every step.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np

from ..model.encoder import AudioEncoder, audio_token_count, stem_chunk_width


class EncoderWindowCache:
    """Audio embeddings of a growing clip, reusing completed windows and 1 s chunks."""

    def __init__(self, encoder: AudioEncoder):
        self.encoder = encoder
        config = encoder.config
        self.chunk = config.chunk_frames
        self.window_frames = config.chunk_frames * config.chunks_per_window
        self.windows: list[tuple[np.ndarray, mx.array]] = []   # (mel frames, output) of full windows
        self.chunks: dict[int, tuple[np.ndarray, mx.array]] = {}  # tail-window chunk index -> (mel, stem)

    def reset(self) -> None:
        self.windows, self.chunks = [], {}

    def __call__(self, mel: mx.array) -> tuple[mx.array, int]:
        """[n_mels, T] mel of the whole clip -> (embeddings [N, D], leading tokens unchanged
        since the previous call)."""
        frames = mel.shape[1]
        mel_np = np.array(mel)
        full = frames // self.window_frames
        outputs, stable, still_stable = [], 0, True
        for w in range(full):
            window_mel = mel_np[:, w * self.window_frames:(w + 1) * self.window_frames]
            if w < len(self.windows) and np.array_equal(self.windows[w][0], window_mel):
                output = self.windows[w][1]
                if still_stable:
                    stable += output.shape[0]
            else:
                still_stable = False
                output = self._encode(mel[:, w * self.window_frames:(w + 1) * self.window_frames],
                                      several_chunks=True, first_chunk=w * self.window_frames // self.chunk)
                del self.windows[w:]
                self.windows.append((window_mel, output))
            outputs.append(output)
        del self.windows[full:]
        tail = frames - full * self.window_frames
        if tail:
            start = full * self.window_frames
            outputs.append(self._encode(mel[:, start:], several_chunks=frames > self.chunk,
                                        first_chunk=start // self.chunk, cache_chunks=True))
        embeddings = mx.concatenate(outputs, axis=0) if len(outputs) > 1 else outputs[0]
        return embeddings, stable

    def _encode(self, mel: mx.array, several_chunks: bool, first_chunk: int, cache_chunks: bool = False) -> mx.array:
        """One window: stem per 1 s chunk (cached ones reused), then the transformer.
        `several_chunks`: the whole clip has more than one chunk (the stem's tail rule)."""
        frames = mel.shape[1]
        mel = mel.astype(self.encoder.conv2d1.weight.dtype)
        count = -(-frames // self.chunk)
        stems: list[mx.array | None] = [None] * count
        todo = []
        for c in range(count):
            piece = mel[:, c * self.chunk:(c + 1) * self.chunk]
            complete = piece.shape[1] == self.chunk
            key = first_chunk + c
            if cache_chunks and complete and key in self.chunks:
                cached_mel, stem = self.chunks[key]
                if np.array_equal(cached_mel, np.array(piece)):
                    stems[c] = stem
                    continue
            todo.append(c)
        if todo:
            width = stem_chunk_width(frames, self.chunk, several_chunks or count > 1)
            batch = [mx.pad(mel[:, c * self.chunk:(c + 1) * self.chunk],
                            [(0, 0), (0, width - min(self.chunk, frames - c * self.chunk))]) for c in todo]
            computed = self.encoder.conv_stem(mx.concatenate(batch, axis=1))
            for i, c in enumerate(todo):
                stems[c] = computed[i]
                if cache_chunks and (c + 1) * self.chunk <= frames:
                    self.chunks[first_chunk + c] = (np.array(mel[:, c * self.chunk:(c + 1) * self.chunk]), computed[i])
        if cache_chunks:
            for key in [k for k in self.chunks if k < first_chunk or k >= first_chunk + count]:
                del self.chunks[key]
        tokens = mx.concatenate(stems, axis=0)[:audio_token_count(frames, self.chunk)]
        return self.encoder.transform(tokens, tokens.shape[0])
