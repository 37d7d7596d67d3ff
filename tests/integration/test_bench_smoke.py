"""The GPU benchmark script runs end to end (on tiny models on the CPU), so it does not rot between the
sessions that have a GPU to run it on: a UNet (LocoGen), FLUX (block-by-block K/V patching, no CFG
batch) and PixArt-α (LocoGen over attn2, T5 text with its padding mask)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_benchmark_smoke(tmp_path):
    out = tmp_path / "gpu.json"
    done = subprocess.run([sys.executable, "bench/run_gpu.py", "--smoke", "--models", "sd15", "flux", "pixart",
                           "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    sd15, flux, pixart = json.loads(out.read_text())["results"]
    assert sd15["images"] == pixart["images"] == 4  # the original + 3 LocoGen windows
    assert flux["images"] == 5  # the clean and styled images + 3 patched dual-stream blocks
    for row in (sd15, flux, pixart):
        assert row["ratio"] > 0 and row["denoiser_gflop_per_forward"] > 0
    # 5 rows: CFG doubles the UNet's and PixArt's, not FLUX's
    assert sd15["denoiser_batch"] == pixart["denoiser_batch"] == 10 and flux["denoiser_batch"] == 5
    assert all(f"| {arch} |" in done.stdout for arch in ("sd15", "flux", "pixart"))
