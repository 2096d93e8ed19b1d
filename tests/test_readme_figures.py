"""The README's demo figures are generated from `docs/demo_headline.json` (the demo's headline.json)."""

import copy
import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("readme_table", ROOT / "benchmarks" / "readme_table.py")
readme_table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(readme_table)


def _headline():
    return json.loads((ROOT / "docs" / "demo_headline.json").read_text())


def test_readme_shows_exactly_the_headline_figures():
    block = readme_table.readme_block((ROOT / "README.md").read_text())
    assert block == readme_table.render(_headline()), "run `python benchmarks/readme_table.py`"


def test_a_changed_figure_changes_the_block(tmp_path):
    headline = _headline()
    changed = copy.deepcopy(headline)
    changed["methods"][0]["accuracy_concept_removed"] += 0.01
    assert readme_table.render(changed) != readme_table.render(headline)
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{readme_table.BEGIN}\nold\n{readme_table.END}\noutro\n")
    readme_table.write_readme(changed, readme)
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n")
    assert readme_table.readme_block(text) == readme_table.render(changed)
    row = next(line for line in text.splitlines() if line.startswith(f"| {changed['methods'][0]['method']} "))
    assert f"{changed['methods'][0]['accuracy_concept_removed']:.3f} / " in row


def test_readme_shows_exactly_the_seed_figures_when_they_exist():
    text = (ROOT / "README.md").read_text()
    path = ROOT / "docs" / "demo_seeds.json"
    if not path.exists() or readme_table.SEEDS_BEGIN not in text:
        assert readme_table.SEEDS_BEGIN not in text or path.exists(), "README has a seeds block but no docs/demo_seeds.json"
        return
    assert readme_table.readme_block(text, readme_table.SEEDS_BEGIN, readme_table.SEEDS_END) == \
        readme_table.render_seeds(json.loads(path.read_text()))


def test_every_generated_block_matches_its_docs_copy():
    text = (ROOT / "README.md").read_text()
    for name, (kept, _, _) in readme_table.BLOCKS.items():
        begin, _ = readme_table.markers(name)
        assert begin not in text or kept.exists(), f"README has a {name} block but no {kept.name}"
    for name, body in readme_table.rendered_blocks(text).items():
        assert readme_table.readme_block(text, *readme_table.markers(name)) == body, \
            f"README block {name} is stale: run `python benchmarks/readme_table.py`"
