"""GPU benchmark: full-size SD1.5, SDXL, FLUX.1-dev and PixArt-α architectures (random weights) at native resolution.

    uv run python bench/run_gpu.py [--models sd15 sdxl flux pixart] [--dtype auto] [--steps 20] [--windows 16]
    uv run python bench/run_gpu.py --smoke        # the same code on tiny models on the CPU (CI-sized)
    uv run python bench/run_gpu.py --dry-run      # each model's job validated and planned, nothing built

For each model, its workload (`WORKLOADS`) over the first `--windows` text-attention layers for one prompt:
LocoGen (m=1) over the UNets' and PixArt's cross-attention layers, block-by-block K/V patching of the text tokens over
FLUX's dual-stream blocks (the clean prompt into the styled one, as Zarei et al.'s FLUX setting) — run as
the reference-style loop (bench/reference.py) and by the harness in-process (batched, batch size probed
from free memory), in one process; images/s, ratio, peak GPU memory. Then the denoiser alone: FLOPs of one
forward at the harness's batch (torch.utils.flop_counter), achieved FLOP/s over timed forwards, and the
GPU's measured dense matmul throughput in the same dtype, so the denoiser's share of peak is a same-run
ratio. Results go to bench/results/gpu-<device>.json and a markdown table on stdout. FLUX at 1024² in
bf16 needs ~35 GiB for the weights (built in fp32 on the GPU first: ~70 GiB) — an 80 GB card or larger.
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

# arch → (method, text-attention kind the windows cover, reference loop). A new architecture is one line.
WORKLOADS = {
    "sd15": ("locogen", "cross_attn", "locogen"),
    "sdxl": ("locogen", "cross_attn", "locogen"),
    "flux": ("locogen", "joint_attn", "patching"),  # no CFG batch; K/V patched from the clean prompt's row
    "pixart": ("locogen", "cross_attn", "locogen"),  # attn2 over the caption projection of T5, padding masked
}


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


def denoiser_inputs(adapter, rows: int, cfg: GenerationConfig, device: str) -> dict:
    """Keyword arguments of one denoiser forward over `rows` generations at the job's size (twice the rows
    under CFG), as the pipeline calls it; random values of the right shapes."""
    net, dtype = adapter.denoiser, adapter.dtype
    n = 2 * rows if adapter.cfg_batch(cfg.guidance_scale) else rows
    latent = cfg.height // adapter.pipe.vae_scale_factor

    def rand(*shape):
        return torch.randn(*shape, device=device, dtype=dtype)

    if adapter.arch.startswith("flux"):  # 2×2-packed latents, text first in the joint sequence
        tokens, text = (latent // 2) ** 2, adapter.t5_tokens
        ids = torch.zeros(tokens, 3, device=device, dtype=dtype)
        extra = {"guidance": torch.full((n,), cfg.guidance_scale, device=device)} if net.config.guidance_embeds else {}
        return {"hidden_states": rand(n, tokens, net.config.in_channels),
                "timestep": torch.full((n,), 0.5, device=device, dtype=dtype),
                "encoder_hidden_states": rand(n, text, net.config.joint_attention_dim),
                "pooled_projections": rand(n, net.config.pooled_projection_dim), "img_ids": ids,
                "txt_ids": torch.zeros(text, 3, device=device, dtype=dtype), **extra}
    if adapter.arch.startswith("pixart"):  # T5 tokens (120 on α) of T5's width, their padding mask
        text = adapter.max_sequence_length
        return {"hidden_states": rand(n, net.config.in_channels, latent, latent),
                "encoder_hidden_states": rand(n, text, net.config.caption_channels),
                "encoder_attention_mask": torch.ones(n, text, device=device, dtype=dtype),
                "timestep": torch.full((n,), 500, device=device), "added_cond_kwargs": pixart_conditions(net, n, cfg)}
    kwargs = {"sample": rand(n, net.config.in_channels, latent, latent), "timestep": torch.tensor(500, device=device),
              "encoder_hidden_states": rand(n, 77, net.config.cross_attention_dim)}
    if adapter.arch == "sdxl":
        pooled = net.config.projection_class_embeddings_input_dim - 6 * net.config.addition_time_embed_dim
        kwargs["added_cond_kwargs"] = {"text_embeds": rand(n, pooled), "time_ids": rand(n, 6)}
    return kwargs


def pixart_conditions(net, rows: int, cfg: GenerationConfig) -> dict:
    """PixArt's `added_cond_kwargs` as its pipeline makes them: None for both unless the transformer embeds
    the resolution and aspect ratio (PixArt-α at 1024², `use_additional_conditions`), then one row each per
    batch row."""
    if not net.use_additional_conditions:
        return {"resolution": None, "aspect_ratio": None}
    device, dtype = net.device, net.dtype
    return {"resolution": torch.tensor([[cfg.height, cfg.width]], device=device, dtype=dtype).repeat(rows, 1),
            "aspect_ratio": torch.full((rows, 1), cfg.height / cfg.width, device=device, dtype=dtype)}


def denoiser_throughput(adapter, batch_rows: int, cfg: GenerationConfig, device: str, repeats: int) -> dict:
    """FLOPs of one denoiser forward on a batch of `batch_rows` rows and the FLOP/s it achieves."""
    net = adapter.denoiser
    kwargs = denoiser_inputs(adapter, batch_rows, cfg, device)
    with torch.no_grad():
        counter = FlopCounterMode(display=False)
        with counter:
            net(**kwargs)
        flops = counter.get_total_flops()
        for _ in range(2):
            net(**kwargs)
        seconds, _ = timed(lambda: net(**kwargs), device, repeats)
    batch = next(iter(kwargs.values())).shape[0]
    return {"denoiser_batch": batch, "denoiser_gflop_per_forward": flops / 1e9, "denoiser_forward_s": seconds,
            "denoiser_tflops": flops / seconds / 1e12}


def job_for(arch: str, args) -> dict:
    """The harness job of `arch`'s workload: one prompt, the first `--windows` layers of its kind."""
    method, kind, _ = WORKLOADS[arch]
    smoke = args.smoke
    return {"name": f"gpu-{arch}", "model": f"tiny:{arch}" if smoke else f"random:{arch}", "method": method,
            "device": "cpu" if smoke else "cuda", "dtype": "fp32" if smoke else args.dtype, "steps": args.steps,
            "save_images": True, "sites": {"kind": kind, "index": f"0-{args.windows - 1}"},
            "prompts": [{"prompt": PROMPT, "target": TARGET}]}


def reference_loop(arch: str, adapter, cfg: GenerationConfig, windows: int):
    """The reference-style loop of `arch`'s workload over the same `windows` layers."""
    if WORKLOADS[arch][2] == "patching":
        return reference.patching_loop(adapter, [(PROMPT, TARGET)], 0, cfg, step_start=0, limit=windows)
    return reference.locogen_loop(adapter, [(PROMPT, TARGET)], 0, cfg, starts=windows)


def run(arch: str, args) -> dict:
    smoke = args.smoke
    job = load_job(job_for(arch, args))
    device, model = job.device, job.model
    worker = Worker(job)
    adapter, cfg = worker.adapter, worker.config
    units = plan_units(job, worker.variants)

    def loop():
        return reference_loop(arch, adapter, cfg, args.windows)

    worker.run_unit(units[0])  # warm-up (and batch-size probe)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    harness_s, _ = timed(lambda: worker.run_unit(units[0]), device, args.repeats)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
    loop()  # warm-up
    reference_s, images = timed(loop, device, args.repeats)
    science = len(images)
    out = {"arch": arch, "model": model, "device": provenance.device_name(device), "dtype": adapter.info.dtype,
           "resolution": cfg.height, "steps": cfg.steps, "windows": args.windows, "images": science,
           "batch_size": worker.batch_size, "reference_s": reference_s, "harness_s": harness_s,
           "reference_img_s": science / reference_s, "harness_img_s": science / harness_s,
           "ratio": reference_s / harness_s, "peak_gib": peak}
    out.update(denoiser_throughput(adapter, min(worker.batch_size, args.windows + 2), cfg, device, args.repeats))
    out["matmul_tflops"] = matmul_peak(device, adapter.dtype, 512 if smoke else 8192) / 1e12
    out["denoiser_share_of_matmul_peak"] = out["denoiser_tflops"] / out["matmul_tflops"]
    return out


def dry_run(args) -> None:
    """Each model's job as the GPU run would submit it, validated and planned (`loco plan`): the full-size
    architecture's sites and costs, with no weights built."""
    from harness.preflight import plan

    for arch in args.models:
        print(plan(load_job(job_for(arch, args))).format())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--dtype", default="auto", choices=["auto", "fp16", "bf16"],
                        help="auto: the architecture's GPU dtype (fp16 for the UNets, bf16 for FLUX)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--windows", type=int, default=16, help="LocoGen windows per sweep (both ways)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="tiny models on the CPU: checks the script runs")
    parser.add_argument("--dry-run", action="store_true", help="validate and plan each model's job; build nothing")
    parser.add_argument("--out", help="JSON file (default bench/results/gpu-<device>.json)")
    args = parser.parse_args()
    if args.smoke:
        args.steps, args.windows, args.repeats = 2, 3, 1
    elif args.dry_run:
        return dry_run(args)
    elif not torch.cuda.is_available():
        sys.exit("run_gpu.py: no CUDA device (use --smoke to check the script on the CPU, --dry-run to plan)")
    quiet()
    rows = [run(arch, args) for arch in args.models]
    device = rows[0]["device"].replace(" ", "_").replace("/", "_")
    report = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), **provenance.versions(),
              "smoke": args.smoke, "results": rows}
    path = Path(args.out or f"bench/results/gpu-{device}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    print("| model | device | dtype | res | images | reference img/s | harness img/s | ratio | batch | peak GiB | "
          "denoiser TFLOP/s | matmul TFLOP/s | share |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        peak = "–" if r["peak_gib"] is None else f"{r['peak_gib']:.1f}"
        print(f"| {r['arch']} | {r['device']} | {r['dtype']} | {r['resolution']} | {r['images']} | "
              f"{r['reference_img_s']:.2f} | {r['harness_img_s']:.2f} | {r['ratio']:.2f}× | {r['batch_size']} | {peak} | "
              f"{r['denoiser_tflops']:.1f} | {r['matmul_tflops']:.1f} | {100 * r['denoiser_share_of_matmul_peak']:.0f}% |")


if __name__ == "__main__":
    main()
