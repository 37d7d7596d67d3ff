"""Edit-time benchmark: how long each closed-form editor takes, on CPU, at tiny and at real sizes.

    uv run python bench/run_edit.py [--repeats 3] [--encoders] [--out bench/results/edit_cpu.json]

Workloads:
  tiny          every editor end to end on tiny SD1.x / SDXL (key extraction + solves), as `loco edit` runs it
  real shapes   the solves alone on the real matrices' shapes, with random weights and keys of the real
                count: SD1.5 DiffQuickFix (768×768 out_proj, 291 keys), SD1.5 LocoEdit (layers 8–9: 4 × 1280×768),
                SD1.5 TIME (16 to_v, 77 keys), SDXL LocoEdit (layers 45–47: 6 × 1280×2048), SDXL UCE (all 70
                attn2 to_k/to_v: 20 × 640×2048 + 120 × 1280×2048)
  --encoders    also the key extraction at real size: SD1.5's CLIP-L and SDXL's CLIP-L + OpenCLIP-bigG text
                encoders with random weights (their real configurations) encoding the edit's prompts

Compared with P1's "under a second" (DiffQuickFix, GPU) and P3's 10.4 s per SDXL text edit (which is
generation time: P3's edit has no solve at all). Medians over repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from bench.timing import median_seconds  # noqa: E402
from harness.edit.run import editor  # noqa: E402
from harness.edit.solver import ridge_edit, ridge_edit_shared  # noqa: E402
from harness.edit.spec import load_edit  # noqa: E402
from harness.models import load_model  # noqa: E402

EDIT = [{"concept": "van gogh", "target": "painting"}]
TINY = {
    "diffquickfix sd15": {"model": "tiny:sd15", "method": "diffquickfix"},
    "locoedit sd15 (8-9)": {"model": "tiny:sd15", "method": "locoedit"},
    "uce sd15 (all 16)": {"model": "tiny:sd15", "method": "uce"},
    "time sd15 (16 to_v)": {"model": "tiny:sd15", "method": "time"},
    "locoedit sdxl (45-47)": {"model": "tiny:sdxl", "method": "locoedit"},
    "uce sdxl (all 70)": {"model": "tiny:sdxl", "method": "uce"},
    "neurons sd15 (detect)": {"model": "tiny:sd15", "method": "neurons", "top_n": 10},
}
ONE_BY_ONE = 8  # matrices timed one factorization each (scaled to the workload's count)
# (label, [(d_out, d_in), ...], keys per matrix)
REAL = [
    ("diffquickfix sd15", [(768, 768)], 291),
    ("locoedit sd15 (8-9)", [(1280, 768)] * 4, 4),
    ("time sd15 (16 to_v)", [(320, 768)] * 5 + [(640, 768)] * 5 + [(1280, 768)] * 6, 77),
    ("locoedit sdxl (45-47)", [(1280, 2048)] * 6, 4),
    ("uce sdxl (all 70)", [(640, 2048)] * 20 + [(1280, 2048)] * 120, 1),
]



def bench_tiny(repeats: int) -> dict:
    out = {}
    models = {m: load_model(m, "cpu") for m in {w["model"] for w in TINY.values()}}
    for label, kw in TINY.items():
        spec = load_edit(kw | {"edits": EDIT})
        run = editor(spec.method)
        run(spec, models[spec.model])  # warm-up (first linalg call, tokenizer caches)
        results = [run(spec, models[spec.model]) for _ in range(repeats)]
        if spec.is_weight_edit:
            out[label] = {"edit_s": statistics.median(r.edit_seconds for r in results),
                          "solve_s": statistics.median(r.solve_seconds for r in results),
                          "matrices": len(results[0].new)}
        else:
            out[label] = {"edit_s": statistics.median(r["detect_seconds"] for r in results)}
    return out


def bench_real(repeats: int) -> dict:
    out = {}
    g = torch.Generator().manual_seed(0)
    ridge_edit(torch.eye(4), torch.randn(2, 4), torch.randn(2, 4), 0.1)  # warm-up
    for label, shapes, n in REAL:
        keys = torch.randn(n, shapes[0][1], generator=g, dtype=torch.float64)  # one edit: shared keys
        weights = [torch.randn(o, i, generator=g) * 0.02 for o, i in shapes]
        values = [torch.randn(n, o, generator=g, dtype=torch.float64) for o, _ in shapes]
        shared = median_seconds(lambda weights=weights, keys=keys, values=values:
                                ridge_edit_shared(weights, keys, values, 0.01), repeats)
        # one factorization per matrix: timed on at most ONE_BY_ONE matrices and scaled to all of them (the
        # matrices of a workload cost alike; UCE's 140 SDXL factorizations alone took minutes on a loaded CPU)
        k = min(len(shapes), ONE_BY_ONE)
        pairs = list(zip(weights[:k], values[:k]))
        part = median_seconds(lambda pairs=pairs, keys=keys: [ridge_edit(w, keys, v, 0.01) for w, v in pairs], repeats)
        out[label] = {"solve_s": shared, "solve_one_by_one_s": part * len(shapes) / k, "one_by_one_timed": k,
                      "matrices": len(shapes), "keys": n, "params": sum(o * i for o, i in shapes)}
    return out


def bench_encoders(repeats: int) -> dict:
    """Key extraction at real size: encode the 8 prompts of a 4-template edit with the real text towers."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from harness.models.parts import clip_tokenizer

    def tower(hidden, layers, heads, inter, proj, act):
        cfg = CLIPTextConfig(vocab_size=49408, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                             num_attention_heads=heads, max_position_embeddings=77, projection_dim=proj or hidden,
                             hidden_act=act)
        return (CLIPTextModelWithProjection if proj else CLIPTextModel)(cfg).eval()

    tok = clip_tokenizer()
    prompts = [t.format(w) for w in ("van gogh", "painting") for t in
               ("{}", "a painting in the style of {}", "a photo in the style of {}", "a picture in the style of {}")]
    ids = tok(prompts, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    out = {}
    towers = {"sd15 clip-l": [tower(768, 12, 12, 3072, None, "quick_gelu")]}
    towers["sdxl clip-l + bigG"] = [towers["sd15 clip-l"][0], tower(1280, 32, 20, 5120, 1280, "gelu")]
    for label, models in towers.items():
        with torch.no_grad():
            out[label] = {"encode_8_prompts_s": median_seconds(lambda models=models: [m(ids, output_hidden_states=True)
                                                                                   for m in models], repeats)}
    return out


SECTIONS = {"tiny": bench_tiny, "real_shapes": bench_real, "encoders": bench_encoders}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--encoders", action="store_true")
    parser.add_argument("--only", choices=list(SECTIONS), action="append",
                        help="run only these sections (repeatable); the result file keeps the others' earlier values")
    parser.add_argument("--out", default="bench/results/edit_cpu.json")
    args = parser.parse_args()
    from harness.cli import quiet

    quiet()
    out = Path(args.out)
    sections = args.only or ["tiny", "real_shapes", *(["encoders"] if args.encoders else [])]
    result = json.loads(out.read_text()) if args.only and out.is_file() else {}
    result.update({"machine": platform.machine(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                   "torch": torch.__version__})
    out.parent.mkdir(parents=True, exist_ok=True)
    for name in sections:  # each section saved as it finishes: a run cut short under load keeps what it measured
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        result[name] = SECTIONS[name](args.repeats)
        for key, value in (("date", datetime.now(timezone.utc).isoformat(timespec="seconds")),
                           ("load_average", [round(load, 2), round(os.getloadavg()[0], 2)]), ("repeats", args.repeats)):
            if not isinstance(result.get(key), dict):  # per section: sections may be run at different times
                result[key] = {}
            result[key][name] = value
        out.write_text(json.dumps(result, indent=2))
        print(f"{name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
