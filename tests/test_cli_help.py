"""Every `--help` of the command line works: the top level, each group, and each stage (a help text with a
bare % once crashed the first command a newcomer types)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from clvq_judge.cli.main import STAGES, main


def _help(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def test_top_level_help_lists_every_stage(capsys):
    out = _help([], capsys)
    for stage in STAGES:
        assert stage.name.split(" ")[0] in out


@pytest.mark.parametrize("name", [s.name for s in STAGES])
def test_every_stage_help_works(name, capsys):
    out = _help(name.split(" "), capsys)
    assert "usage: clvq-judge" in out
    assert "--run" in out or "--study" in out or "--port" in out


def test_group_help_works(capsys):
    groups = {s.name.split(" ")[0] for s in STAGES if " " in s.name}
    for group in groups:
        out = _help([group], capsys)
        assert "ACTION" in out


def test_installed_entry_point_help_exits_zero():
    done = subprocess.run([sys.executable, "-m", "clvq_judge.cli.main", "--help"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
