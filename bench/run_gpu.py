"""GPU benchmark: full-size SD1.5 and SDXL architectures (random weights) at native resolution.

    uv run python bench/run_gpu.py [--models sd15 sdxl] [--dtype fp16] [--steps 20] [--windows 16]
    uv run python bench/run_gpu.py --smoke        # the same code on tiny models on the CPU (CI-sized)

For each model: a LocoGen sweep (m=1) over the first `--windows` cross-attention layers for one prompt,
run as the reference-style loop (bench/reference.py) and by the harness in-process (batched, batch size
probed from free memory), in one process; images/s, ratio, peak GPU memory. Then the UNet alone: FLOPs of
one forward at the harness's batch (torch.utils.flop_counter), achieved FLOP/s over timed forwards, and
the GPU's measured dense matmul throughput in the same dtype, so the UNet's share of peak is a same-run
ratio. Results go to bench/results/gpu-<device>.json and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from bench import reference  # noqa: E402
from harness.cli import quiet  # noqa: E402
from harness.generate import GenerationConfig  # noqa: E402
from harness.jobs import load_job  # noqa: E402
from harness.results import provenance  # noqa: E402
from harness.run.plan import plan_units  # noqa: E402
from harness.run.worker import Worker  # noqa: E402

PROMPT, TARGET = "a house in the style of van gogh", "a house"


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device: str, repeats: int) -> tuple[float, object]:
    times, value = [], None
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        value = fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), value


def matmul_peak(device: str, dtype: torch.dtype, n: int) -> float:
    """Measured dense matmul FLOP/s in `dtype` (n×n @ n×n, median of 10 after warm-up)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    seconds, _ = timed(lambda: a @ b, device, 10)
    return 2 * n**3 / seconds


def unet_throughput(adapter, batch_rows: int, cfg: GenerationConfig, device: str, repeats: int) -> dict:
    """FLOPs of one UNet forward on a CFG batch of `batch_rows` rows and the FLOP/s it achieves."""
    unet = adapter.denoiser
    dtype = adapter.dtype
    latent = cfg.height // adapter.pipe.vae_scale_factor
    n = 2 * batch_rows
    sample = torch.randn(n, unet.config.in_channels, latent, latent, device=device, dtype=dtype)
    embeds = torch.randn(n, 77, unet.config.cross_attention_dim, device=device, dtype=dtype)
    kwargs = {}
    if adapter.arch == "sdxl":
        pooled = unet.config.projection_class_embeddings_input_dim - 6 * unet.config.addition_time_embed_dim
        kwargs["added_cond_kwargs"] = {"text_embeds": torch.randn(n, pooled, device=device, dtype=dtype),
                                       "time_ids": torch.randn(n, 6, device=device, dtype=dtype)}
    t = torch.tensor(500, device=device)
    with torch.no_grad():
        counter = FlopCounterMode(display=False)
        with counter:
            unet(sample, t, embeds, **kwargs)
        flops = counter.get_total_flops()
        for _ in range(2):
            unet(sample, t, embeds, **kwargs)
        seconds, _ = timed(lambda: unet(sample, t, embeds, **kwargs), device, repeats)
    return {"unet_batch": n, "unet_gflop_per_forward": flops / 1e9, "unet_forward_s": seconds,
            "unet_tflops": flops / seconds / 1e12}


def run(arch: str, args) -> dict:
    smoke = args.smoke
    device = "cpu" if smoke else "cuda"
    model = f"tiny:{arch}" if smoke else f"random:{arch}"
    job = load_job({"name": f"gpu-{arch}", "model": model, "method": "locogen", "device": device,
                    "dtype": "fp32" if smoke else args.dtype, "steps": args.steps, "save_images": True,
                    "sites": {"kind": "cross_attn", "index": f"0-{args.windows - 1}"},
                    "prompts": [{"prompt": PROMPT, "target": TARGET}]})
    worker = Worker(job)
    adapter, cfg = worker.adapter, worker.config
    units = plan_units(job, worker.variants)

    def reference_loop():
        return reference.locogen_loop(adapter, [(PROMPT, TARGET)], 0, cfg, starts=args.windows)

    worker.run_unit(units[0])  # warm-up (and batch-size probe)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    harness_s, _ = timed(lambda: worker.run_unit(units[0]), device, args.repeats)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
    reference_loop()  # warm-up
    reference_s, images = timed(reference_loop, device, args.repeats)
    science = len(images)
    out = {"arch": arch, "model": model, "device": provenance.device_name(device), "dtype": adapter.info.dtype,
           "resolution": cfg.height, "steps": cfg.steps, "windows": args.windows, "images": science,
           "batch_size": worker.batch_size, "reference_s": reference_s, "harness_s": harness_s,
           "reference_img_s": science / reference_s, "harness_img_s": science / harness_s,
           "ratio": reference_s / harness_s, "peak_gib": peak}
    out.update(unet_throughput(adapter, min(worker.batch_size, args.windows + 2), cfg, device, args.repeats))
    out["matmul_tflops"] = matmul_peak(device, adapter.dtype, 512 if smoke else 8192) / 1e12
    out["unet_share_of_matmul_peak"] = out["unet_tflops"] / out["matmul_tflops"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["sd15", "sdxl"], choices=["sd15", "sdxl"])
    parser.add_argument("--dtype", default="fp16", choices=["fp16", "bf16"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--windows", type=int, default=16, help="LocoGen windows per sweep (both ways)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="tiny models on the CPU: checks the script runs")
    parser.add_argument("--out", help="JSON file (default bench/results/gpu-<device>.json)")
    args = parser.parse_args()
    if args.smoke:
        args.steps, args.windows, args.repeats = 2, 3, 1
    elif not torch.cuda.is_available():
        sys.exit("run_gpu.py: no CUDA device (use --smoke to check the script on the CPU)")
    quiet()
    rows = [run(arch, args) for arch in args.models]
    device = rows[0]["device"].replace(" ", "_").replace("/", "_")
    report = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), **provenance.versions(),
              "smoke": args.smoke, "results": rows}
    path = Path(args.out or f"bench/results/gpu-{device}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    print("| model | device | dtype | res | images | reference img/s | harness img/s | ratio | batch | peak GiB | "
          "UNet TFLOP/s | matmul TFLOP/s | share |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        peak = "–" if r["peak_gib"] is None else f"{r['peak_gib']:.1f}"
        print(f"| {r['arch']} | {r['device']} | {r['dtype']} | {r['resolution']} | {r['images']} | "
              f"{r['reference_img_s']:.2f} | {r['harness_img_s']:.2f} | {r['ratio']:.2f}× | {r['batch_size']} | {peak} | "
              f"{r['unet_tflops']:.1f} | {r['matmul_tflops']:.1f} | {100 * r['unet_share_of_matmul_peak']:.0f}% |")


if __name__ == "__main__":
    main()
