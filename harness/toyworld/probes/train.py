"""Train the toyworld probes: `python -m harness.toyworld.probes.train [--out FILE] [--size 32]`.

Renders of the training split (labels from the world itself), the sample-like damage of
`harness.toyworld.probes.data.degrade`, Adam with a cosine schedule, and a masked cross-entropy per head
(a sign has no shape or colour, an object scene no word: those heads skip it). Deterministic from
``--seed`` on one thread. About 8 minutes on one shared CPU core at 32 px (12,000 renders, 8 epochs); it then prints each head's
accuracy on the held-out renders (`evaluate`) and writes the weights with each head's labels and the
image size in the safetensors metadata (`harness.toyworld.probes.load_probes` reads them back).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from harness.toyworld.probes import WEIGHTS, Probes
from harness.toyworld.probes.data import ATTRIBUTES, degrade, evaluation_sets, permute_colors, training_set, vocabulary
from harness.toyworld.probes.net import ProbeNet


def train(size: int = 32, n: int = 12_000, epochs: int = 8, batch: int = 128, width: int = 32, seed: int = 0,
          lr: float = 3e-3, log=print, extra_words: tuple[str, ...] = ()) -> ProbeNet:
    """`extra_words`: words beyond the world's that the word head also reads (signs of the training split
    redrawn over all words): probes for a fine-tune that teaches the model new words."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    images, targets = training_set(n, size, seed, extra_words)
    vocab = vocabulary(extra_words)
    net = ProbeNet({a: len(vocab[a]) for a in ATTRIBUTES}, width=width, size=size)
    x_all = net.prepare(images)
    y_all = {a: torch.from_numpy(t) for a, t in targets.items()}
    steps = epochs * (n // batch)
    optim = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(optim, max_lr=lr, total_steps=steps, pct_start=0.15)
    net.train()
    t0, step = time.perf_counter(), 0
    for epoch in range(epochs):
        order = torch.randperm(n, generator=generator)
        total = 0.0
        for start in range(0, n - batch + 1, batch):
            idx = order[start:start + batch]
            y = {a: y_all[a][idx] for a in ATTRIBUTES}
            x, y["color"] = permute_colors(x_all[idx], y["color"], generator)
            logits = net(degrade(x, generator))
            loss = sum(F.cross_entropy(logits[a], y[a], ignore_index=-1) for a in ATTRIBUTES if (y[a] >= 0).any())
            optim.zero_grad()
            loss.backward()
            optim.step()
            sched.step()
            total += loss.item()
            step += 1
        log(f"epoch {epoch + 1}/{epochs}: loss {total / (n // batch):.4f} ({time.perf_counter() - t0:.0f} s)")
    return net.eval()


def evaluate(probes: Probes, n: int = 800, seed: int = 1, size: int | None = None) -> dict[str, dict]:
    """Accuracy per attribute on renders the probes never saw: held-out object scenes (shape, colour,
    background) and fresh signs (word, background). {attribute: {accuracy, n, errors}}."""
    size = size or probes.size
    extra = tuple(w for w in probes.labels["word"] if w not in vocabulary()["word"])
    correct: dict[str, list[bool]] = {a: [] for a in ATTRIBUTES}
    for images, targets in evaluation_sets(n, size, seed, extra).values():
        predicted = probes.predict(images)
        for attr in ATTRIBUTES:
            labels, _ = predicted[attr]
            for i, t in enumerate(targets[attr]):
                if t >= 0:
                    correct[attr].append(labels[i] == probes.labels[attr][t])
    return {a: {"accuracy": float(np.mean(c)), "n": len(c), "errors": int(len(c) - sum(c))} for a, c in correct.items()}


def save(net: ProbeNet, path: Path, width: int, extra_words: tuple[str, ...] = ()) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(path), metadata={"labels": json.dumps(vocabulary(extra_words)), "size": str(net.size),
                                          "width": str(width)})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.toyworld.probes.train", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(WEIGHTS), help=f"weights file (default {WEIGHTS})")
    parser.add_argument("--size", type=int, default=32, help="image size (the model's; default 32)")
    parser.add_argument("--n", type=int, default=12_000, help="training renders")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--extra-words", default="", help="comma-separated words beyond the world's for the word "
                        "head (e.g. BUG,NUT,TAX,COD: the fine-tune comparison's new words)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    extra = tuple(w.strip() for w in args.extra_words.split(",") if w.strip())
    net = train(args.size, args.n, args.epochs, width=args.width, seed=args.seed, extra_words=extra)
    save(net, Path(args.out), args.width, extra)
    from harness.toyworld.probes import load_probes

    for attr, result in evaluate(load_probes(args.out)).items():
        print(f"{attr:<10} held-out accuracy {result['accuracy']:.4f} ({result['errors']} errors of {result['n']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
