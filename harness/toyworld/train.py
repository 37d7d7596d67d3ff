"""Training the toyworld model from scratch, in two phases, deterministic from one seed.

1. **VAE** (`train_vae`): the AutoencoderKL learns to reconstruct rendered images (MSE + L1, a tiny KL
   weight so the latent stays a well-scaled Gaussian). The world's flat colours compress easily, so a
   few hundred steps suffice. Its latents' standard deviation sets `scaling_factor`, as SD's 0.18215.
2. **Diffusion** (`train_diffusion`): the UNet and the CLIP text encoder train jointly on the VAE's
   latents (pre-encoded once: posterior mean and std, re-sampled each step) with SD1.x's objective —
   predict the noise added at a uniformly drawn timestep of the scaled-linear schedule. A share of
   captions is replaced by the empty prompt so classifier-free guidance works at inference.

Everything random comes from generators seeded from `TrainConfig.seed`, so a run repeats on the same
machine; across machines CPU kernels may round differently and runs drift apart slowly (not bitwise).
One thread: on a CPU shared with other jobs, torch's OpenMP threads spin at barriers and two threads
ran 2-7x *slower* than one (measured, see TRAINING.md).

    uv run loco toyworld train --out runs/toyworld                  # from scratch, the defaults: ~55 min on 2 cores
    uv run loco toyworld train --out runs/more --init runs/toyworld/model --seed 1 --steps 5000 --lr 3e-4 --warmup 50
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from harness.toyworld.data import RenderedSet, rendered_set
from harness.toyworld.model import ToyModelConfig, UNetOrganism, build_vae, count_parameters, train_scheduler


@dataclass(frozen=True)
class TrainConfig:
    """Training settings. The defaults are the one-run recipe: from scratch, `loco toyworld train --out DIR`
    took 53 min on one core and met the quality bar (held-out colour 0.81, shape 0.91, background 0.96).
    The shipped weights came from four shorter stages instead (weights/TRAINING.md)."""

    seed: int = 0
    n_samples: int = 30000       # pre-rendered training images (each seen ~12x at the default steps)
    vae_steps: int = 600
    vae_batch: int = 32
    vae_lr: float = 2e-3
    kl_weight: float = 1e-6      # SD's VAE uses ~1e-6: a nearly deterministic autoencoder
    steps: int = 11000
    batch: int = 32              # more updates per minute; conditioning is learned per update
    lr: float = 1e-3             # high for a small model trained briefly; warmup keeps the start stable
    warmup: int = 100
    min_lr_ratio: float = 0.1    # cosine decay to this share of lr
    cond_dropout: float = 0.1    # empty-prompt share, for classifier-free guidance
    partial_captions: float = 0.0  # share of object captions swapped for one naming only some attributes
    ema_decay: float = 0.995     # the shipped UNet/text encoder are the EMA weights
    minutes: float | None = None  # stop early after this much wall time (steps still sets the LR schedule)
    checkpoint_minutes: float = 4.0
    eval_every: int = 250        # steps between quick colour checks (0: only at the end)
    threads: int = 1


@dataclass
class Run:
    """What a training run leaves behind (also written under the output directory)."""

    pipe: object
    losses: list[dict]
    evals: list[dict]


def _lr_lambda(cfg: TrainConfig):
    def factor(step: int) -> float:
        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return factor


def train_vae(model_cfg: ToyModelConfig, cfg: TrainConfig, data: RenderedSet, log=print):
    """Phase 1: the AutoencoderKL on rendered images; returns it with `scaling_factor` set."""
    torch.manual_seed(cfg.seed)
    vae = build_vae(model_cfg).train()
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 50))
    rng = np.random.default_rng([cfg.seed, 1])
    start = time.time()
    for step in range(cfg.vae_steps):
        x = data.tensors(rng.integers(0, len(data), cfg.vae_batch))
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample()).sample
        loss = (recon - x).pow(2).mean() + 0.5 * (recon - x).abs().mean() + cfg.kl_weight * posterior.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0 or step == cfg.vae_steps - 1:
            log(f"vae step {step} loss {loss.item():.4f} ({time.time() - start:.0f}s)")
    vae.eval()
    mean, _ = encode_latents(vae, data)
    vae.register_to_config(scaling_factor=float(1.0 / mean.std()))
    return vae


@torch.no_grad()
def encode_latents(vae, data: RenderedSet, batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and std of every image (unscaled)."""
    means, stds = [], []
    for i in range(0, len(data), batch):
        dist = vae.encode(data.tensors(slice(i, i + batch))).latent_dist
        means.append(dist.mean)
        stds.append(dist.std)
    return torch.cat(means), torch.cat(stds)


def organism(model_cfg):
    """The organism a model configuration describes: the UNet (`ToyModelConfig`) or the DiT (`DitConfig`)."""
    from harness.toyworld.dit import DitConfig, PixArtOrganism

    return PixArtOrganism(model_cfg) if isinstance(model_cfg, DitConfig) else UNetOrganism(model_cfg)


class _EMA:
    """Exponential moving average of parameters: smoother weights than the last step's, better samples."""

    def __init__(self, modules, decay: float):
        self.decay = decay
        self.params = [p for m in modules for p in m.parameters()]
        self.shadow = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def update(self, step: int):
        d = min(self.decay, (1 + step) / (10 + step))
        for s, p in zip(self.shadow, self.params):
            s.lerp_(p, 1 - d)

    @torch.no_grad()
    def swap(self):
        for s, p in zip(self.shadow, self.params):
            tmp = p.detach().clone()
            p.copy_(s)
            s.copy_(tmp)


def train_diffusion(model_cfg, cfg: TrainConfig, data: RenderedSet, vae, out: Path | None = None,
                    log=print, evaluate=None, init: Path | None = None) -> Run:
    """Phase 2: the denoiser (UNet or DiT, by `model_cfg`) and its text encoder, jointly, on the VAE's
    latents. `evaluate(pipe, step)` → dict is called every `eval_every` steps (with the EMA weights);
    checkpoints go to `out/checkpoint`. `init`: start from a saved pipeline's denoiser and text encoder (a
    second stage; the optimizer starts afresh)."""
    torch.manual_seed(cfg.seed + 1)
    kind = organism(model_cfg)
    text_encoder, denoiser = kind.load(init) if init is not None else kind.build()
    pipe = kind.assemble(vae, text_encoder, denoiser)
    text_encoder.train()
    denoiser.train()
    log(f"parameters: {kind.denoiser_name} {count_parameters(denoiser):,}, "
        f"text encoder {count_parameters(text_encoder):,}, vae {count_parameters(vae):,}")
    mean, std = encode_latents(vae, data)
    scale = vae.config.scaling_factor
    ids, masks = kind.tokenize(pipe, data.captions)
    empty_ids, empty_mask = kind.tokenize(pipe, [""])
    partial = _partial_ids(kind, pipe, data) if cfg.partial_captions > 0 else None
    noise_schedule = train_scheduler()
    params = list(denoiser.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg))
    ema = _EMA([denoiser, text_encoder], cfg.ema_decay)
    gen = torch.Generator().manual_seed(cfg.seed + 2)
    losses, evals = [], []
    start = last_ckpt = time.time()
    cpu_start = time.process_time()
    for step in range(cfg.steps):
        idx = torch.randint(0, len(data), (cfg.batch,), generator=gen)
        z0 = (mean[idx] + std[idx] * torch.randn(mean[idx].shape, generator=gen)) * scale
        noise = torch.randn(z0.shape, generator=gen)
        t = torch.randint(0, noise_schedule.config.num_train_timesteps, (cfg.batch,), generator=gen)
        tokens = ids[idx].clone()
        mask = masks[idx].clone() if masks is not None else None
        if partial is not None:
            swap = torch.rand(cfg.batch, generator=gen) < cfg.partial_captions
            pick = torch.randint(0, partial[0].shape[1], (cfg.batch,), generator=gen)
            tokens[swap] = partial[0][idx, pick][swap]
            if mask is not None:
                mask[swap] = partial[1][idx, pick][swap]
        drop = torch.rand(cfg.batch, generator=gen) < cfg.cond_dropout
        tokens[drop] = empty_ids[0]
        if mask is not None:
            mask[drop] = empty_mask[0]
        pred = kind.predict(denoiser, text_encoder, noise_schedule.add_noise(z0, noise, t), t, tokens, mask)
        loss = torch.nn.functional.mse_loss(pred, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        ema.update(step)
        losses.append({"step": step, "seconds": round(time.time() - start, 2),
                       "cpu_seconds": round(time.process_time() - cpu_start, 2), "loss": loss.item(),
                       "lr": sched.get_last_lr()[0]})
        if step % 25 == 0:
            recent = np.mean([r["loss"] for r in losses[-25:]])
            log(f"step {step} loss {recent:.4f} ({time.time() - start:.0f}s)")
        last = step == cfg.steps - 1 or (cfg.minutes is not None and time.time() - start > cfg.minutes * 60)
        if evaluate is not None and (last or (cfg.eval_every and step and step % cfg.eval_every == 0)):
            ema.swap()
            result = {"step": step + 1, "seconds": round(time.time() - start, 1), **evaluate(pipe, step + 1)}
            ema.swap()
            evals.append(result)
            log(f"eval {json.dumps(result)}")
        if out is not None and (time.time() - last_ckpt > cfg.checkpoint_minutes * 60 or last):
            ema.swap()
            save_pipeline(pipe, out / "checkpoint", {"step": step + 1})
            ema.swap()
            last_ckpt = time.time()
        if last:
            break
    ema.swap()  # ship the EMA weights
    denoiser.eval()
    text_encoder.eval()
    return Run(pipe, losses, evals)


def _partial_ids(kind, pipe, data: RenderedSet) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Token ids (and masks) of every sample's partial captions, N x len(PARTIAL_TEMPLATES) x tokens (a sign
    repeats its own caption, so swapping never changes what a sign's caption says)."""
    from harness.toyworld.world import PARTIAL_TEMPLATES, partial_captions

    k = len(PARTIAL_TEMPLATES)
    texts = [c for s in data.samples for c in (partial_captions(s) * k)[:k]]
    ids, masks = kind.tokenize(pipe, texts)
    return ids.view(len(data), k, -1), None if masks is None else masks.view(len(data), k, -1)


def save_pipeline(pipe, directory: Path, extra: dict | None = None) -> None:
    """diffusers layout, safetensors only, plus the `toyworld.json` sidecar with inference defaults."""
    from harness.toyworld.sidecar import write_sidecar

    pipe.save_pretrained(directory, safe_serialization=True)
    write_sidecar(directory, extra or {})


def train(out: Path, model_cfg, cfg: TrainConfig, vae_dir: Path | None = None, log=print,
          init: Path | None = None) -> Run:
    """Both phases and the training report under `out` (the final pipeline in `out/model`). With `init`
    (a trained pipeline directory) the denoiser and text encoder continue from its weights, with its VAE.
    The DiT (`DitConfig`) trains no VAE: it reuses the UNet organism's shipped one unless `vae_dir` says
    otherwise, so both organisms denoise the same latents."""
    from harness.toyworld.dit import DitConfig
    from harness.toyworld.report import write_report
    from harness.toyworld.selfcheck import color_check, probe_check

    torch.set_num_threads(cfg.threads)
    out.mkdir(parents=True, exist_ok=True)
    began = time.time()
    data = rendered_set(cfg.n_samples, cfg.seed, model_cfg.image_size)
    log(f"rendered {len(data)} training images in {time.time() - began:.0f}s")
    if init is not None and vae_dir is None:
        vae_dir = init / "vae"
    if isinstance(model_cfg, DitConfig) and vae_dir is None:
        from harness.models.builtin import BUILTIN_DIRS

        vae_dir = BUILTIN_DIRS["toyworld"] / "vae"
    if vae_dir is not None:
        from diffusers import AutoencoderKL

        vae = AutoencoderKL.from_pretrained(vae_dir, use_safetensors=True, local_files_only=True).eval()
    else:
        vae = train_vae(model_cfg, cfg, data, log)
    vae.save_pretrained(out / "vae", safe_serialization=True)
    vae_seconds = time.time() - began

    def evaluate(pipe, step):
        return {**color_check(pipe, n_per_color=8, seed=cfg.seed), **probe_check(pipe, seed=cfg.seed)}

    run = train_diffusion(model_cfg, cfg, data, vae, out, log, evaluate, init)
    steps_done = len(run.losses)
    save_pipeline(run.pipe, out / "model", {"steps_trained": steps_done, "seed": cfg.seed})
    timings = {"vae_seconds": round(vae_seconds, 1), "total_seconds": round(time.time() - began, 1),
               "steps_done": steps_done, "vae_reused_from": str(vae_dir) if vae_dir else None,
               "init": str(init) if init else None}
    write_report(out, run, model_cfg, cfg, timings)  # first: nothing after training may lose the curves
    check = {split: color_check(run.pipe, n_per_color=16, seed=cfg.seed + 1000, heldout=split == "heldout")
             for split in ("train", "heldout")}
    log(f"colour check (16 prompts per colour): {json.dumps(check)}")
    write_report(out, run, model_cfg, cfg, timings, check)
    return run


def settings(model_cfg, cfg: TrainConfig) -> dict:
    return {"model": model_cfg.to_dict(), "training": asdict(cfg)}
