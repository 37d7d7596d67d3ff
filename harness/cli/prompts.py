"""`loco prompts simplebench|creativebench|concept`: write a paper benchmark's prompt rows as CSV."""

from __future__ import annotations

import sys

from harness.errors import UserError

HELP = "write a paper benchmark's prompt rows as CSV"
DESCRIPTION = ("SimpleBench / CreativeBench (A, B) pairs as P3 builds them (seed 42), or a concept-ablation "
    "concept's evaluation prompts with LocoGen targets.")


def add_arguments(parser) -> None:
    parser.add_argument("bench", choices=("simplebench", "creativebench", "concept"))
    parser.add_argument("--bucket", default="top_1000", help="word-frequency bucket: top_1000 (localization split), "
                        "1000_10000, 10000_100000, 100000_plus")
    parser.add_argument("--concept", help="concept name for 'concept' (e.g. 'van gogh', 'r2d2')")
    parser.add_argument("--seed", type=int, default=42, help="pairing seed (P3: 42)")
    parser.add_argument("--limit", type=int, help="keep only the first N rows")
    parser.add_argument("--out", help="CSV file to write (default: stdout)")


def run(args) -> int:
    import csv

    from harness import datasets

    if args.bench == "simplebench":
        rows = datasets.simplebench_pairs(args.bucket, args.seed)
    elif args.bench == "creativebench":
        rows = datasets.creativebench_pairs(args.bucket, args.seed)
    else:
        if not args.concept:
            raise UserError("--concept: required for 'concept' (e.g. --concept 'van gogh')")
        rows = datasets.concept_prompts(args.concept)
    rows = rows[: args.limit] if args.limit else rows
    fields = list(dict.fromkeys(k for r in rows for k in r))
    def write(handle) -> None:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)

    if args.out:
        with open(args.out, "w", newline="", encoding="utf-8") as handle:
            write(handle)
        print(f"wrote {len(rows)} prompt rows to {args.out}", file=sys.stderr)
    else:
        write(sys.stdout)
    return 0
