"""A stream region's decoder: the region's audio is decoded again at each step, reusing
what the last step computed (the encoder's finished windows, the KV cache of the prompt up
to the first changed audio token, the last output as a draft), and its text is scored
(log-probabilities) where the session splits a closing region.
"""

from __future__ import annotations

from typing import NamedTuple

import mlx.core as mx
import numpy as np

from ..audio.load import SAMPLE_RATE
from ..decoding import RepetitionGuard, greedy_decode, token_budget
from ..model_input import clip_mel, embed_asr_prompt
from .encoder_cache import EncoderWindowCache
from .regions import end_of_text, log_softmax


class StepPrompt(NamedTuple):
    embeddings: mx.array    # [P, hidden]: the ASR prompt around the audio, then the text fed after it
    audio_start: int        # prompt positions before the audio
    audio_end: int          # prompt positions up to the audio's end
    suffix: list[int]       # the prompt's ids after the audio (before the text)
    stable: int             # audio positions unchanged since the encoder's last call


class StreamDecoder:
    """Decodes and scores a region's audio for a StreamingSession; `reset` when it closes."""

    def __init__(self, model, context: str, language: str | None, header_choices: list[list[int]] | None):
        self.model = model
        self.context = context
        self.language = language                # forced language, or None
        self.header_choices = header_choices    # a language set: chosen per region
        self.encoder = EncoderWindowCache(model.network.audio_tower)
        self.cache = model.network.make_cache()
        self.cache_valid = 0                    # prompt positions in the KV cache that are still right
        self.cache_suffix: list[int] = []       # the prompt after the audio in the cache

    def reset(self) -> None:
        """A region closed: nothing computed for it is reused."""
        self.encoder.reset()
        self.cache_valid = 0

    def _prompt(self, audio: np.ndarray, text: list[int]) -> StepPrompt:
        audio_embeddings, stable = self.encoder(clip_mel(audio, self.model.config.audio))
        ids, embeddings = embed_asr_prompt(self.model, audio_embeddings, self.context, self.language, text)
        start = ids.index(self.model.config.audio_token_id)
        end = start + audio_embeddings.shape[0]
        return StepPrompt(embeddings, start, end, ids[end:len(ids) - len(text)], stable)

    def decode(self, audio: np.ndarray, prefix: list[int], previous: list[int],
               max_tokens: int | None = None, reuse_cache: bool = True) -> list[int]:
        """The tokens after `prefix` (the region's committed text) for `audio` (the region so
        far), `previous` being the last output; at most `max_tokens` when given."""
        if not reuse_cache:
            self.cache_valid = 0
        prompt = self._prompt(audio, prefix)
        reuse = min(self.cache_valid, prompt.audio_start + prompt.stable)
        self.cache.rollback(reuse)
        # The region's whole text (prefix included) stays within the budget for its audio,
        # so a runaway model cannot grow the state without bound.
        budget = max(1, token_budget(len(audio) / SAMPLE_RATE) - len(prefix))
        if max_tokens is not None:
            budget = min(budget, max_tokens)
        # The previous step's text after the prefix is usually still right: it is checked in
        # the prefill pass instead of re-decoded token by token (same tokens, fewer steps).
        draft = previous[len(prefix):] if previous[:len(prefix)] == prefix else []
        result = greedy_decode(self.model.network, prompt.embeddings[reuse:][None], budget,
                               self.model.config.eos_token_ids, RepetitionGuard(), cache=self.cache, draft=draft,
                               header_choices=None if prefix else self.header_choices)
        # The cache now holds this step's prompt; the next step keeps what of it precedes
        # its first changed audio token (the encoder reports how many are unchanged).
        self.cache_valid = prompt.audio_end
        self.cache_suffix = prompt.suffix   # for end_of_text's reuse
        return result.tokens

    def end_of_text(self, region: np.ndarray, closing: np.ndarray, tokens: list[int], header: int) -> int:
        """Where in `tokens` (the region's text) the transcript of `closing` (the region up to
        the cut) ends: regions.end_of_text over the text's log-probabilities given the whole
        `region` and given `closing`."""
        if self.cache_valid and self.cache_suffix:
            whole = self._cached_token_log_probs(tokens, header)
        else:
            whole = self._token_log_probs(region, tokens, header)
        closed = self._token_log_probs(closing, tokens, header)
        return end_of_text(whole, closed, tokens, header, self.model.config.eos_token_ids)

    def _cached_token_log_probs(self, tokens: list[int], header: int) -> mx.array:
        """As _token_log_probs for the audio of the last step, whose prompt is still in the
        KV cache: only the prompt suffix and the text are fed."""
        network = self.model.network
        self.cache.rollback(self.cache_valid)
        suffix = self.cache_suffix + tokens
        hidden = network.decoder(network.embed_tokens(mx.array(suffix))[None], self.cache)[0]
        scored = network.logits(hidden[len(self.cache_suffix) - 1 + header:])
        self.cache_valid = 0   # the region is closing; nothing in the cache is reused after this
        return log_softmax(scored)

    def _token_log_probs(self, audio: np.ndarray, tokens: list[int], header: int) -> mx.array:
        """Teacher-forced log-probabilities [len(tokens) - header + 1, vocab]: row j predicts
        the token after tokens[:header + j], given `audio`."""
        network = self.model.network
        prompt = self._prompt(audio, tokens)
        hidden = network.decoder(prompt.embeddings[None], network.make_cache())[0]
        prompt_length = prompt.audio_end + len(prompt.suffix)
        scored = network.logits(hidden[prompt_length - 1 + header:])   # the head only where text is scored
        return log_softmax(scored)
