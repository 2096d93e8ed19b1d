import argparse
from dataclasses import dataclass

from clvq_judge.core.config import add_arguments, config_hash, field_docs, from_dict, from_namespace, to_dict


@dataclass
class Example:
    layers: tuple[int, ...] = (4, 6)
    """Hidden-state indices to cache."""
    name: str = "x"
    """A name with 50% of a percent sign."""
    flag: bool = False
    """A switch."""
    limit: int | None = None
    """Optional cap."""


def test_field_docstrings_become_help():
    docs = field_docs(Example)
    assert docs["layers"] == "Hidden-state indices to cache."
    parser = argparse.ArgumentParser()
    add_arguments(parser, Example)
    text = parser.format_help()
    assert "Hidden-state indices to cache. (default: 4 6)" in text
    assert "--no-flag" in text and "(default: none)" in text


def test_parse_round_trip_and_hash():
    parser = argparse.ArgumentParser()
    add_arguments(parser, Example)
    config = from_namespace(Example, parser.parse_args(["--layers", "1", "2", "--flag", "--limit", "7"]))
    assert config == Example(layers=(1, 2), flag=True, limit=7)
    assert from_dict(Example, to_dict(config)) == config
    assert config_hash(config) == config_hash(Example(layers=(1, 2), flag=True, limit=7))
    assert config_hash(config) != config_hash(Example())
    assert config_hash(config, exclude=("flag", "limit", "layers")) == config_hash(Example(), exclude=("flag", "limit", "layers"))


def test_list_options_accept_repeated_flags():
    parser = argparse.ArgumentParser()
    add_arguments(parser, Example)
    assert from_namespace(Example, parser.parse_args([])).layers == (4, 6)
    assert from_namespace(Example, parser.parse_args(["--layers", "1", "--layers", "3"])).layers == (1, 3)
    assert from_namespace(Example, parser.parse_args(["--layers", "1", "3"])).layers == (1, 3)
