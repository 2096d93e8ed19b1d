"""What an annotator sees of an item, and nothing more.

An item's content is frozen at build time by its condition (`conditions/`, stored as JSON in the study
file, so the app never needs the run); `item_view` turns that frozen content into the view the app
renders. A simulated annotator (`simulate.py`) calls `item_view` too, with the same seeded option order,
so it answers from exactly what a person sees: the question of the condition, the sentence with its marked
word (when the condition shows it), the concept's words or examples (when it shows one), and the label
choices. Neither function ever receives the method's name or the model's prediction.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

import numpy as np

CANT_TELL = "can't tell"

# The marker concept cards use around an example's token ("... [[word]] ...").
_MARK = re.compile(r"\[\[(.+?)\]\](?!\])")

# Model-internal tokens ([CLS], <s>, <bos>, <|endoftext|>...) mean nothing to a reader: shown as a marker.
_SPECIAL = re.compile(r"^(?:\[[A-Z_]+\]|<\|[^|>]+\|>|</?(?:s|bos|eos|pad|unk|mask|start_of_turn|end_of_turn)>)$")
_START = {"[CLS]", "<s>", "<bos>", "<|begin_of_text|>", "<|startoftext|>", "<start_of_turn>"}
_END = {"[SEP]", "</s>", "<eos>", "<|endoftext|>", "<|end_of_text|>", "<end_of_turn>"}
START_MARKER = "\u27e8sentence start\u27e9"
END_MARKER = "\u27e8sentence end\u27e9"
SPECIAL_MARKER = "\u27e8special token\u27e9"


def readable_word(word: str) -> str:
    """A concept word as a reader should see it: model-internal tokens become a marker."""
    w = str(word).strip()
    if w in _START:
        return START_MARKER
    if w in _END:
        return END_MARKER
    return SPECIAL_MARKER if _SPECIAL.match(w) else str(word)


_KNOWN = re.compile("|".join(re.escape(t) for t in sorted(_START | _END, key=len, reverse=True)) + r"|\[(?:CLS|SEP|PAD|UNK|MASK)\]")


def readable_text(text: str) -> str:
    """Known special tokens inside a sentence (an example starting with [CLS]) replaced by their marker; other
    markup-like text is left alone (it is escaped later and shown literally)."""
    return _KNOWN.sub(lambda m: readable_word(m.group()), text)


def attention_display(label: str) -> dict:
    """An instructed-response item: the sentence itself tells the annotator which label to pick."""
    return {
        "condition": None,
        "text": f"Attention check: for this item, please select \u201c{label}\u201d below, and set any confidence.",
        "span": [0, 0],
        "word": "",
        "top_words": None,
        "examples": [],
        "word_in_list": None,
        "instruction": label,
    }


def option_order(labels: list[str], seed: int, annotator: int, item: int) -> list[str]:
    """The labels in the seeded order one annotator sees on one item (stable across reloads), so that a habit of
    picking the first option spreads over the labels instead of favouring one."""
    return [labels[i] for i in np.random.default_rng([seed, annotator, item]).permutation(len(labels))]


@dataclass(frozen=True)
class ItemView:
    """The annotator-facing content of an item; its HTML fragments are escaped and safe to render."""

    question: str
    sentence_html: str | None
    top_words: list[tuple[str, int]] | None
    examples_html: list[str]
    choices: list[str]
    is_instruction: bool
    word_missing_note: str | None

    def plain(self) -> dict:
        """The same content as plain text (for a simulated annotator's prompt)."""
        return {
            "question": self.question,
            "sentence": None if self.sentence_html is None else _plain(self.sentence_html),
            "top_words": None if self.top_words is None else list(self.top_words),
            "examples": [_plain(e) for e in self.examples_html],
            "choices": list(self.choices),
            "note": self.word_missing_note,
        }


def _plain(fragment: str) -> str:
    strip = re.compile(r"<[^>]+>")
    return html.unescape(strip.sub("", fragment.replace("<mark>", "[[").replace("</mark>", "]]")))


def highlight(text: str, span: tuple[int, int], word: str = "") -> str:
    """`text` as safe HTML with the span [start, end) wrapped in <mark>.

    Each piece is escaped before the tag goes in, so a sentence holding markup renders literally. A
    sentence-start token (empty span) is shown as a marked placeholder ahead of the sentence.
    """
    start, end = int(span[0]), int(span[1])
    if end <= start:
        if not word:
            return html.escape(text)
        return f"<mark>{html.escape(readable_word(word))}</mark> {html.escape(text)}"
    return f"{html.escape(text[:start])}<mark>{html.escape(text[start:end])}</mark>{html.escape(text[end:])}"


def marked_example(text: str) -> str:
    """A card example with its `[[word]]` marks turned into <mark>, everything else escaped."""
    out, last = [], 0
    for m in _MARK.finditer(text):
        out.append(html.escape(readable_text(text[last : m.start()])))
        out.append(f"<mark>{html.escape(readable_word(m.group(1)))}</mark>")
        last = m.end()
    out.append(html.escape(readable_text(text[last:])))
    return "".join(out)


# The page's words for what a concept card is; simulate's prompt prints the same ones.
WORDS_CAPTION = ("Words of this concept: the words the model most often put in this concept, each with the number of "
                 "times it did so in the texts the concepts were learned from (a longer bar = more typical).")
EXAMPLES_CAPTION = ("This concept is mostly made of sentence starts, so here are sentences where it occurs "
                    "(the token of the concept highlighted):")
MISSING_NOTE = ("The highlighted word is not among the concept's most frequent words above: it is a rarer member "
                "of the concept. Judge from what the listed words have in common.")


def item_view(display: dict, labels: list[str], allow_cant_tell: bool = True) -> ItemView:
    """`labels` in the order they are offered (see `option_order`); "can't tell" always comes last."""
    from .conditions import CONDITIONS

    condition = display.get("condition")
    is_instruction = display.get("instruction") is not None
    # a study file of schema 1 held only today's `both` page and no condition name
    question = "" if is_instruction else CONDITIONS[condition or "both"].question
    text = display.get("text")
    words = display.get("top_words")
    if words is None and condition is None and not is_instruction:
        words = []
    return ItemView(
        question=question,
        sentence_html=None if text is None else highlight(text, tuple(display["span"]), display.get("word", "")),
        top_words=None if words is None else [(readable_word(w), int(n)) for w, n in words],
        examples_html=[marked_example(e) for e in display.get("examples", [])],
        choices=[*labels, CANT_TELL] if allow_cant_tell else list(labels),
        is_instruction=is_instruction,
        word_missing_note=MISSING_NOTE if display.get("word_in_list") is False and not display.get("examples") else None,
    )
