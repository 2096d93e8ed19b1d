"""Prompt templates live here as plain text/Jinja files, versioned by file name."""

from importlib import resources


def template_path(name: str):
    """Path of the prompt template `name` (e.g. "explainer.v1.j2") shipped with the package."""
    return resources.files(__name__) / name


def load_template(name: str) -> str:
    return template_path(name).read_text(encoding="utf-8")
