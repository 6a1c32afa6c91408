"""Streaming transcription: text while people speak, without limit, in flat memory.

The official streaming (vLLM only) re-encodes and re-decodes all audio every 2 s. Here:

* Audio is kept for the current *region* only. The encoder's 8 s windows attend only
  within themselves, so a completed window's output is cached and reused as long as its
  mel frames are unchanged (the mel of the region is recomputed each step - it is cheap -
  and compared, which also covers the utterance-global `max - 8` clamp moving); in the open
  tail window, conv-stem outputs of completed 1 s chunks are cached the same way.
* The decoder's KV cache keeps the prompt up to the first changed audio token; each step
  feeds only the changed tail, the prompt suffix and the text prefix.
* Text follows the official policy: for the first `unfixed_steps` steps of a region nothing
  is fixed; afterwards the previous output minus its last `unfixed_tokens` tokens (more
  while that would end inside a UTF-8 character) is fed back as a fixed prefix, and that
  prefix is what `committed` shows: it only ever grows. One rule is added: only tokens on
  which two consecutive steps agree are committed (local agreement), because a model that
  hallucinates at the abrupt end of the audio does so differently as the audio grows.
* Steps come every `step_seconds` of the stream, except its very first ones (at 1.5 and
  3 s, so text can be committed 3 s in rather than 4) and, with `catch_up` (live audio),
  when several steps' worth arrived while one ran: then they are decoded as one step, so a
  machine slower than real time falls behind by a bounded delay instead of ever more.
* When a region exceeds `max_region_seconds`, it is closed at the quietest moment at least
  `keep_seconds` before its end: the model shows where the transcript of the audio before
  the cut ends in the committed text (words that become much less likely without the
  audio after the cut belong after it; see _end_of_text), or, if the committed text falls
  short of the cut, continues it greedily up to its end of text. Text before that point is
  archived; the rest carries over as the fixed prefix of the next region, which starts at
  the cut. So memory and cost per step stay flat for a stream of any length.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import mlx.core as mx
import numpy as np

from .aligner import get_aligner
from .audio import SAMPLE_RATE
from .audio_stream import ChunkInput, open_audio_stream
from .decoding import RepetitionGuard, greedy_decode, token_budget
from .encoder import audio_token_count, conv_output_length
from .model_input import clip_mel, is_silent
from .options import TranscribeOptions, check_streamable
from .prompt import ASR_TEXT_TAG, normalize_language, parse_output
from .results import join_texts
from .segment import ENERGY_WINDOW_SECONDS, quietest_cut
from .transcribe import ASRModel

STEP_SECONDS = 2.0
UNFIXED_STEPS = 2
UNFIXED_TOKENS = 5
# The stream's first unfixed steps come sooner (at 1.5 and 3 s, then the 2 s grid resumes at
# 4 s), so the first words can be committed 3 s into the stream; the prefix is still first
# fed back at 4 s, as the official policy does.
FIRST_COMMIT_SECONDS = 3.0
# A region is closed past 20 s, at a pause 5-15 s before its end. `keep` must exceed how far
# committed text lags the audio (the unfixed tokens, agreement, one step): with 3 s, words
# before the cut were often not committed yet and the split went wrong (the trained
# fixture's held-out 7-39 s clips: 27 % WER at 12/3 s against 0.4 % at 16/4 and 20/5 s);
# regions of 22-24 s reach lengths where the fixture starts looping at the audio's end
# (16-22 % on its 37-39 s clips).
MAX_REGION_SECONDS = 20.0
KEEP_SECONDS = 5.0


@dataclass
class StreamUpdate:
    committed: str          # stable text so far: never rewritten, only extended
    partial: str            # the tail after it, which may still change
    new_committed: str      # what this update added to `committed`
    audio_seconds: float    # audio consumed so far
    language: str = ""
    final: bool = False
    words: list | None = None   # committed words with times (WordTiming), with word_timestamps=True

    @property
    def text(self) -> str:
        return join_texts([self.committed, self.partial])


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


class StreamingEncoder:
    """Audio embeddings of a growing region, reusing completed windows and 1 s chunks."""

    def __init__(self, model: ASRModel):
        self.encoder = model.network.audio_tower
        config = model.config.audio
        self.chunk = config.chunk_frames
        self.window_frames = config.chunk_frames * config.chunks_per_window
        self.tokens_per_chunk = conv_output_length(config.chunk_frames)
        self.windows: list[tuple[np.ndarray, mx.array]] = []   # (mel frames, output) of full windows
        self.chunks: dict[int, tuple[np.ndarray, mx.array]] = {}  # tail-window chunk index -> (mel, stem)

    def reset(self) -> None:
        self.windows, self.chunks = [], {}

    def __call__(self, mel: mx.array) -> tuple[mx.array, int]:
        """[n_mels, T] mel of the whole region -> (embeddings [N, D], leading tokens unchanged
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
                output = self._encode(mel[:, w * self.window_frames:(w + 1) * self.window_frames], pad_tail=True,
                                      first_chunk=w * self.window_frames // self.chunk)
                del self.windows[w:]
                self.windows.append((window_mel, output))
            outputs.append(output)
        del self.windows[full:]
        tail = frames - full * self.window_frames
        if tail:
            start = full * self.window_frames
            outputs.append(self._encode(mel[:, start:], pad_tail=frames > self.chunk, first_chunk=start // self.chunk,
                                        cache_chunks=True))
        embeddings = mx.concatenate(outputs, axis=0) if len(outputs) > 1 else outputs[0]
        return embeddings, stable

    def _encode(self, mel: mx.array, pad_tail: bool, first_chunk: int, cache_chunks: bool = False) -> mx.array:
        """One window: stem per 1 s chunk (cached ones reused), then the transformer."""
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
            # The official stem pads a short last chunk to a full one whenever the audio has
            # more than one chunk; a lone short chunk is used as it is.
            width = self.chunk if (pad_tail or count > 1) else frames
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


class StreamingSession:
    """Feed audio as it arrives; get committed and partial text back.

        session = StreamingSession(model)
        for chunk in chunks:
            update = session.feed(chunk, 16000)
            print(update.committed, "|", update.partial)
        final = session.finish()
    """

    def __init__(self, model: ASRModel, options: TranscribeOptions | None = None, *,
                 step_seconds: float = STEP_SECONDS, unfixed_steps: int = UNFIXED_STEPS,
                 unfixed_tokens: int = UNFIXED_TOKENS, max_region_seconds: float = MAX_REGION_SECONDS,
                 keep_seconds: float = KEEP_SECONDS, max_step_tokens: int | None = None,
                 catch_up: bool = False, first_commit_seconds: float = FIRST_COMMIT_SECONDS, **changes):
        """`options` and the keyword `changes` to it (see TranscribeOptions): language, context,
        word_timestamps and aligner apply; options only offline transcription uses are refused.

        `max_step_tokens` caps the tokens generated per step (default: the region's
        budget); benchmarks on random weights, which never say end-of-text, use it to
        model a real transcript's pace.

        `catch_up` is for live audio: when a feed brings several steps' worth (the machine
        fell behind while a step ran), they are decoded as one longer step, up to
        `keep_seconds`, instead of one after another. A step's cost grows little with its length,
        so on a machine somewhat slower than real time the delay stays bounded instead of
        growing without end. Off by default: then the text does not depend on how audio is fed."""
        options = check_streamable(TranscribeOptions.build(options, **changes))
        self.options = options
        self.model = model
        self.catch_up = catch_up
        self.max_step_tokens = max_step_tokens
        # Word times of committed text: re-aligned within the region whenever it grows (the
        # region is bounded, so this cost is flat too); closed regions keep theirs.
        self.aligner = get_aligner(options.aligner, model.dtype) if options.word_timestamps else None
        self.archived_words: list = []
        self.region_words: list = []
        self.aligned_tokens: list[int] = []
        self.language = normalize_language(options.language, model.config.support_languages)
        self.context = options.context
        self.step = int(step_seconds * SAMPLE_RATE)
        self.unfixed_steps = unfixed_steps
        self.unfixed_tokens = unfixed_tokens
        self.max_region = int(max_region_seconds * SAMPLE_RATE)
        self.keep = int(keep_seconds * SAMPLE_RATE)
        # A merged step spans at most `keep` (4 s with the defaults): enough when a step costs
        # somewhat more than its audio, and regions stay the length the split was tuned at
        # (the trained fixture's held-out clips: 0.4 % WER with 4 s merged steps, as regular
        # ones; 6.6 % with 10 s). A machine far slower than real time falls behind anyway.
        self.max_catch_up = max(self.step, self.keep // self.step * self.step)
        self.first_commit = min(int(first_commit_seconds * SAMPLE_RATE), unfixed_steps * self.step)
        if self.max_region < 4 * self.keep:
            raise ValueError("max_region_seconds must be at least four times keep_seconds")
        self.encoder = StreamingEncoder(model)
        self.input = ChunkInput()               # chunks of any rate -> 16 kHz mono, in order
        self.region = np.zeros(0, np.float32)   # audio of the current region
        self.unprocessed = 0                    # samples of it not yet decoded
        self.consumed = 0                       # samples fed so far
        self.archived = ""                      # text of closed regions
        self.continues = False                  # this region's text continues the archived text mid-sentence
        self.region_tokens: list[int] = []      # committed tokens of this region (with the language header)
        self.output_tokens: list[int] = []      # last output of this region (committed + partial)
        self.steps_in_region = 0
        self.carried_tokens = 0                 # of region_tokens, those carried over from the last region
        self.region_decoded = False             # a step has decoded this region (see _run_step)
        self.language_found = ""
        self.cache = model.network.make_cache()
        self.cache_valid = 0                    # prompt positions in the KV cache that are still right
        self.cache_suffix: list[int] = []       # the prompt after the audio in the cache
        self.finished = False

    # ------------------------------------------------------------------ public

    def feed(self, pcm, sample_rate: int = SAMPLE_RATE) -> StreamUpdate:
        if self.finished:
            raise RuntimeError("this session is finished; start a new StreamingSession")
        samples = self.input.push(pcm, sample_rate)
        self.region = np.concatenate([self.region, samples])
        self.unprocessed += len(samples)
        self.consumed += len(samples)
        before = self._committed_text()
        while (end := self._next_step_end()) <= self.consumed:
            last_end = len(self.region) - self.unprocessed   # where the last step ended
            self.unprocessed = self.consumed - end
            self._run_step(upto=len(self.region) - self.unprocessed, last_end=last_end)
            self._align_committed(len(self.region) - self.unprocessed)
        return self._update(before)

    def finish(self) -> StreamUpdate:
        """Flush what is left and return the final text (everything committed)."""
        if self.finished:
            raise RuntimeError("this session is already finished")
        before = self._committed_text()
        tail = self.input.flush()
        self.region = np.concatenate([self.region, tail])
        self.consumed += len(tail)
        self._run_step(upto=len(self.region), final=True)
        self.finished = True
        self.region_tokens = list(self.output_tokens)
        self._align_committed(len(self.region))
        update = self._update(before)
        update.final = True
        return update

    # ------------------------------------------------------------------ steps

    def _next_step_end(self) -> int:
        """The stream position (in samples) the next step decodes up to: the next multiple of
        the step length; with catch_up, the last one that has arrived (at most `keep` seconds
        ahead); at the stream's start, its first `unfixed_steps` steps evenly up to
        `first_commit_seconds`, where text can first be committed (3 s, not 2 steps = 4 s)."""
        decoded = self.consumed - self.unprocessed
        end = (decoded // self.step + 1) * self.step
        behind = self.catch_up and self.consumed >= end + self.step
        if behind:
            end = min(self.consumed, decoded + self.max_catch_up) // self.step * self.step
        at_stream_start = len(self.region) == self.consumed   # no region closed yet
        if at_stream_start and decoded < self.first_commit and not behind:
            return (decoded * self.unfixed_steps // self.first_commit + 1) * self.first_commit // self.unfixed_steps
        return end

    def _run_step(self, upto: int, final: bool = False, last_end: int = 0) -> None:
        # A region is closed once a step has decoded it. The cut is placed as after a regular
        # step from the last one, even when a catch-up step brings more: the text, the
        # split's evidence, covers audio up to the last step only.
        if upto > self.max_region and self.region_decoded and not final:
            if len(self.region_tokens) == self.carried_tokens and self.output_tokens[:len(self.region_tokens)] == self.region_tokens:
                # Nothing committed since the region began (a catch-up step brought it past its
                # length at once): the last step's text is the evidence, or its words are lost.
                self.region_tokens = list(self.output_tokens)
            self._close_region(upto, min(upto, last_end + self.step))
        audio = self.region[:upto]
        self.steps_in_region += 1
        self.region_decoded = True
        if is_silent(audio):
            self.output_tokens = list(self.region_tokens)   # silence adds nothing
            return
        fixed = self.steps_in_region > self.unfixed_steps or bool(self.region_tokens) or final
        prefix = list(self.region_tokens) if fixed else []
        generated = self._decode(audio, prefix)
        previous, self.output_tokens = self.output_tokens, prefix + generated
        if self.steps_in_region >= self.unfixed_steps and not final:
            candidate = self.output_tokens[:max(0, len(self.output_tokens) - self.unfixed_tokens)]
            self._commit(candidate[:common_prefix(candidate, previous)])

    def _commit(self, candidate: list[int]) -> None:
        tokenizer = self.model.tokenizer
        while candidate and tokenizer.decode(candidate).endswith("\ufffd"):
            candidate = candidate[:-1]   # never cut a UTF-8 character in half
        if self.language is None and ASR_TEXT_TAG not in tokenizer.decode(candidate):
            return   # the language header is not complete yet
        if len(candidate) > len(self.region_tokens) and candidate[:len(self.region_tokens)] == self.region_tokens:
            self.region_tokens = candidate

    def _prompt_pieces(self, num_audio_tokens: int) -> tuple[list[int], list[int]]:
        ids = self.model.prompt_ids(num_audio_tokens, self.context, self.language)
        first = ids.index(self.model.config.audio_token_id)
        return ids[:first], ids[first + num_audio_tokens:]

    def _embeddings(self, audio: np.ndarray) -> tuple[mx.array, list[int], list[int], int]:
        mel = clip_mel(audio, self.model.config.audio)
        audio_embeddings, stable = self.encoder(mel)
        before, after = self._prompt_pieces(audio_embeddings.shape[0])
        return audio_embeddings, before, after, stable

    def _decode(self, audio: np.ndarray, prefix: list[int]) -> list[int]:
        network = self.model.network
        audio_embeddings, before, after, stable = self._embeddings(audio)
        sequence = self._sequence(before, audio_embeddings, after + prefix)
        reuse = min(self.cache_valid, len(before) + stable)
        self.cache.rollback(reuse)
        # The region's whole text (prefix included) stays within the budget for its audio,
        # so a runaway model cannot grow the state without bound.
        budget = max(1, token_budget(len(audio) / SAMPLE_RATE) - len(prefix))
        if self.max_step_tokens is not None:
            budget = min(budget, self.max_step_tokens)
        # The previous step's text after the prefix is usually still right: it is checked in
        # the prefill pass instead of re-decoded token by token (same tokens, fewer steps).
        previous = self.output_tokens
        draft = previous[len(prefix):] if previous[:len(prefix)] == prefix else []
        result = greedy_decode(network, sequence[reuse:][None], budget, self.model.config.eos_token_ids,
                               RepetitionGuard(), cache=self.cache, draft=draft)
        # The cache now holds this step's prompt; the next step keeps what of it precedes
        # its first changed audio token (the encoder reports how many are unchanged).
        self.cache_valid = len(before) + audio_embeddings.shape[0]
        self.cache_suffix = after   # the prompt after the audio, for _end_of_text's reuse
        return result.tokens

    def _sequence(self, before: list[int], audio_embeddings: mx.array, after: list[int]) -> mx.array:
        """[P, hidden] embeddings of `before`, the audio, then `after` (the model's own prompt assembly)."""
        pads = [self.model.config.audio_token_id] * audio_embeddings.shape[0]
        return self.model.network.embed_prompt(before + pads + after, audio_embeddings)[0]

    def _close_region(self, upto: int, reference: int) -> None:
        """Archive the start of the region up to a quiet cut, carry the rest over."""
        # Cut late (the next region starts short) but leave `keep` seconds for the words
        # still being decoded: the quietest moment from 3 keep-lengths before the end (the
        # next region is never longer) to 1 before `reference` (the end of this step, had it
        # been a regular one; the same as the end for regular steps).
        latest = max(upto - 3 * self.keep, reference - self.keep)
        cut = quietest_cut(self.region, upto - 3 * self.keep, latest, int(ENERGY_WINDOW_SECONDS * SAMPLE_RATE))
        closing = self.region[:cut]
        header = self._header_length(self.region_tokens)
        archived, carried = self.region_tokens, []
        if not is_silent(closing):
            split = len(self.region_tokens)
            if split > header:
                split = self._end_of_text(closing, self.region_tokens, header)
                # What is carried over belongs to the audio after the cut: at most its budget.
                split = max(split, len(self.region_tokens) - token_budget((upto - cut) / SAMPLE_RATE))
                while split < len(self.region_tokens) and self.model.tokenizer.decode(self.region_tokens[:split]).endswith("\ufffd"):
                    split += 1   # never split a UTF-8 character between archive and carry-over
            # (Nothing committed yet, e.g. a catch-up step brought the region past its length
            # at once: the closing audio is transcribed below, never dropped.)
            if split < len(self.region_tokens):
                archived, carried = self.region_tokens[:split], self.region_tokens[split:]
            else:
                self.cache_valid = 0
                archived = self.region_tokens + self._decode(closing, self.region_tokens)
        if self.aligner is not None:
            self.archived_words += self._timed_words(archived, closing)
            self.region_words, self.aligned_tokens = [], []
        self.archived = self._joined(archived)
        self.continues = bool(carried)
        self.region_tokens = (self.region_tokens[:header] + carried) if carried else self.region_tokens[:header]
        if not carried and header and self.language is None:
            self.region_tokens = []   # let the next region find its own language
        self.output_tokens = list(self.region_tokens)
        self.region = self.region[cut:]
        self.encoder.reset()
        self.cache_valid = 0
        self.steps_in_region = self.unfixed_steps   # carried text is already fixed
        self.carried_tokens = len(self.region_tokens)
        self.region_decoded = False

    def _end_of_text(self, audio: np.ndarray, tokens: list[int], header: int) -> int:
        """Where in `tokens` (the region's text) the transcript of `audio` (the region up to the
        cut) ends. For each token, how much less likely it is without the audio after
        the cut (near 0 for words spoken before it, very negative for words after it); the
        split j maximizes the sum of those over tokens[header:j] plus log P(end of text
        after tokens[:j] | audio). The ratio, not the plain likelihood, so a model unsure of
        its words everywhere does not push every word into the carry-over."""
        if self.cache_valid and self.cache_suffix:
            whole = self._cached_token_log_probs(tokens, header)
        else:
            whole = self._token_log_probs(self.region, tokens, header)
        closing = self._token_log_probs(audio, tokens, header)
        eos = mx.array(list(self.model.config.eos_token_ids))
        end_scores = mx.max(closing[:, eos], axis=-1)
        text = mx.array(tokens[header:], dtype=mx.int32)[:, None]
        ratio = (mx.take_along_axis(closing[:-1], text, axis=-1) - mx.take_along_axis(whole[:-1], text, axis=-1))[:, 0]
        before = mx.concatenate([mx.zeros((1,)), mx.cumsum(ratio)])
        return header + int(mx.argmax(before + end_scores).item())

    def _cached_token_log_probs(self, tokens: list[int], header: int) -> mx.array:
        """As _token_log_probs for the audio of the last step, whose prompt is still in the
        KV cache: only the prompt suffix and the text are fed."""
        network = self.model.network
        self.cache.rollback(self.cache_valid)
        suffix = self.cache_suffix + tokens
        hidden = network.model(network.embed_tokens(mx.array(suffix))[None], self.cache)[0]
        scored = network.logits(hidden[len(self.cache_suffix) - 1 + header:])
        self.cache_valid = 0   # the region is closing; nothing in the cache is reused after this
        return scored - mx.logsumexp(scored, axis=-1, keepdims=True)

    def _token_log_probs(self, audio: np.ndarray, tokens: list[int], header: int) -> mx.array:
        """Teacher-forced log-probabilities [len(tokens) - header + 1, vocab]: row j predicts
        the token after tokens[:header + j], given `audio`."""
        network = self.model.network
        audio_embeddings, before, after, _ = self._embeddings(audio)
        sequence = self._sequence(before, audio_embeddings, after + tokens)
        hidden = network.model(sequence[None], network.make_cache())[0]
        prompt_length = len(before) + audio_embeddings.shape[0] + len(after)
        scored = network.logits(hidden[prompt_length - 1 + header:])   # the head only where text is scored
        return scored - mx.logsumexp(scored, axis=-1, keepdims=True)

    def _header_length(self, tokens: list[int]) -> int:
        """Tokens of the "language X<asr_text>" header at the start (0 when the language is forced)."""
        if self.language is not None:
            return 0
        tag = self.model.tokenizer.token_to_id(ASR_TEXT_TAG)
        return tokens.index(tag) + 1 if tag in tokens else 0

    # ------------------------------------------------------------------ text

    def _body(self, tokens: list[int]) -> str:
        """Raw text after the language header, as decoded (leading spaces kept, so pieces of one
        region concatenate exactly). Unlike offline parsing, long repetitions are not collapsed:
        that would rewrite text already committed."""
        raw = self.model.tokenizer.decode(tokens)
        if self.language is not None:
            return raw
        if ASR_TEXT_TAG not in raw:
            return ""
        meta, text = raw.split(ASR_TEXT_TAG, 1)
        language, _ = parse_output(meta + ASR_TEXT_TAG)
        if language:
            self.language_found = language
        return text

    def _joined(self, tokens: list[int]) -> str:
        """The archived text followed by this region's text of `tokens`."""
        body = self._body(tokens)
        if self.continues:
            return self.archived + body
        return join_texts([self.archived, body])

    def _committed_text(self) -> str:
        return self._joined(self.region_tokens).strip()

    def _update(self, before: str) -> StreamUpdate:
        committed = self._committed_text()
        full = self._joined(self.output_tokens).strip()
        partial = full[len(committed):].strip() if full.startswith(committed) else ""
        new = committed[len(before):].strip() if committed.startswith(before) else committed
        words = self.archived_words + self.region_words if self.aligner is not None else None
        return StreamUpdate(committed, partial, new, self.consumed / SAMPLE_RATE,
                            self.language or self.language_found, words=words)

    def _align_committed(self, upto: int) -> None:
        if self.aligner is None or self.region_tokens == self.aligned_tokens:
            return
        self.region_words = self._timed_words(self.region_tokens, self.region[:upto])
        self.aligned_tokens = list(self.region_tokens)

    def _timed_words(self, tokens: list[int], audio: np.ndarray) -> list:
        """Words of `tokens`' text timed in `audio` (the region's start), on the stream's clock."""
        text = self._body(tokens).strip()
        if not text or not len(audio):
            return []
        offset = (self.consumed - len(self.region)) / SAMPLE_RATE   # where the region starts
        words = self.aligner.align_samples(audio, text, self.language or self.language_found or None)
        return [replace(w, start=w.start + offset, end=w.end + offset) for w in words]


def transcribe_stream(source, model, options: TranscribeOptions | None = None, *, chunk_seconds: float = 0.5,
                      sample_rate: int | None = None, realtime: bool = False, **kwargs) -> Iterator[StreamUpdate]:
    """Stream a file (or an array with `sample_rate`) through a StreamingSession, yielding an
    update per `chunk_seconds` of audio and the final one last. `realtime` paces the feed
    at the speed of the audio, as a live source would deliver it (a live-caption demo):
    when decoding falls behind, everything that has arrived meanwhile is fed at once and
    the session catches up (see StreamingSession's `catch_up`). Other keywords: option
    changes (language, context, ...) and StreamingSession's settings."""
    import time

    if not isinstance(model, ASRModel):
        from .transcribe import load_model
        model = load_model(model)
    kwargs.setdefault("catch_up", realtime)
    session = StreamingSession(model, options, **kwargs)
    stream = open_audio_stream(source, sample_rate, block_seconds=chunk_seconds)
    started = time.perf_counter()
    fed = 0.0
    pending: list[np.ndarray] = []
    step = int(chunk_seconds * SAMPLE_RATE)
    for block in stream.blocks:
        for i in range(0, len(block), step):
            piece = block[i:i + step]
            fed += len(piece) / SAMPLE_RATE
            pending.append(piece)
            if realtime:
                delay = fed - (time.perf_counter() - started)
                if delay > 0:
                    time.sleep(delay)
                elif fed + chunk_seconds <= time.perf_counter() - started:
                    continue   # behind: the next piece has arrived too; take it along
            yield session.feed(np.concatenate(pending), SAMPLE_RATE)
            pending = []
    if pending:
        yield session.feed(np.concatenate(pending), SAMPLE_RATE)
    yield session.finish()
