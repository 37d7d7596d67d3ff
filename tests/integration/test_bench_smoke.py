"""The GPU benchmark script runs end to end (on tiny models on the CPU), so it does not rot between the
sessions that have a GPU to run it on."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_benchmark_smoke(tmp_path):
    out = tmp_path / "gpu.json"
    done = subprocess.run([sys.executable, "bench/run_gpu.py", "--smoke", "--models", "sd15", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    (row,) = json.loads(out.read_text())["results"]
    assert row["images"] == 4 and row["ratio"] > 0 and row["unet_gflop_per_forward"] > 0
    assert "| sd15 |" in done.stdout
