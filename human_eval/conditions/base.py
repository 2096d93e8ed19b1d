"""The interface every study condition implements, and the card pieces they share."""

from __future__ import annotations

from typing import ClassVar


def concept_examples(card: dict, sentence: int | None, examples: int) -> list[str]:
    """Example sentences of a concept dominated by sentence-start tokens (whose "words" say nothing), never the
    evaluation sentence itself (it would hand the reader the sentence the condition may be hiding)."""
    if not card.get("is_start_dominated"):
        return []
    keep = [e["text"] for e in card.get("examples", []) if sentence is None or e.get("sentence") != sentence]
    return keep[:examples]


def card_words(card: dict, top_words: int) -> list[list]:
    return [[str(w), int(n)] for w, n in card.get("top_words", [])[:top_words]]


class Condition:
    """One way of showing an item. Subclasses set the class attributes and may override `display`."""

    name: ClassVar[str]
    summary: ClassVar[str]
    """One line for docs and --help."""
    shows_sentence: ClassVar[bool]
    shows_concept: ClassVar[bool]
    question: ClassVar[str]
    """The instruction at the top of the page (and of a simulated annotator's prompt)."""

    @property
    def per_method(self) -> bool:
        """Items differ by method only when the concept is shown."""
        return self.shows_concept

    def display(self, sentence: int, text: str, span: tuple[int, int], word: str, card: dict | None,
                top_words: int, examples: int) -> dict:
        """Frozen display content of one item (JSON): the sentence (or None), its marked word, the concept's words
        and examples (or None), and whether the marked word is among the words shown."""
        words = card_words(card, top_words) if self.shows_concept and card is not None else None
        shown_word = word if self.shows_sentence else ""
        return {
            "condition": self.name,
            "text": text if self.shows_sentence else None,
            "span": [int(span[0]), int(span[1])] if self.shows_sentence else [0, 0],
            "word": shown_word,
            "top_words": words,
            "examples": concept_examples(card, sentence, examples) if words is not None else [],
            "word_in_list": (_in_list(word, words) if words is not None and self.shows_sentence else None),
            "instruction": None,
        }


def _in_list(word: str, words: list[list]) -> bool:
    key = word.strip().lower()
    return any(str(w).strip().lower() == key for w, _ in words)
