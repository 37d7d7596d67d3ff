"""The training objective per architecture: the ordinary diffusers training step, as its examples write it.

One step (`Objective.loss`): encode the images to the denoiser's input space (the VAE's latents times its
scaling factor; DeepFloyd IF stage I trains on pixels), draw noise and timesteps, noise the input with the
training scheduler, run the denoiser on it with the captions' conditioning, and regress its output on the
scheduler's target:

* **SD1.x/2.x, SDXL, IF** (`train_text_to_image_lora*.py`, `train_dreambooth_lora.py`): DDPM noising at a
  uniform timestep; the target is the noise (``epsilon``) or the velocity (``v_prediction``, SD2.x-v), as
  the scheduler's config says. SDXL adds its micro-conditioning (pooled text embedding, and original size,
  crop corner and target size as time ids). IF's UNet predicts noise and a variance: the loss reads the
  noise channels only. `snr_gamma` turns on Min-SNR weighting as those scripts' ``--snr_gamma`` does.
* **SD3** (`train_text_to_image_lora_sd3.py`): rectified flow — σ from the logit-normal density,
  x_σ = (1 − σ)·x₀ + σ·ε, target ε − x₀, weight 1 (the script's default weighting scheme).

What differs by architecture is declared by its adapter (`harness.models.<arch>`): `training_objective`
(``ddpm`` or ``flow``) and `training_forward`, the denoiser called with the conditioning as its training
script passes it (SDXL's time ids, SD3's pooled projections, IF's noise channels).

Text encoders stay frozen (P3 adapts the denoiser only), so each caption's conditioning is computed once
and cached when the captions are few (toyworld: a few dozen), else per batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from harness.errors import UserError
from harness.finetune.data import Batch

CACHE_CAPTIONS = 4096  # cache the conditioning of up to this many distinct captions


class Objective:
    """The loss of one micro-batch on `adapter`'s denoiser; every random draw comes from `generator`."""

    def __init__(self, adapter, snr_gamma: float | None = None):
        from diffusers import DDPMScheduler, FlowMatchEulerDiscreteScheduler

        if adapter.training_objective is None:
            raise UserError(f"finetune: loco has no training step for {adapter.arch} models yet (the architectures "
                            "with one: SD1.x/2.x, SDXL, DeepFloyd IF stage I, SD3/SD3.5)")
        self.adapter = adapter
        self.flow = adapter.training_objective == "flow"  # rectified flow (SD3, SD3.5)
        self.snr_gamma = snr_gamma
        config = adapter.pipe.scheduler.config
        if self.flow:
            self.scheduler = FlowMatchEulerDiscreteScheduler.from_config(config)
        else:
            self.scheduler = DDPMScheduler.from_config(config)
        self.cache: dict[str, dict[str, torch.Tensor]] = {}
        self.vae = getattr(adapter.pipe, "vae", None)

    # ---- conditioning --------------------------------------------------------------------------------
    def conditioning(self, captions: list[str]) -> dict[str, torch.Tensor]:
        missing = [c for c in dict.fromkeys(captions) if c not in self.cache]
        if missing:
            encoded = self.adapter.encode(missing)
            rows = {c: {k: v[i:i + 1] for k, v in encoded.items()} for i, c in enumerate(missing)}
            if len(self.cache) + len(rows) > CACHE_CAPTIONS:
                self.cache.clear()
            self.cache.update(rows)
        parts = [self.cache[c] for c in captions]
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    # ---- the input space -----------------------------------------------------------------------------
    @torch.no_grad()
    def encode_images(self, pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        device = self.adapter.device
        if self.vae is None:  # IF stage I: pixel space
            return pixels.to(device, self.adapter.dtype)
        vae_dtype = next(self.vae.parameters()).dtype
        encoded = self.vae.encode(pixels.to(device, vae_dtype))
        if hasattr(encoded, "latent_dist"):
            dist = encoded.latent_dist
            noise = torch.randn(dist.mean.shape, generator=generator, dtype=torch.float32).to(device, dist.mean.dtype)
            latents = dist.mean + dist.std * noise
        else:  # SANA's DC-AE is deterministic (`train_dreambooth_lora_sana.py`: ``vae.encode(x).latent``)
            latents = encoded.latent
        shift = getattr(self.vae.config, "shift_factor", None) or 0.0
        return ((latents - shift) * self.vae.config.scaling_factor).to(self.adapter.dtype)

    # ---- one step ------------------------------------------------------------------------------------
    def loss(self, batch: Batch, generator: torch.Generator, autocast) -> torch.Tensor:
        device = self.adapter.device
        x0 = self.encode_images(batch.pixels, generator)
        cond = self.conditioning(batch.captions)
        noise = torch.randn(x0.shape, generator=generator, dtype=torch.float32).to(device, x0.dtype)
        n = x0.shape[0]
        with autocast():
            if self.flow:
                return self._flow_loss(x0, noise, cond, batch, generator)
            t = torch.randint(0, self.scheduler.config.num_train_timesteps, (n,), generator=generator).to(device)
            noisy = self.scheduler.add_noise(x0, noise, t)
            pred = self.adapter.training_forward(noisy, t, cond, batch)
            if self.scheduler.config.prediction_type == "v_prediction":
                target = self.scheduler.get_velocity(x0, noise, t)
            else:
                target = noise
            if self.snr_gamma is None:
                return F.mse_loss(pred.float(), target.float())
            return self._min_snr_loss(pred, target, t)

    def _min_snr_loss(self, pred, target, t) -> torch.Tensor:
        from diffusers.training_utils import compute_snr

        snr = compute_snr(self.scheduler, t)
        weight = torch.stack([snr, self.snr_gamma * torch.ones_like(t)], dim=1).min(dim=1)[0]
        weight = weight / snr if self.scheduler.config.prediction_type == "epsilon" else weight / (snr + 1)
        loss = F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=list(range(1, pred.ndim)))
        return (loss * weight).mean()

    def _flow_loss(self, x0, noise, cond, batch: Batch, generator) -> torch.Tensor:
        from diffusers.training_utils import compute_density_for_timestep_sampling

        n = x0.shape[0]
        u = compute_density_for_timestep_sampling("logit_normal", n, logit_mean=0.0, logit_std=1.0,
                                                  generator=generator)
        steps = self.scheduler.config.num_train_timesteps
        indices = (u * steps).long().clamp(max=steps - 1)
        timesteps = self.scheduler.timesteps[indices].to(x0.device)
        sigmas = self.scheduler.sigmas[indices].to(x0.device, x0.dtype).view(n, *[1] * (x0.ndim - 1))
        noisy = (1.0 - sigmas) * x0 + sigmas * noise
        pred = self.adapter.training_forward(noisy, timesteps, cond, batch)
        return F.mse_loss(pred.float(), (noise - x0).float())
