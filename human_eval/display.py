"""What an annotator sees of an item, and nothing more.

`item_display` freezes an item's content at build time (stored as JSON in the study file, so the app
never needs the run); `item_view` turns that frozen content into the view the app renders. A simulated
annotator (a later issue) must call `item_view` too, so it answers from exactly what a person sees:
the sentence with its marked word, the concept's words or examples, and the label choices. Neither
function ever receives the method's name or the model's prediction.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

CANT_TELL = "can't tell"

# The marker concept cards use around an example's token ("... [[word]] ...").
_MARK = re.compile(r"\[\[(.*?)\]\]")


def item_display(
    text: str, span: tuple[int, int], word: str, card: dict, top_words: int = 12, examples: int = 3
) -> dict:
    """Frozen display content of one (sentence, concept) item.

    Top words with counts always; example sentences only when the concept is dominated by sentence-start
    tokens, whose "words" (the start token) say nothing on their own.
    """
    show_examples = bool(card.get("is_start_dominated"))
    return {
        "text": text,
        "span": [int(span[0]), int(span[1])],
        "word": word,
        "top_words": [[str(w), int(n)] for w, n in card.get("top_words", [])[:top_words]],
        "examples": [e["text"] for e in card.get("examples", [])[:examples]] if show_examples else [],
        "instruction": None,
    }


def attention_display(label: str) -> dict:
    """An instructed-response item: the sentence itself tells the annotator which label to pick."""
    return {
        "text": f"Attention check: for this item, please select \u201c{label}\u201d below.",
        "span": [0, 0],
        "word": "",
        "top_words": [],
        "examples": [],
        "instruction": label,
    }


@dataclass(frozen=True)
class ItemView:
    """The annotator-facing content of an item; its HTML fragments are escaped and safe to render."""

    sentence_html: str
    top_words: list[tuple[str, int]]
    examples_html: list[str]
    choices: list[str]
    is_instruction: bool

    def plain(self) -> dict:
        """The same content as plain text (for a simulated annotator's prompt)."""
        strip = re.compile(r"<[^>]+>")
        return {
            "sentence": html.unescape(strip.sub("", self.sentence_html.replace("<mark>", "[[").replace("</mark>", "]]"))),
            "top_words": list(self.top_words),
            "examples": [html.unescape(strip.sub("", e.replace("<mark>", "[[").replace("</mark>", "]]"))) for e in self.examples_html],
            "choices": list(self.choices),
        }


def highlight(text: str, span: tuple[int, int], word: str = "") -> str:
    """`text` as safe HTML with the span [start, end) wrapped in <mark>.

    Each piece is escaped before the tag goes in, so a sentence holding markup renders literally. A
    sentence-start token (empty span) is shown as a marked placeholder ahead of the sentence.
    """
    start, end = int(span[0]), int(span[1])
    if end <= start:
        if not word:
            return html.escape(text)
        return f"<mark>{html.escape(word)}</mark> {html.escape(text)}"
    return f"{html.escape(text[:start])}<mark>{html.escape(text[start:end])}</mark>{html.escape(text[end:])}"


def marked_example(text: str) -> str:
    """A card example with its `[[word]]` marks turned into <mark>, everything else escaped."""
    out, last = [], 0
    for m in _MARK.finditer(text):
        out.append(html.escape(text[last : m.start()]))
        out.append(f"<mark>{html.escape(m.group(1))}</mark>")
        last = m.end()
    out.append(html.escape(text[last:]))
    return "".join(out)


def item_view(display: dict, labels: list[str], allow_cant_tell: bool = True) -> ItemView:
    return ItemView(
        sentence_html=highlight(display["text"], tuple(display["span"]), display.get("word", "")),
        top_words=[(str(w), int(n)) for w, n in display.get("top_words", [])],
        examples_html=[marked_example(e) for e in display.get("examples", [])],
        choices=[*labels, CANT_TELL] if allow_cant_tell else list(labels),
        is_instruction=display.get("instruction") is not None,
    )
