"""Greedy decoding: prefill the prompt, then one token per step until EOS, budget or a loop.

Step n+1's graph is built and queued (`mx.async_eval`) before step n's token is read back
for the EOS check, so the host never idles the device. The one extra step computed after
EOS is discarded; the output is exactly plain greedy decoding.

Every pick also carries its scores (`token_scores`): the log-probability the model gave the
picked token and the one it gave "no speech" there, computed from the logits already at
hand and read back together with the token, so they cost no extra step or sync and never
change a token. A language set (`header_choices`) lets the model choose a segment's
language header among given ones only (`choose_header`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import mlx.core as mx

from .model.decoder import KVCache
from .model.network import Qwen3ASR
from .results import FINISH_EOS, FINISH_LENGTH, FINISH_REPETITION

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
    # Per token of `tokens`: (log-probability of the token, log-probability of no speech:
    # the no-speech ids' total) in the distribution it was picked from.
    scores: list[tuple[float, float]] = field(default_factory=list)
    eos_score: tuple[float, float] | None = None      # the same for the EOS that ended it
    prompt_slot: tuple[float, float] | None = None    # the scores at the prompt's `slot` position


def token_scores(logits: mx.array, picks: mx.array, quiet_ids: mx.array) -> mx.array:
    """[B, 2] per row of `logits` [B, vocab] (the model's own, before any processor): the
    log-probability of `picks` [B] and the log of the summed probability of `quiet_ids`."""
    logits = logits.astype(mx.float32)
    total = mx.logsumexp(logits, axis=-1)
    picked = mx.take_along_axis(logits, picks.astype(mx.int32)[:, None], axis=-1)[:, 0]
    if quiet_ids.size:
        quiet = mx.logsumexp(mx.take(logits, quiet_ids, axis=-1), axis=-1)
    else:   # nothing counts as no speech (a benchmark that never stops)
        quiet = mx.full(total.shape, -math.inf)
    return mx.stack([picked - total, quiet - total], axis=-1)


def quiet_array(eos_ids, no_speech_ids) -> mx.array:
    """The ids whose probability is "no speech": the EOS ids and `no_speech_ids`."""
    return mx.array(sorted(set(eos_ids) | set(no_speech_ids)), dtype=mx.int32)


@dataclass
class Header:
    """A language header chosen among a set (`choose_header`): its tokens ("language", the
    name's tokens, "<asr_text>") and the lazy scores of its first two, picked by the model."""
    tokens: list[int]
    scores: mx.array    # [2, 2]


def choose_header(network: Qwen3ASR, prompt_embeddings: mx.array, cache: KVCache, choices: list[list[int]],
                  quiet_ids: mx.array) -> Header:
    """Prefill the prompt ([1, P, hidden]) and the headers' shared first token ("language")
    into `cache`; the header whose name's first token the model rates highest at that slot
    (every other token masked) is chosen. The choices' first tokens must be the same and
    their second ones distinct. The cache is left after "language": the caller feeds the rest."""
    language = choices[0][0]
    embeddings = mx.concatenate([prompt_embeddings, network.embed_tokens(mx.array([language]))[None]], axis=1)
    hidden = network.decoder(embeddings, cache)
    logits = network.logits(hidden[0, -2:, :])       # [2, vocab]: before "language", then the slot
    names = mx.array([choice[1] for choice in choices])
    chosen = choices[int(mx.argmax(mx.take(logits[1], names)).item())]
    return Header(list(chosen), token_scores(logits, mx.array(chosen[:2]), quiet_ids))


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
    header_choices: list[list[int]] | None = None,
    no_speech_ids: tuple[int, ...] = (),
    slot: int | None = None,
) -> DecodeResult:
    """Greedy decoding for one prompt ([1, P, hidden] embeddings).

    With the default `repetition_penalty=1.0` this is plain greedy decoding, token for
    token the official `generate`. A `cache` already holding the start of the prompt
    (streaming) is continued: then `prompt_embeddings` is only the part after it.

    `draft` is a guess of the output (streaming: the previous step's text). It is checked
    in the prefill pass: the leading draft tokens that greedy decoding would have produced
    are kept, so the result is still greedy decoding's, and each kept token saves a step
    that would read all the weights once more.

    `header_choices` (token lists "language", name, "<asr_text>"): the output starts with the
    one the model prefers (`choose_header`; it counts towards `max_new_tokens`). Scores call
    `no_speech_ids` + EOS no speech; `slot` (a prompt position, e.g. -3) asks for scores there.
    """
    if max_new_tokens <= 0:
        return DecodeResult([], FINISH_LENGTH, 0.0, 0.0)
    if cache is None:
        cache = network.make_cache(prompt_embeddings.shape[1] + max_new_tokens + 1)
    eos = set(eos_ids)
    quiet = quiet_array(eos_ids, no_speech_ids)
    processors = [make_repetition_penalty(repetition_penalty)] if repetition_penalty != 1.0 else []
    pick = greedy_picker(processors)
    start = time.perf_counter()
    header, budget = None, max_new_tokens
    if header_choices:
        header = choose_header(network, prompt_embeddings, cache, header_choices, quiet)
        prompt_embeddings = network.embed_tokens(mx.array(header.tokens[1:]))[None]
        if draft is not None:
            draft = draft[len(header.tokens):] if draft[:len(header.tokens)] == header.tokens else []
        budget -= len(header.tokens)   # may leave nothing: decode_loop then stops at once
    draft = draft[:max(0, budget - 1)] if draft else None
    if draft and not processors:   # a processor's pick depends on each token before it: no drafts
        result = _greedy_with_draft(network, prompt_embeddings, draft, cache,
                                    budget, eos, guard, pick, quiet, header, start)
    else:
        hidden = network.decoder(prompt_embeddings, cache)
        logits = network.logits(hidden[:, -1:, :])[:, -1, :]
        next_token = pick(logits)
        next_scores = token_scores(logits, next_token, quiet)
        known = _known_scores(network, hidden[0], header, slot, quiet)
        mx.eval(next_token, next_scores, known)
        result = _greedy_steps(network, cache, (next_token, next_scores), [], budget, eos, guard, pick,
                               quiet, time.perf_counter() - start)
        _prepend(result, header, known, slot)
    _keep_within(result, max_new_tokens)
    return result


def _keep_within(result: DecodeResult, budget: int) -> None:
    """A chosen header longer than the whole budget is cut to it (finish "length")."""
    if len(result.tokens) > budget:
        result.tokens, result.scores = result.tokens[:budget], result.scores[:budget]
        result.finish_reason, result.eos_score = FINISH_LENGTH, None


def _known_scores(network, hidden: mx.array, header: Header | None, slot: int | None, quiet: mx.array) -> mx.array:
    """Lazy scores of what the prefill fed but did not pick: with a header, its tokens after
    the first two (their logits: the rows before the last); without, the prompt's `slot`."""
    if header is not None:
        rest = header.tokens[2:]
        scored = network.logits(hidden[-len(rest) - 1:-1, :])
        return mx.concatenate([header.scores, token_scores(scored, mx.array(rest), quiet)])
    if slot is not None:
        return token_scores(network.logits(hidden[slot:slot + 1 if slot != -1 else None, :]), mx.array([0]), quiet)
    return mx.zeros((0, 2))


def _prepend(result: DecodeResult, header: Header | None, known: mx.array, slot: int | None) -> None:
    """The header's tokens and scores put before the decoded ones; or the slot's scores kept."""
    rows = [tuple(row) for row in known.tolist()]
    if header is not None:
        result.tokens = header.tokens + result.tokens
        result.scores = rows + result.scores
    elif slot is not None:
        result.prompt_slot = rows[0]


def _greedy_with_draft(network, prompt_embeddings, draft, cache, max_new_tokens, eos, guard, pick, quiet,
                       header, start) -> DecodeResult:
    """Prefill the prompt and the draft together; keep the draft up to its first token that
    differs from the pick before it, and continue from there."""
    embeddings = mx.concatenate([prompt_embeddings, network.embed_tokens(mx.array(draft))[None]], axis=1)
    hidden = network.decoder(embeddings, cache)
    logits = network.logits(hidden[0, -(len(draft) + 1):, :])    # [i]: after prompt + draft[:i]
    picks = pick(logits)
    scores = token_scores(logits, picks, quiet)
    known = _known_scores(network, hidden[0, :-len(draft), :], header, None, quiet)
    picked = picks.tolist()
    kept = 0
    while kept < len(draft) and picked[kept] == draft[kept] and draft[kept] not in eos:
        kept += 1
    cache.rollback(cache.offset - (len(draft) - kept))
    draft_scores = [tuple(row) for row in scores[:kept].tolist()]
    result = _greedy_steps(network, cache, (picks[kept:kept + 1], scores[kept:kept + 1]), draft[:kept],
                           max_new_tokens, eos, guard, pick, quiet, time.perf_counter() - start, draft_scores)
    _prepend(result, header, known, None)
    return result


def _greedy_steps(network, cache, next_pick, tokens, max_new_tokens, eos, guard, pick, quiet, prefill_s,
                  scores=()) -> DecodeResult:
    """Token-by-token greedy decoding of one row after the prefill: `next_pick` ([1] token,
    [1, 2] scores) is the next pick, `tokens` the ones already decided (with their `scores`)."""

    def step(token: mx.array, _: int) -> tuple[mx.array, mx.array]:
        logits = network(network.embed_tokens(token)[:, None, :], cache)[:, -1, :]
        picked = pick(logits)
        return picked, token_scores(logits, picked, quiet)

    start = time.perf_counter()
    rows = decode_loop(step, next_pick, [list(tokens)], [max_new_tokens], eos, [guard], [list(scores)])
    (row,) = rows
    return DecodeResult(row.tokens, row.reason, prefill_s, time.perf_counter() - start, row.scores, row.eos_score)


@dataclass
class Row:
    """One row's output of `decode_loop`."""
    tokens: list[int]
    scores: list[tuple[float, float]]
    reason: str | None = None
    eos_score: tuple[float, float] | None = None


def decode_loop(step, next_pick: tuple[mx.array, mx.array], tokens: list[list[int]], budgets: list[int], eos: set,
                guards: list[RepetitionGuard | None], scores: list[list] | None = None) -> list[Row]:
    """The decoding loop of 1..B rows: `next_pick` ([B] tokens, [B, 2] their scores) are the
    rows' next picks, `tokens` those already decided (with their `scores`),
    `step(next_tokens, i) -> (picks [B], scores [B, 2])` runs the network one position on.
    Each row stops on its own (EOS, its budget, a loop its guard spots); the loop ends
    when all have.
    Step i+1 is queued (`mx.async_eval`) before step i's tokens are read back."""
    rows = [Row(list(t), list(s)) for t, s in zip(tokens, scores or [[(0.0, 0.0)] * len(t) for t in tokens])]
    for row, budget in zip(rows, budgets):
        if len(row.tokens) >= budget:   # nothing left to decode (a chosen header filled it)
            row.reason = FINISH_LENGTH
    steps = max(b - len(t) for b, t in zip(budgets, tokens))
    i = 0
    while True:
        queued = None
        if i + 1 < steps:
            queued = step(next_pick[0], i)
            mx.async_eval(queued)
        for row, guard, budget, token, score in zip(rows, guards, budgets, next_pick[0].tolist(),
                                                    next_pick[1].tolist()):
            if row.reason is not None:
                continue
            if token in eos:
                row.reason, row.eos_score = FINISH_EOS, tuple(score)
                continue
            row.tokens.append(token)
            row.scores.append(tuple(score))
            if guard is not None and guard.is_looping(row.tokens):
                row.reason = FINISH_REPETITION
            elif len(row.tokens) >= budget:
                row.reason = FINISH_LENGTH
        i += 1
        if all(r.reason is not None for r in rows) or queued is None:
            break
        next_pick = queued
    for row in rows:
        row.reason = row.reason or FINISH_LENGTH
    return rows


def prefill_row(network: Qwen3ASR, prompt: mx.array, quiet_ids: mx.array, header_choices=None,
                slot: int | None = None) -> tuple[KVCache, mx.array, mx.array, Header | None, mx.array]:
    """One prompt ([P, hidden]) prefilled exactly as `greedy_decode` prefills it, in a cache of
    its own: (cache, first greedy token [1], its scores [1, 2], the chosen header or None,
    the scores `_known_scores` gives), all evaluated."""
    cache = network.make_cache(prompt.shape[0])
    header = None
    prompt = prompt[None]
    if header_choices:
        header = choose_header(network, prompt, cache, header_choices, quiet_ids)
        prompt = network.embed_tokens(mx.array(header.tokens[1:]))[None]
    hidden = network.decoder(prompt, cache)
    logits = network.logits(hidden[:, -1:, :])[:, -1, :]
    first = mx.argmax(logits, axis=-1)
    scores = token_scores(logits, first, quiet_ids)
    known = _known_scores(network, hidden[0], header, slot, quiet_ids)
    mx.eval(first, scores, known, cache.state())   # one row's activations at a time
    return cache, first, scores, header, known


def prefill_rows(network: Qwen3ASR, prompts: list[mx.array], capacity: int) -> tuple[mx.array, KVCache]:
    """Each prompt ([P_i, hidden]) prefilled on its own, exactly as `greedy_decode` prefills
    it: (the rows' first greedy tokens [B], their caches stacked into one of `capacity`
    positions). A padded batch would spend its padding's share of a compute-bound pass."""
    rows = [prefill_row(network, prompt, quiet_array((), ())) for prompt in prompts]
    cache = KVCache.stacked([row[0] for row in rows], capacity)
    next_tokens = mx.concatenate([row[1] for row in rows])
    mx.eval(next_tokens, cache.state())
    return next_tokens, cache


def greedy_decode_batch(
    network: Qwen3ASR,
    prompts: list[mx.array],
    max_new_tokens: list[int],
    eos_ids: tuple[int, ...],
    guards: list[RepetitionGuard | None] | None = None,
    header_choices: list[list[list[int]] | None] | None = None,
    no_speech_ids: tuple[int, ...] = (),
    slots: list[int | None] | None = None,
) -> list[DecodeResult]:
    """Greedy decoding of several prompts ([P_i, hidden] embeddings each) in one batch.
    `guards`: one loop guard (or None) per row; none at all by default. `header_choices`,
    `slots` (one per row, or None) and `no_speech_ids`: as in `greedy_decode`.

    Each prompt is prefilled on its own (`prefill_row`), their caches stacked, right-padded
    to the longest. Row i keeps its own positions (its prompt at 0..P_i-1, then P_i, P_i+1,
    ...) and never attends to padding, so each row's tokens are those of `greedy_decode` on
    that prompt alone. Rows stop on their own (EOS, budget,
    loop); the batch runs until the last one does. Prefill/decode times are the batch's.
    """
    rows = len(prompts)
    quiet = quiet_array(eos_ids, no_speech_ids)
    header_choices = header_choices or [None] * rows
    slots = slots or [None] * rows

    start = time.perf_counter()
    prefilled = [prefill_row(network, prompt, quiet, choices, slot)
                 for prompt, choices, slot in zip(prompts, header_choices, slots)]
    lengths = [row[0].offset for row in prefilled]    # prompt (and chosen header) per row
    headers = [row[3] for row in prefilled]
    budgets = [max(0, budget - (len(h.tokens) if h else 0)) for budget, h in zip(max_new_tokens, headers)]
    longest = max(lengths)
    length = mx.array(lengths)[:, None, None, None]                     # [B,1,1,1]
    cache = KVCache.stacked([row[0] for row in prefilled], longest + max(budgets) + 1)
    next_pick = (mx.concatenate([row[1] for row in prefilled]), mx.concatenate([row[2] for row in prefilled]))
    mx.eval(next_pick, cache.state())
    prefill_s = time.perf_counter() - start

    def step(tokens: mx.array, i: int) -> tuple[mx.array, mx.array]:
        # Keys: each row's real prompt, then every generated slot (index >= longest).
        key = mx.arange(longest + i + 1)[None, None, None, :]
        mask = (key < length) | (key >= longest)
        positions = mx.array([n + i for n in lengths])
        embeddings = network.embed_tokens(tokens)[:, None, :]
        logits = network(embeddings, cache, mask=mask, positions=positions)[:, -1, :]
        picked = mx.argmax(logits, axis=-1)
        return picked, token_scores(logits, picked, quiet)

    start = time.perf_counter()
    guards = guards if guards is not None else [None] * rows
    decoded = decode_loop(step, next_pick, [[] for _ in range(rows)], budgets, set(eos_ids), guards)
    decode_s = time.perf_counter() - start
    results = []
    for row, (_, _, _, header, known), slot, budget in zip(decoded, prefilled, slots, max_new_tokens):
        result = DecodeResult(row.tokens, row.reason, prefill_s, decode_s, row.scores, row.eos_score)
        _prepend(result, header, known, slot)
        _keep_within(result, budget)
        results.append(result)
    return results
