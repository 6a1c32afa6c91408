"""Streaming: caches equal recomputation, committed text only grows, flat state on long streams."""

import numpy as np
import pytest

from mlx_qwen_asr import decoding
from mlx_qwen_asr.decoding import greedy_decode, token_budget
from mlx_qwen_asr.model.encoder import audio_token_count
from mlx_qwen_asr.errors import AudioError
from mlx_qwen_asr.audio.mel import log_mel_spectrogram
from mlx_qwen_asr.model_input import asr_prompt
from mlx_qwen_asr.testing.parity import relative_error
from mlx_qwen_asr.stream.encoder_cache import EncoderWindowCache
from mlx_qwen_asr.stream.session import StreamingSession, transcribe_stream

from support.audio_samples import speech

SR = 16000


def test_streaming_encoder_equals_full_encoder_as_audio_grows(model):
    audio = speech(21.0)
    audio[int(17.2 * SR):int(17.4 * SR)] *= 3.0   # a loud burst late: the global mel clamp moves
    encoder = EncoderWindowCache(model.network.audio_tower)
    reused = []
    for seconds in range(2, 22, 2):
        mel = log_mel_spectrogram(audio[:seconds * SR])
        streamed, stable = encoder(mel)
        full = model.network.encode_audio(mel)
        assert streamed.shape == full.shape
        assert relative_error(np.array(streamed), np.array(full)) < 1e-5, seconds
        reused.append(stable)
    assert max(reused) >= 104  # completed 8 s windows were reused, not recomputed


def test_draft_checked_in_prefill_gives_greedy_tokens(model):
    """Streaming passes the previous step's text as a draft: whatever the draft, the tokens
    are plain greedy decoding's, and a right draft is kept whole instead of re-decoded."""
    audio = speech(6.0)
    mel = log_mel_spectrogram(audio)
    embeddings = model.network.encode_audio(mel)
    prompt = model.network.embed_prompt(model.prompt_ids(embeddings.shape[0], "", "English"), embeddings)
    eos = model.config.eos_token_ids
    greedy = greedy_decode(model.network, prompt, 24, eos).tokens
    assert len(greedy) >= 8
    for draft in (greedy, greedy[:5], greedy[:5] + [7, 8, 9], [7, 8, 9], greedy + [11, 12]):
        assert greedy_decode(model.network, prompt, 24, eos, draft=draft).tokens == greedy, draft
    assert greedy_decode(model.network, prompt, 4, eos, draft=greedy).tokens == greedy[:4]
    decoded_steps = []
    original = decoding._greedy_steps
    def counting(network, cache, next_token, tokens, *rest):
        decoded_steps.append(len(tokens))
        return original(network, cache, next_token, tokens, *rest)
    decoding._greedy_steps = counting
    try:
        greedy_decode(model.network, prompt, 24, eos, draft=greedy)
    finally:
        decoding._greedy_steps = original
    # The whole draft was kept, up to the budget less the token the prefill itself picks.
    assert decoded_steps == [min(len(greedy), 24 - 1)]


def test_decoder_kv_reuse_equals_recomputation(model):
    """Logits of a step that reuses the cached prompt equal those computed from scratch."""
    session = StreamingSession(model, language="English")
    audio = speech(14.0)
    session.feed(audio[:12 * SR])
    decoder = session.decoder
    prompt = decoder._prompt(audio, session.region_tokens)
    assert prompt.stable >= 104
    sequence = prompt.embeddings
    reuse = min(decoder.cache_valid, prompt.audio_start + prompt.stable)
    assert reuse > prompt.audio_start
    decoder.cache.rollback(reuse)
    with_cache = model.network(sequence[reuse:][None], decoder.cache, last_only=False)[0]
    scratch = model.network(sequence[None], model.network.make_cache(), last_only=False)[0, reuse:]
    assert relative_error(np.array(with_cache), np.array(scratch)) < 1e-5


def test_a_step_feeds_the_offline_prompt(model):
    """A streaming step's prompt is model_input's, as offline: the same ids around the audio
    and the same embeddings."""
    audio = speech(5.0)
    ids, offline = asr_prompt(model, audio, context="Names: Qwen", language="English")
    step = StreamingSession(model, language="English", context="Names: Qwen").decoder._prompt(audio, [])
    assert step.audio_start == ids.index(model.config.audio_token_id)
    assert step.suffix == ids[step.audio_end:] and step.audio_end - step.audio_start == ids.count(model.config.audio_token_id)
    assert relative_error(np.array(step.embeddings), np.array(offline)) < 1e-5


def feed_all(session, audio, chunk):
    updates = [session.feed(audio[i:i + chunk]) for i in range(0, len(audio), chunk)]
    return updates, session.finish()


def test_committed_text_only_grows_and_final_commits_everything(model):
    updates, final = feed_all(StreamingSession(model, language="English"), speech(12.0), 3000)
    committed = [u.committed for u in updates] + [final.committed]
    assert all(later.startswith(earlier) for earlier, later in zip(committed, committed[1:]))
    assert any(u.committed for u in updates)  # text was committed before the end
    assert final.final and final.partial == "" and final.committed


def test_chunk_size_does_not_change_the_result(model):
    audio = speech(9.0)
    _, small = feed_all(StreamingSession(model, language="English"), audio, 1234)
    _, large = feed_all(StreamingSession(model, language="English"), audio, 16000)
    assert small.committed == large.committed


def test_short_clip_without_fixed_prefix_equals_offline(model):
    """Under 3 s only the 1.5 s step runs before the end (text is committed once two steps
    agree, the second at 3 s), so the final decode is the offline one."""
    audio = speech(2.9)
    _, final = feed_all(StreamingSession(model, language="English"), audio, 4000)
    offline = model.transcribe(audio, sample_rate=SR, language="English", recover_loops=False)
    assert final.committed == offline.raw.strip()  # streaming never collapses repeats (see _text_of)


def test_silence_gives_no_text(model):
    updates, final = feed_all(StreamingSession(model), np.zeros(10 * SR, np.float32), 8000)
    assert all(u.committed == "" and u.partial == "" for u in updates) and final.committed == ""


def test_long_stream_keeps_flat_state(model):
    session = StreamingSession(model, language="English", max_region_seconds=16, keep_seconds=4)
    audio = speech(70.0)
    regions, offsets, committed = [], [], []
    for i in range(0, len(audio), SR):
        update = session.feed(audio[i:i + SR])
        regions.append(len(session.region))
        offsets.append(session.decoder.cache.offset)
        committed.append(update.committed)
    final = session.finish()
    assert max(regions) <= 18 * SR            # the region slides instead of growing
    # The decoder state is bounded by the region, not the stream: prompt, the audio tokens
    # of at most 18 s and the text budget of that audio.
    prompt = len(model.prompt_ids(0, "", "English"))
    assert max(offsets) <= prompt + audio_token_count(18 * 100, model.config.audio.chunk_frames) + token_budget(18.0)
    assert len(session.archived) >= 3
    assert all(b.startswith(a) for a, b in zip(committed, committed[1:] + [final.committed]))


def test_catch_up_decodes_a_backlog_in_one_step(model):
    """Live audio that piled up while a step ran is decoded in steps of up to `keep_seconds`
    (4 s on the 2 s grid), not in 2 s steps one after another."""
    audio = speech(9.0)
    decodes = []

    class Counting(StreamingSession):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            decode = self.decoder.decode

            def counted(audio, *rest, **settings):
                decodes.append(len(audio))
                return decode(audio, *rest, **settings)
            self.decoder.decode = counted

    Counting(model, language="English").feed(audio[:8 * SR])
    assert decodes == [int(1.5 * SR), 3 * SR, 4 * SR, 6 * SR, 8 * SR]   # sooner first steps, then 2 s
    decodes.clear()
    live = Counting(model, language="English", catch_up=True)
    first = live.feed(audio[:SR])
    update = live.feed(audio[SR:8 * SR])
    assert decodes == [4 * SR, 8 * SR] and update.audio_seconds == 8.0 and first.committed == ""
    final = live.finish()
    assert final.committed and final.final

    decodes.clear()
    long_live = Counting(model, language="English", catch_up=True, max_region_seconds=16, keep_seconds=4)
    long_live.feed(speech(40.0))
    assert 10 <= len(decodes) <= 11 and max(decodes) <= 20 * SR   # 4 s steps
    assert len(long_live.region) <= 20 * SR


def test_microphone_drain_takes_everything_queued():
    import queue

    from mlx_qwen_asr.frontends.live import drain

    blocks = queue.Queue()
    for value in (1.0, 2.0, 3.0):
        blocks.put(np.full(4, value, np.float32))
    assert drain(blocks).tolist() == [1.0] * 4 + [2.0] * 4 + [3.0] * 4
    assert blocks.empty()


def test_realtime_stream_feeds_what_arrived_while_a_step_ran(model, monkeypatch, tmp_path):
    """At real-time pace, a slow step does not make the stream fall further behind: the
    pieces that arrived meanwhile are fed together."""
    import time

    import soundfile as sf

    path = tmp_path / "clip.wav"
    sf.write(path, speech(3.0), SR)
    feeds = []
    original = StreamingSession.feed

    def slow_feed(self, pcm, sample_rate=SR):
        feeds.append(len(pcm))
        time.sleep(0.5)   # a step slower than the 0.1 s pieces
        return original(self, pcm, sample_rate)

    monkeypatch.setattr(StreamingSession, "feed", slow_feed)
    updates = list(transcribe_stream(path, model, language="English", chunk_seconds=0.1, realtime=True))
    assert sum(feeds) == 3 * SR and len(feeds) < 15    # 30 pieces, fed in far fewer calls
    assert max(feeds) >= 4 * SR // 10
    assert updates[-1].final and updates[-1].audio_seconds == pytest.approx(3.0)


def test_feed_validates_input(model):
    session = StreamingSession(model)
    with pytest.raises(AudioError, match="NaN"):
        session.feed(np.array([0.1, np.nan], np.float32))
    session.feed(np.zeros(100, np.int16))   # int16 PCM is scaled, not rejected
    session.finish()
    with pytest.raises(RuntimeError, match="finished"):
        session.feed(np.zeros(100, np.float32))


def test_transcribe_stream_generator_on_a_file(model, tmp_path):
    import soundfile as sf

    path = tmp_path / "clip.wav"
    sf.write(path, speech(5.0), 44100 // 2)   # written as if 22.05 kHz: resampled on the fly
    updates = list(transcribe_stream(path, model, language="English", chunk_seconds=0.5))
    assert updates[-1].final and not any(u.final for u in updates[:-1])
    assert updates[-1].audio_seconds == pytest.approx(5.0 * 16000 / 22050, abs=0.01)


def test_live_printer_redraws_partial_on_a_terminal_and_appends_elsewhere():
    import io

    from mlx_qwen_asr.frontends.live import LivePrinter
    from mlx_qwen_asr.stream.session import StreamUpdate

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    updates = [StreamUpdate("", "hel", "", 2.0), StreamUpdate("hello", "wor", "hello", 4.0),
               StreamUpdate("hello world", "", " world", 5.0, final=True)]
    terminal, pipe = Terminal(), io.StringIO()
    for update in updates:
        LivePrinter(terminal).show(update)
    printer = LivePrinter(pipe)
    for update in updates:
        printer.show(update)
    assert pipe.getvalue() == "hello world\n"          # committed text only, appended
    assert "\r\033[K" in terminal.getvalue() and "\033[2mwor" in terminal.getvalue()
