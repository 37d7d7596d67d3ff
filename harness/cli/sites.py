"""`loco sites MODEL`: print a model's intervention sites."""

from __future__ import annotations

import json

from harness.paths import cli_model

HELP = "print a model's intervention sites"
DESCRIPTION = ("Every site with its kind, its index in forward-call order within the kind (per encoder for "
    "text-encoder kinds), its forward index among all sites of its component, name, module type, whether its "
    "output is the hidden state or a contribution to it (what a causal-tracing restore copies), and parameter "
    "count. "
    "MODEL is tiny:<arch> or random:<arch> (an architecture module of harness/models: sd15, if, sdxl, sd3, ...), "
    "a diffusers directory or a cached hub id.")


def add_arguments(parser) -> None:
    parser.add_argument("model", type=cli_model, metavar="MODEL")
    parser.add_argument("--kind", help="only sites of this kind (e.g. cross_attn, joint_attn, resnet, text_mlp)")
    parser.add_argument("--device", default="cpu", help="device to load the model on (default cpu)")
    parser.add_argument("--json", action="store_true", help="print JSON records")


def run(args) -> int:
    from harness.models import load_model
    from harness.sites import SiteError

    adapter = load_model(args.model, args.device, "auto")
    table = adapter.sites
    if args.kind and args.kind not in table.kinds():
        raise SiteError(f"--kind: this model has no '{args.kind}' sites; it has {', '.join(table.kinds())}")
    if args.json:
        records = [r for r in table.to_records() if not args.kind or r["kind"] == args.kind]
        print(json.dumps(records, indent=2))
    else:
        print(table.format(args.kind))
    return 0
