"""`refscale eval`: bicubic vs no-reference INN vs RefScale on real revisit pairs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a model on a pairs.csv (paper Table-1 columns)")
    p.add_argument("--weights", default="x2", help="x2 | x4 | PATH.safetensors")
    p.add_argument("--noref-weights", default=None,
                   help="no-reference baseline (default: the matching shipped -noref model; 'skip' to omit)")
    p.add_argument("--pairs", type=Path, required=True, help="a set's pairs.csv (target,reference,note)")
    p.add_argument("--split", choices=["all", "val", "train"], default="all",
                   help="restrict to the training split's validation (or training) places")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--reference-mode", choices=["aligned", "none", "shuffled"], default="aligned")
    p.add_argument("--register", action="store_true", help="register the reference onto the frame first")
    p.add_argument("--json", type=Path, default=None, help="write the JSON result here")
    p.add_argument("--report", type=Path, default=None, help="write report.md, results.json and figures here")
    p.add_argument("--allow-untrained", action="store_true", help="use a fresh model if no weights are shipped")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from refscale_model.evaluation.pairs import evaluate, markdown_table, read_eval_pairs, write_report
    from refscale_model.weights import load_model

    model = load_model(args.weights, allow_untrained=args.allow_untrained)
    noref = None
    if args.noref_weights != "skip":
        name = args.noref_weights or (f"{args.weights}-noref" if args.weights in ("x2", "x4") else None)
        if name is None:
            raise SystemExit("--noref-weights is required with a weights path (or 'skip')")
        noref = load_model(name, allow_untrained=args.allow_untrained)
    pairs = read_eval_pairs(args.pairs, args.split)[: args.limit]
    if not pairs:
        raise SystemExit(f"no pairs selected from {args.pairs} (split {args.split})")
    result = evaluate(model, noref, pairs, args.reference_mode, args.register, report_dir=args.report)
    result["pairs_csv"] = str(args.pairs)
    result["split"] = args.split
    print(markdown_table(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.report:
        write_report(result, args.report)
    return 0
