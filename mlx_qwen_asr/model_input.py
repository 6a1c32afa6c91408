"""What the model is fed for one clip of 16 kHz audio: silence check, short-clip padding,
mel, encoder, audio-token count, prompt ids and embeddings.

Offline, batched and streamed transcription, the aligner, the benchmark and the parity
checks all build their input here, so a parity test compares what the pipeline feeds;
the ASR prompt's ids are laid out in one place, `prompt_ids`.
"""

from __future__ import annotations

import time

import mlx.core as mx
import numpy as np

from .audio.load import SAMPLE_RATE
from .model.config import AudioEncoderConfig
from .model.encoder import audio_token_count
from .audio.mel import log_mel_spectrogram
from .prompt import prompt_text

# The official pipeline feeds audio of up to 20 min as it is, however short; only clips too
# short for the mel's reflect padding (n_fft/2 samples, where the official code fails) are
# zero-padded, to the 0.5 s it pads short long-audio chunks to (utils.MIN_ASR_INPUT_SECONDS).
MIN_SAMPLES_AS_IS = 201
PAD_TO_SECONDS = 0.5
# Peak below -80 dBFS: nothing audible, so the model is not asked (it would only guess).
SILENCE_PEAK = 1e-4


def is_silent(samples: np.ndarray) -> bool:
    return len(samples) == 0 or float(np.max(np.abs(samples))) < SILENCE_PEAK


def padded_for_mel(samples: np.ndarray) -> np.ndarray:
    """`samples`, zero-padded to PAD_TO_SECONDS if too short for the mel (see above)."""
    if len(samples) < MIN_SAMPLES_AS_IS:
        return np.pad(samples, (0, int(PAD_TO_SECONDS * SAMPLE_RATE) - len(samples)))
    return samples


def clip_mel(samples: np.ndarray, audio: AudioEncoderConfig) -> mx.array:
    """[n_mels, frames] log-mel of a clip (padded if too short)."""
    return log_mel_spectrogram(padded_for_mel(samples), audio.num_mel_bins)


def encode_clip(network, audio: AudioEncoderConfig, samples: np.ndarray, timings: dict | None = None) -> tuple[mx.array, int]:
    """(audio embeddings [N, D], N) of a clip through mel and encoder. With `timings`, each
    stage is evaluated and its seconds added under "mel" and "encoder"."""
    start = time.perf_counter()
    mel = clip_mel(samples, audio)
    if timings is not None:
        mx.eval(mel)
        add_time(timings, "mel", time.perf_counter() - start)
    start = time.perf_counter()
    embeddings = network.encode_audio(mel)
    if timings is not None:
        mx.eval(embeddings)
        add_time(timings, "encoder", time.perf_counter() - start)
    return embeddings, audio_token_count(mel.shape[1], audio.chunk_frames)


def prompt_ids(tokenizer, num_audio_tokens: int, context: str = "", language: str | None = None) -> list[int]:
    """The ASR prompt's ids (prompt.prompt_text): the system turn with `context`, the user turn
    with `num_audio_tokens` audio pads, the assistant's turn opened, with the language header
    when `language` is forced. Every ASR prompt, offline, batched, streamed or benchmarked,
    is laid out here."""
    return tokenizer.encode(prompt_text(num_audio_tokens, context, language))


def embed_asr_prompt(model, audio_embeddings: mx.array, context: str = "", language: str | None = None,
                     text: list[int] = ()) -> tuple[list[int], mx.array]:
    """(ids, [P, hidden] embeddings) of the ASR prompt around `audio_embeddings` [N, hidden]
    (`model`: an ASRModel), followed by the `text` ids (streaming feeds its committed text
    after the prompt)."""
    ids = prompt_ids(model.tokenizer, audio_embeddings.shape[0], context, language) + list(text)
    return ids, model.network.embed_prompt(ids, audio_embeddings)[0]


def asr_prompt(model, samples: np.ndarray, context: str = "", language: str | None = None,
               timings: dict | None = None) -> tuple[list[int], mx.array] | None:
    """(prompt ids, [P, hidden] embeddings with the audio in place) of a clip for the ASR
    decoder (`model`: an ASRModel); None for silence."""
    if is_silent(samples):
        return None
    audio_embeddings, _ = encode_clip(model.network, model.config.audio, samples, timings)
    return embed_asr_prompt(model, audio_embeddings, context, language)


def asr_prompts(model, clips: list[np.ndarray], contexts: list[str], languages: list[str | None],
                timings: list[dict] | None = None) -> list[tuple[list[int], mx.array] | None]:
    """`asr_prompt` of several clips, clip i with its own `contexts[i]` and `languages[i]`
    (requests batched together differ), their encoder run as one batch (encoder.encode_batch);
    each clip's timings (if given) are charged an equal part of the batch's mel and encoder time."""
    live = [i for i, samples in enumerate(clips) if not is_silent(samples)]
    prompts: list = [None] * len(clips)
    if not live:
        return prompts
    start = time.perf_counter()
    mels = [clip_mel(clips[i], model.config.audio) for i in live]
    mx.eval(mels)
    mel_s = time.perf_counter() - start
    start = time.perf_counter()
    encoded = model.network.audio_tower.encode_batch(mels)
    mx.eval(encoded)
    encoder_s = time.perf_counter() - start
    for i, embeddings in zip(live, encoded):
        if timings is not None:
            add_time(timings[i], "mel", mel_s / len(live))
            add_time(timings[i], "encoder", encoder_s / len(live))
        prompts[i] = embed_asr_prompt(model, embeddings, contexts[i], languages[i])
    return prompts


def add_time(timings: dict, stage: str, seconds: float) -> None:
    timings[stage] = timings.get(stage, 0.0) + seconds
