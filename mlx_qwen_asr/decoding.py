"""Greedy decoding: prefill the prompt, then one token per step until EOS, budget or a loop.

Step n+1's graph is built and queued (`mx.async_eval`) before step n's token is read back
for the EOS check, so the host never idles the device. The one extra step computed after
EOS is discarded; the output is exactly plain greedy decoding.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import mlx.core as mx

from .decoder import KVCache
from .network import Qwen3ASR

# Budget: 12 tokens per second of audio covers the fastest speech in any supported
# language (Chinese runs ~5 characters/s, English ~4 tokens/s), plus the language prefix.
TOKENS_PER_SECOND = 12
BUDGET_BASE = 32


def token_budget(duration_s: float) -> int:
    return BUDGET_BASE + math.ceil(TOKENS_PER_SECOND * max(duration_s, 0.0))


class RepetitionGuard:
    """Spots a decoding loop: the same 1..max_period token pattern repeating at the tail.

    Short patterns (<= 4 tokens) must repeat 16 times and longer ones 8 times, far beyond
    what speech does ("no, no, no"), so a normal transcript never trips it.
    """

    def __init__(self, max_period: int = 32, short_period: int = 4, short_repeats: int = 16, long_repeats: int = 8):
        self.max_period = max_period
        self.short_period = short_period
        self.short_repeats = short_repeats
        self.long_repeats = long_repeats

    def repeats_needed(self, period: int) -> int:
        return self.short_repeats if period <= self.short_period else self.long_repeats

    def is_looping(self, tokens: list[int]) -> bool:
        n = len(tokens)
        for period in range(1, self.max_period + 1):
            span = period * self.repeats_needed(period)
            if span > n or tokens[-1] != tokens[-1 - period]:
                continue
            tail = tokens[n - span:]
            if all(tail[i] == tail[i % period] for i in range(period, span)):
                return True
        return False


@dataclass
class DecodeResult:
    tokens: list[int]          # generated ids, EOS excluded
    finish_reason: str         # "eos", "length" or "repetition"
    prefill_s: float
    decode_s: float


def penalize_repeats(logits: mx.array, seen: mx.array, penalty: float) -> mx.array:
    """The usual repetition penalty (CTRL / transformers): seen tokens' logits divided by
    `penalty` when positive, multiplied when negative. Only a loop remedy, never the default."""
    return mx.where(seen, mx.where(logits > 0, logits / penalty, logits * penalty), logits)


def make_repetition_penalty(penalty: float):
    """A logits processor `(generated, logits) -> logits`: `generated` [B, n] are the tokens
    picked so far (lazy, never read back), `logits` [B, vocab] the next position's."""

    def process(generated: mx.array, logits: mx.array) -> mx.array:
        seen = mx.zeros(logits.shape, dtype=mx.bool_)
        if generated.shape[-1]:
            seen = mx.put_along_axis(seen, generated, mx.array(True), axis=-1)
        return penalize_repeats(logits, seen, penalty)

    return process


def greedy_picker(processors=()):
    """`pick(logits [B, vocab]) -> tokens [B]`: the argmax after the logits processors, which
    see the tokens this picker picked before (kept as a lazy array: the decode loop can queue
    the next step before reading this one's token back)."""
    generated = None

    def pick(logits: mx.array) -> mx.array:
        nonlocal generated
        if not processors:
            return mx.argmax(logits, axis=-1)
        if generated is None:
            generated = mx.zeros((logits.shape[0], 0), dtype=mx.uint32)
        for process in processors:
            logits = process(generated, logits)
        token = mx.argmax(logits, axis=-1)
        generated = mx.concatenate([generated, token[:, None].astype(mx.uint32)], axis=1)
        return token

    return pick


def greedy_decode(
    network: Qwen3ASR,
    prompt_embeddings: mx.array,
    max_new_tokens: int,
    eos_ids: tuple[int, ...],
    guard: RepetitionGuard | None = None,
    repetition_penalty: float = 1.0,
    cache: KVCache | None = None,
    draft: list[int] | None = None,
) -> DecodeResult:
    """Greedy decoding for one prompt ([1, P, hidden] embeddings).

    With the default `repetition_penalty=1.0` this is plain greedy decoding, token for
    token the official `generate`. A `cache` already holding the start of the prompt
    (streaming) is continued: then `prompt_embeddings` is only the part after it.

    `draft` is a guess of the output (streaming: the previous step's text). It is checked
    in the prefill pass: the leading draft tokens that greedy decoding would have produced
    are kept, so the result is still greedy decoding's, and each kept token saves a step
    that would read all the weights once more.
    """
    if max_new_tokens <= 0:
        return DecodeResult([], "length", 0.0, 0.0)
    if cache is None:
        cache = network.make_cache(prompt_embeddings.shape[1] + max_new_tokens + 1)
    eos = set(eos_ids)
    processors = [make_repetition_penalty(repetition_penalty)] if repetition_penalty != 1.0 else []
    pick = greedy_picker(processors)
    if draft and not processors:   # a processor's pick depends on each token before it: no drafts
        return _greedy_with_draft(network, prompt_embeddings, draft[:max_new_tokens - 1], cache,
                                  max_new_tokens, eos, guard, pick)
    start = time.perf_counter()
    next_token = pick(network(prompt_embeddings, cache)[:, -1, :])
    mx.eval(next_token)
    prefill_s = time.perf_counter() - start
    return _greedy_steps(network, cache, next_token, [], max_new_tokens, eos, guard, pick, prefill_s)


def _greedy_with_draft(network, prompt_embeddings, draft, cache, max_new_tokens, eos, guard, pick) -> DecodeResult:
    """Prefill the prompt and the draft together; keep the draft up to its first token that
    differs from the pick before it, and continue from there."""
    start = time.perf_counter()
    embeddings = mx.concatenate([prompt_embeddings, network.embed_tokens(mx.array(draft))[None]], axis=1)
    hidden = network.decoder(embeddings, cache)
    picks = pick(network.logits(hidden[0, -(len(draft) + 1):, :]))   # [i]: after prompt + draft[:i]
    picked = picks.tolist()
    kept = 0
    while kept < len(draft) and picked[kept] == draft[kept] and draft[kept] not in eos:
        kept += 1
    cache.rollback(cache.offset - (len(draft) - kept))
    prefill_s = time.perf_counter() - start
    return _greedy_steps(network, cache, picks[kept:kept + 1], draft[:kept], max_new_tokens, eos, guard, pick,
                         prefill_s)


def _greedy_steps(network, cache, next_token, tokens, max_new_tokens, eos, guard, pick, prefill_s) -> DecodeResult:
    """Token-by-token greedy decoding of one row after the prefill: `next_token` [1] is the
    next pick, `tokens` the ones already decided."""

    def step(token: mx.array, _: int) -> mx.array:
        return pick(network(network.embed_tokens(token)[:, None, :], cache)[:, -1, :])

    start = time.perf_counter()
    (tokens,), (reason,) = decode_loop(step, next_token, [list(tokens)], [max_new_tokens], eos, [guard])
    return DecodeResult(tokens, reason, prefill_s, time.perf_counter() - start)


def decode_loop(step, next_tokens: mx.array, tokens: list[list[int]], budgets: list[int], eos: set,
                guards: list[RepetitionGuard | None]) -> tuple[list[list[int]], list[str]]:
    """The decoding loop of 1..B rows: `next_tokens` [B] are the rows' next picks, `tokens`
    those already decided, `step(next_tokens, i) -> picks [B]` runs the network one position
    on. Each row stops on its own (EOS, its budget, a loop its guard spots); the loop ends
    when all have.
    Step i+1 is queued (`mx.async_eval`) before step i's tokens are read back."""
    tokens = [list(t) for t in tokens]
    reasons: list[str | None] = [None] * len(tokens)
    steps = max(b - len(t) for b, t in zip(budgets, tokens))
    i = 0
    while True:
        queued = None
        if i + 1 < steps:
            queued = step(next_tokens, i)
            mx.async_eval(queued)
        for row, token in enumerate(next_tokens.tolist()):
            if reasons[row] is not None:
                continue
            if token in eos:
                reasons[row] = "eos"
                continue
            tokens[row].append(token)
            guard = guards[row]
            if guard is not None and guard.is_looping(tokens[row]):
                reasons[row] = "repetition"
            elif len(tokens[row]) >= budgets[row]:
                reasons[row] = "length"
        i += 1
        if all(r is not None for r in reasons) or queued is None:
            break
        next_tokens = queued
    return tokens, [r or "length" for r in reasons]


def prefill_rows(network: Qwen3ASR, prompts: list[mx.array], capacity: int) -> tuple[mx.array, KVCache]:
    """Each prompt ([P_i, hidden]) prefilled on its own, exactly as `greedy_decode` prefills
    it: (the rows' first greedy tokens [B], their caches stacked into one of `capacity`
    positions). A padded batch would spend its padding's share of a compute-bound pass."""
    firsts, row_caches = [], []
    for prompt in prompts:
        row_cache = network.make_cache(prompt.shape[0])
        firsts.append(mx.argmax(network(prompt[None], row_cache)[:, -1, :], axis=-1))
        mx.eval(firsts[-1], row_cache.state())   # one row's activations at a time
        row_caches.append(row_cache)
    cache = KVCache.stacked(row_caches, capacity)
    next_tokens = mx.concatenate(firsts)
    mx.eval(next_tokens, cache.state())
    return next_tokens, cache


def greedy_decode_batch(
    network: Qwen3ASR,
    prompts: list[mx.array],
    max_new_tokens: list[int],
    eos_ids: tuple[int, ...],
    guards: list[RepetitionGuard | None] | None = None,
) -> list[DecodeResult]:
    """Greedy decoding of several prompts ([P_i, hidden] embeddings each) in one batch.
    `guards`: one loop guard (or None) per row; none at all by default.

    Each prompt is prefilled on its own (`prefill_rows`), their caches stacked, right-padded
    to the longest. Row i keeps its own positions (its prompt at 0..P_i-1, then P_i, P_i+1,
    ...) and never attends to padding, so each row's tokens are those of `greedy_decode` on
    that prompt alone. Rows stop on their own (EOS, budget,
    loop); the batch runs until the last one does. Prefill/decode times are the batch's.
    """
    rows = len(prompts)
    lengths = [int(p.shape[0]) for p in prompts]
    longest = max(lengths)
    steps = max(max_new_tokens)
    length = mx.array(lengths)[:, None, None, None]                     # [B,1,1,1]

    start = time.perf_counter()
    next_tokens, cache = prefill_rows(network, prompts, longest + steps + 1)
    prefill_s = time.perf_counter() - start

    def step(tokens: mx.array, i: int) -> mx.array:
        # Keys: each row's real prompt, then every generated slot (index >= longest).
        key = mx.arange(longest + i + 1)[None, None, None, :]
        mask = (key < length) | (key >= longest)
        positions = mx.array([n + i for n in lengths])
        embeddings = network.embed_tokens(tokens)[:, None, :]
        return mx.argmax(network(embeddings, cache, mask=mask, positions=positions)[:, -1, :], axis=-1)

    start = time.perf_counter()
    guards = guards if guards is not None else [None] * rows
    tokens, reasons = decode_loop(step, next_tokens, [[] for _ in range(rows)], max_new_tokens, set(eos_ids), guards)
    decode_s = time.perf_counter() - start
    return [DecodeResult(t, r, prefill_s, decode_s) for t, r in zip(tokens, reasons)]
