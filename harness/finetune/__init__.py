"""LoRA fine-tuning of chosen attention layers (P3's first application, docs/methods.md §3.8).

P3 localizes rendered text to a few cross-attention layers (SDXL 55–57) and then fine-tunes *only those*
with LoRA, reporting better text than a LoRA on every attention layer at a fraction of the parameters.
`loco finetune SPEC.yaml --out DIR` makes that a step of the harness's loop: sweep → `loco candidates` →
fine-tune the candidate set (or the baselines: all attention, all cross-attention, N random layers) →
sweep or evaluate the adapted model with `lora: DIR` in any job.

* `spec` — the fine-tune file (keys, P3's defaults, one-line errors);
* `targets` — which sites and which of their Linear projections get adapters;
* `data` — an image folder (diffusers' metadata.jsonl) or the toyworld generator, hashed;
* `objective` — the ordinary diffusers training step per architecture (SD1.x/2.x, SDXL, IF stage I, SD3);
* `train` — the loop: PEFT LoRA, AdamW, progress bar, checkpoints, resume;
* `output` — the adapter directory (diffusers' `pytorch_lora_weights.safetensors` + manifest) and loading
  it into a job's model (`attach_lora`).
"""

from harness.finetune.output import attach_lora, read_manifest
from harness.finetune.spec import FinetuneError, FinetuneSpec, load_finetune
from harness.finetune.train import run_finetune

__all__ = ["FinetuneError", "FinetuneSpec", "attach_lora", "load_finetune", "read_manifest", "run_finetune"]
