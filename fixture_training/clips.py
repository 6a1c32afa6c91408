"""Training batches for the ASR fixture: clips in the training voices, their official
inputs, and per audio token the word spoken there (from the known word times)."""

from __future__ import annotations

import numpy as np

from .official import AUDIO_PAD, ENDOFTEXT, TOKENS_PER_CHUNK, TOKENS_PER_WINDOW, base_prompt, target_text
from .speech import SR, WORDS, add_noise, compose, random_sentence, sentence_text, silence



def token_labels(n_tokens: int, spans: list[tuple[float, float]]):
    """Per audio token: index of the word spoken there (-1: none) and, for each word, the
    audio tokens it covers. Token i of 1 s chunk c covers mel frames 8j..8j+7 of the chunk
    (j = i mod 13), i.e. [c + 0.08 j, c + 0.08 j + 0.08) s."""
    start = (np.arange(n_tokens) // TOKENS_PER_CHUNK) + (np.arange(n_tokens) % TOKENS_PER_CHUNK) * 0.08
    end = start + 0.08
    label = np.full(n_tokens, -1)
    best = np.zeros(n_tokens)
    frames = []
    for k, (a, b) in enumerate(spans):
        overlap = np.clip(np.minimum(end, b) - np.maximum(start, a), 0, None)
        take = (overlap > best) & (overlap >= 0.02)
        label[take], best[take] = k, overlap[take]
        frames.append(overlap)
    word_frames = []
    for k, overlap in enumerate(frames):
        mine = np.flatnonzero(label == k)
        word_frames.append(mine if mine.size else np.array([int(np.argmax(overlap))]))
    return label, word_frames


class ClipMaker:
    """Training clips: one sentence, 2-3 sentences, 15-40 s stretches with pauses, and
    silence or noise (target: language None), in the training voices."""

    def __init__(self, table, processor, exclude: set[str]):
        self.table, self.processor, self.exclude = table, processor, exclude
        self.prompt = base_prompt(processor)
        self.prefix_len = len(processor.tokenizer("language English<asr_text>").input_ids)

    def sentence(self, rng, lo, hi):
        while True:
            s = random_sentence(rng, lo, hi)
            if sentence_text(s) not in self.exclude:
                return s

    def clip(self, rng: np.random.Generator, kind: str):
        """(audio, words, spans) of one training clip."""
        if kind == "silence":
            audio = silence(rng.uniform(0.5, 10.0))
            words, spans = [], []
        else:
            if kind == "short":
                sentences = [self.sentence(rng, 2, 12)]
                max_seconds = 15.0
            elif kind == "medium":
                sentences = [self.sentence(rng, 4, 12) for _ in range(int(rng.integers(2, 4)))]
                max_seconds = 15.0
            else:
                sentences = [self.sentence(rng, 4, 12) for _ in range(int(rng.integers(4, 13)))]
                max_seconds = 40.0
            snippets = self.table[int(rng.integers(len(self.table)))]
            while True:
                audio, spans = compose(sentences, snippets, rng)
                if len(audio) / SR <= max_seconds or len(sentences) == 1:
                    break
                sentences = sentences[:-1]
            # Tempo/pitch jitter (resampling), so unseen voices fall between trained ones.
            rate = float(rng.uniform(0.9, 1.1))
            n = int(len(audio) / rate)
            audio = np.interp(np.arange(n) * rate, np.arange(len(audio)), audio).astype(np.float32)
            spans = [(a / rate, b / rate) for a, b in spans]
            words = [w for s in sentences for w in s]
        if rng.random() < 0.7:
            audio = add_noise(audio, rng, snr_db=float(rng.uniform(15, 50)))
        peak = float(np.abs(audio).max())
        if peak > 0:
            audio = audio * (float(rng.uniform(0.05, 0.95)) / peak)
        return audio, words, spans

    def encode(self, audio: np.ndarray, text: str):
        """(features [128, T], ids, number of target ids): exactly the official inputs."""
        target = target_text(text)
        inputs = self.processor(text=[self.prompt + target], audio=[audio], return_tensors="pt",
                                padding=True)
        ids = inputs["input_ids"][0]
        n_target = len(self.processor.tokenizer(target).input_ids)
        return inputs["input_features"][0].float(), ids, n_target

    def batch(self, rng: np.random.Generator, seconds: float, progress: float):
        """Clips of `seconds` audio in all; `progress` 0 -> 1 moves the mix from single
        sentences to 30 % 15-40 s clips."""
        import torch

        kinds = ("short", "medium", "long", "silence")
        p = min(1.0, max(0.0, progress))
        probs = np.array([0.75 - 0.45 * p, 0.2 + 0.1 * p, 0.35 * p, 0.05])
        feats, ids, n_targets, frame_word, frame_prev, frame_prev_any, align = [], [], [], [], [], [], []
        frame_prev2, text_prev_rows, text_prev = [], [], []
        total = 0.0
        while total < seconds:
            audio, words, spans = self.clip(rng, kinds[rng.choice(4, p=probs / probs.sum())])
            f, i, n = self.encode(audio, " ".join(WORDS[w] for w in words))
            audio_pos = torch.nonzero(i == AUDIO_PAD)[:, 0]
            label, word_frames = token_labels(len(audio_pos), spans)
            word = np.where(label >= 0, np.array(words + [0])[label], -1)
            # The word before: -2 = "<asr_text>" (before the first word); -100 (not
            # trained) where that word lies in an earlier 8 s encoder window.
            prev = np.full_like(label, -1)
            prev_any = np.full_like(label, -1)       # for the decoder: any window
            prev2 = np.full_like(label, -1)
            window = np.arange(len(label)) // TOKENS_PER_WINDOW
            for k in range(len(words)):
                mine = label == k
                if k == 0:
                    prev[mine] = prev_any[mine] = -2
                else:
                    prev_window = int(spans[k - 1][1] // 8.0)
                    prev[mine] = np.where(window[mine] == prev_window, words[k - 1], -100)
                    prev_any[mine] = words[k - 1]
                prev2[mine] = words[k - 2] if k >= 2 else -2
            first_word_row = len(i) - n + self.prefix_len       # ids index of word 0's token
            rows = [first_word_row + k - 1 for k in range(len(words))]
            # At the position writing word k (input: word k-1) the word before the input.
            text_prev_rows.extend((len(ids), r) for r in rows[1:])
            text_prev.extend([-2] + words[:-2] if len(words) >= 2 else [])
            align.append((rows, [audio_pos[torch.from_numpy(fr)] for fr in word_frames]))
            feats.append(f)
            ids.append(i)
            n_targets.append(n)
            frame_word.append(torch.from_numpy(word))
            frame_prev.append(torch.from_numpy(prev))
            frame_prev_any.append(torch.from_numpy(prev_any))
            frame_prev2.append(torch.from_numpy(prev2))
            total += len(audio) / SR
        padded = torch.nn.utils.rnn.pad_sequence(ids, batch_first=True, padding_value=ENDOFTEXT)
        predicts = torch.zeros(padded.shape, dtype=torch.bool)
        for row, (i, n) in enumerate(zip(ids, n_targets)):
            predicts[row, len(i) - n - 1:len(i) - 1] = True
        return {"feats": feats, "ids": padded, "predicts_target": predicts,
                "frame_word": torch.cat(frame_word), "frame_prev": torch.cat(frame_prev),
                "frame_prev_any": torch.cat(frame_prev_any), "frame_prev2": torch.cat(frame_prev2),
                "text_prev_rows": torch.tensor(text_prev_rows, dtype=torch.long).reshape(-1, 2),
                "text_prev": torch.tensor(text_prev, dtype=torch.long),
                "align": align, "seconds": total, "clips": len(ids)}
