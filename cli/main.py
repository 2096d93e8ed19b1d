"""`clvq-judge <stage> [options]`: one subcommand per pipeline stage.

The CLI only parses options into the stage's dataclass config and calls the stage function; all logic
lives in the library, and the stages themselves are the table in `core/stages.py`. A `UserError` becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from clvq_judge.core.config import add_arguments, from_namespace
from clvq_judge.core.errors import UserError
from clvq_judge.core.stages import STAGES, StageSpec


class UsageError(Exception):
    """A command line argparse rejects (unknown option, invalid choice, wrong type)."""


class OneLineParser(argparse.ArgumentParser):
    """argparse prints the whole usage before an error; we print one line naming the problem and the fix."""

    def error(self, message: str):
        raise UsageError(f"{self.prog}: error: {message} (see {self.prog} --help)")


# Stages that shard their work across torchrun processes (one writer of the run directory).
DISTRIBUTED_STAGES = ("extract", "train")


def build_parser(chosen: str | None = None) -> argparse.ArgumentParser:
    """Only the chosen stage's module is imported (stages pull in torch; `--help` stays fast)."""
    parser = OneLineParser(
        prog="clvq-judge",
        description="Discover concepts in language models with CLVQ-VAE and evaluate them.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="stage", metavar="STAGE", required=True)
    groups: dict[str, argparse._SubParsersAction] = {}
    for stage in STAGES:
        # "study create" is the `create` action of the `study` command group.
        group, _, action = stage.name.rpartition(" ")
        target = sub
        if group:
            if group not in groups:
                parent = sub.add_parser(group, help=f"{group} commands ({group} ACTION --help for each)")
                groups[group] = parent.add_subparsers(dest=f"{group}_action", metavar="ACTION", required=True)
            target = groups[group]
        # argparse reads help text as a %-format ("95% interval" would crash `--help`).
        summary = stage.summary.replace("%", "%%")
        p = target.add_parser(action, help=summary, description=summary,
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter.__bases__[0])
        if stage.name == chosen:
            add_arguments(p, stage.config_class())
        p.set_defaults(_stage=stage)
    return parser


def chosen_stage(argv: list[str]) -> str | None:
    """The stage named on the command line (a group's action included), before parsing the options."""
    names = {s.name for s in STAGES}
    words = [a for a in argv if not a.startswith("-")]
    for first, second in zip(words, [*words[1:], None]):
        if second is not None and f"{first} {second}" in names:
            return f"{first} {second}"
        if first in names:
            return first
    return None


def main(argv: list[str] | None = None) -> int:
    # Set here, not only under `python -m`, so the installed `clvq-judge` entry point gets it too: forked
    # workers of a tokenizer that already ran in parallel would deadlock.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    argv = sys.argv[1:] if argv is None else argv
    try:
        parser = build_parser(chosen_stage(argv))
        args = parser.parse_args(argv)
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    for noisy in ("httpx", "httpx2", "urllib3", "filelock", "huggingface_hub", "transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    stage: StageSpec = args._stage
    try:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1 and stage.name not in DISTRIBUTED_STAGES:
            # Every process would write the same files: only extract and train shard their work.
            raise UserError(f"`{stage.name}` runs as one process: launch only {' and '.join(DISTRIBUTED_STAGES)} "
                            f"under torchrun, and this stage without it")
        config = from_namespace(stage.config_class(), args)
        result = stage.load(stage.function)(config)
        if isinstance(result, str):
            print(result)
    except UserError as exc:
        print(f"clvq-judge {stage.name}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"clvq-judge {stage.name}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
