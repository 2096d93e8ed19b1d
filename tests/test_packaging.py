"""Every package folder is listed for setuptools, so `pip install .` (not only -e) ships it."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_installed():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    mapping = config["package-dir"]
    found = set()
    for top in ("core", "judge", "human_eval", "prompts", "cli", "pipeline"):
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT).as_posix()
            found.add("clvq_judge." + rel.replace("/", "."))
            assert mapping.get("clvq_judge." + rel.replace("/", ".")) == rel
    assert found == listed


def test_torch_is_pinned():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert "torch==2.13.0" in deps
