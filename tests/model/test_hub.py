"""Loading by hub id goes through huggingface_hub's standard cache and honours HF_HUB_OFFLINE.

No network here: the cache is laid out by hand as huggingface_hub writes it
(models--owner--name/refs/main + snapshots/<commit>/files), and the loader runs in a
subprocess so huggingface_hub reads the environment fresh.
"""

import os
import shutil
import subprocess
import sys

COMMIT = "0123456789abcdef0123456789abcdef01234567"

LOAD = (
    "import mlx_qwen_asr, numpy as np\n"
    "m = mlx_qwen_asr.load_model('Qwen/Qwen3-ASR-0.6B', dtype='float32')\n"
    "print('PATH', m.path)\n"
    "r = m.transcribe(np.zeros(8000, np.float32) + 0.01 * np.sin(np.arange(8000)), sample_rate=16000,"
    " max_new_tokens=4)\n"
    "print('TOKENS', len(r.tokens))\n"
)


def _run(env_extra, code=LOAD):
    env = dict(os.environ, **env_extra)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


def test_hub_id_loads_from_the_standard_cache_offline(tiny_checkpoint, tmp_path):
    repo = tmp_path / "hub" / "models--Qwen--Qwen3-ASR-0.6B"
    shutil.copytree(tiny_checkpoint, repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    done = _run({"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")})
    assert done.returncode == 0, done.stderr
    assert f"PATH {repo / 'snapshots' / COMMIT}" in done.stdout
    assert "TOKENS" in done.stdout


def test_hub_id_offline_and_not_cached_is_a_clear_error(tmp_path):
    done = _run({"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "empty")},
                code="import mlx_qwen_asr\nmlx_qwen_asr.load_model('Qwen/Qwen3-ASR-0.6B')\n")
    assert done.returncode != 0
    last_line = done.stderr.strip().splitlines()[-1]
    assert "ModelLoadError" in last_line and "HF_HUB_OFFLINE" in last_line


def test_cli_reports_uncached_hub_model_in_one_line(tmp_path):
    audio = tmp_path / "a.wav"
    import numpy as np
    import soundfile as sf
    sf.write(audio, np.zeros(16000, np.float32), 16000)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path / "empty"))
    done = subprocess.run([sys.executable, "-m", "mlx_qwen_asr", str(audio)], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 2
    assert done.stderr.startswith("error: cannot get Qwen/Qwen3-ASR-0.6B") and "Traceback" not in done.stderr
