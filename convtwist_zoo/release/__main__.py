"""Release bookkeeping for whoever maintains the zoo: ``python -m convtwist_zoo.release stage|publish|cards|retire|
record``. Users' commands are ``convtwist-zoo``'s."""
from __future__ import annotations

import argparse
import sys

__all__ = ["main", "build_parser"]


def _hub_root(args):
    """``--hub``, or the checkout's hub/."""
    from pathlib import Path

    from .checkout import source_checkout
    return Path(args.hub) if args.hub else source_checkout(args.root) / "hub"


def _cmd_stage(args) -> int:
    from .staging import stage_run
    hub_root = _hub_root(args)
    spec = stage_run(args.run_dir, hub_root, tag=args.tag, default=args.default)
    print(f"staged {spec.name}: {hub_root}/{spec.name} sha256 {spec.sha256}")
    _declare(spec, args)
    return 0


def _declare(spec, args) -> None:
    """The checkout's own hub/ is declared in its model file (the specs' one store); another folder's specs are read
    from its config.json files (``$CONVTWIST_ZOO_HUB_DIR``)."""
    from .staging import declaration, declare_checkpoint, model_file_of
    if args.hub:
        print(f"not declared in a model file (--hub {args.hub}); its declaration would be:\n{declaration(spec)}")
        return
    print(f"declared in {declare_checkpoint(spec, model_file_of(spec.architecture))}")


def _cmd_publish(args) -> int:
    from .staging import publish_folder
    files = publish_folder(args.folder, args.repo_id, dry_run=args.dry_run, revision=args.revision)
    verb = "would upload" if args.dry_run else "uploaded"
    print(f"{verb} {len(files)} files from {args.folder}: {', '.join(files)}")
    return 0


def _cmd_cards(args) -> int:
    from .cards import write_cards
    hub_root = _hub_root(args)
    for path in write_cards(hub_root, args.out or hub_root.parent / "MODEL_CARDS.md"):
        print(f"wrote {path}")
    return 0


def _runs_dir(args):
    """``--runs``, or docs/runs/ beside the hub folder (the extra runs)."""
    from pathlib import Path
    return Path(args.runs) if args.runs else _hub_root(args).parent / "docs" / "runs"


def _cmd_retire(args) -> int:

    from .run_records import retire_checkpoint
    hub_root = _hub_root(args)
    runs_dir = _runs_dir(args)
    entry = retire_checkpoint(hub_root, runs_dir, args.name, args.suffix)
    print(f"kept {args.name}'s log as {entry['run']} ({entry['flags']}) in {runs_dir}; stage the new run, then "
          "`python -m convtwist_zoo.release cards`")
    return 0


def _cmd_record(args) -> int:
    from .run_records import record_run
    runs_dir = _runs_dir(args)
    entry = record_run(args.run_dir, runs_dir, args.kind, args.suffix, args.note or "")
    print(f"listed {entry['run']} ({entry['kind']}: {entry['flags']}) in {runs_dir}; then `python -m convtwist_zoo.release cards`")
    return 0


def _cmd_pick(args) -> int:
    from .staging import representative_run, stage_run
    from .. import research as leaderboard
    options = leaderboard.options_of(args.model_args, amp=not args.fp32)
    folder, row, summary = representative_run(args.results, args.model, args.runs, options)
    lost = summary["closer_without_weights"]
    print(f"{args.model}: seed {row['seed']} ({row['top1']:.2f}%) is closest to the mean {summary['mean']:.2f} of "
          f"{summary['n']} runs{f' among those with weights ({lost} nearer lost theirs)' if lost else ''}: {folder}")
    if args.stage:
        hub_root = _hub_root(args)
        spec = stage_run(folder, hub_root, extra={"leaderboard": summary})
        print(f"staged {spec.name}: {hub_root}/{spec.name}")
        _declare(spec, args)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m convtwist_zoo.release",
                                     description="convtwist-zoo release bookkeeping: stage, publish, cards")
    parser.add_argument("--root", help="the source checkout to work in (default: the current folder)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("stage", help="turn a finished run into a hub/<arch>.<tag>/ folder (fp16) and declare it in its model file")
    p.add_argument("run_dir")
    p.add_argument("--tag", help="default: the run's dataset")
    p.add_argument("--hub", help="hub folder (default: the checkout's hub/)")
    p.add_argument("--default", action="store_true", help="make it the architecture's default checkpoint (the tag pretrained=True gives)")
    p.set_defaults(func=_cmd_stage)

    p = sub.add_parser("publish", help="upload a hub/<arch>.<tag>/ folder to the Hugging Face Hub")
    p.add_argument("folder")
    p.add_argument("--repo-id", help="default: $CONVTWIST_ZOO_HF_ORG/<folder name>")
    p.add_argument("--revision", help="branch to upload to (default: main); the spec's pinned tag is created on the new commit")
    p.add_argument("--dry-run", action="store_true")
    p.set_defaults(func=_cmd_publish)

    p = sub.add_parser("retire", help="before replacing hub/NAME: keep its training log in docs/runs/ as a former "
                                      "checkpoint, and compare the runs made against it with that log")
    p.add_argument("name", help="arch.tag, e.g. resnet18.imagewoof")
    p.add_argument("--suffix", required=True, help="the kept log's name is NAME-SUFFIX (e.g. e20)")
    p.add_argument("--hub", help="hub folder (default: the checkout's hub/)")
    p.add_argument("--runs", help="extra runs folder (default: docs/runs/ beside hub/)")
    p.set_defaults(func=_cmd_retire)

    p = sub.add_parser("record", help="list a finished run in docs/runs/ beside its checkpoint (a replicate, recipe "
                                      "probe or pipeline check): its log, and its flags against today's defaults")
    p.add_argument("run_dir", help="the run's --out folder (with config.json and metrics.jsonl)")
    p.add_argument("--kind", required=True, help="replicate (another seed), recipe (a changed knob) or "
                                                 "'pipeline check' (the recipe again after a change to the code)")
    p.add_argument("--suffix", required=True, help="listed as ARCH.DATASET-SUFFIX (e.g. t112-ema)")
    p.add_argument("--note", help="what the flags do not say (e.g. a code change), shown after them")
    p.add_argument("--runs", help="extra runs folder (default: the repo's docs/runs/)")
    p.set_defaults(func=_cmd_record)

    p = sub.add_parser("cards", help="regenerate MODEL_CARDS.md and hub/*/README.md from the JSON in hub/")
    p.add_argument("--hub", help="hub folder (default: the checkout's hub/)")
    p.add_argument("--out", help="MODEL_CARDS.md path (default: beside hub/)")
    p.set_defaults(func=_cmd_cards)

    p = sub.add_parser("pick", help="the leaderboard run of a model closest to its mean, with weights at hand "
                                    "(and --stage it into hub/)")
    p.add_argument("results", help="a results file, e.g. results/leaderboard/imagewoof-128px-5ep.jsonl")
    p.add_argument("model")
    p.add_argument("--model-args", default="")
    p.add_argument("--fp32", action="store_true", help="from the arm trained in fp32 (--no-amp runs)")
    p.add_argument("--runs", default="~/.cache/convtwist-zoo/runs/leaderboard")
    p.add_argument("--stage", action="store_true")
    p.add_argument("--hub", help="hub folder (default: the checkout's hub/)")
    p.set_defaults(func=_cmd_pick)
    return parser


def main(argv=None) -> int:
    from ..cli import run_command
    return run_command(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
