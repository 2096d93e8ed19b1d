"""`concept`: the concept's card alone, no evaluation sentence (the paper's protocol)."""

from .base import Condition


class ConceptOnly(Condition):
    name = "concept"
    summary = "the concept's card only (top words with counts, or example sentences), no evaluation sentence"
    shows_sentence = False
    shows_concept = True
    question = ("Which label did the model predict for a sentence you cannot see? The model read a sentence and "
                "relied most on one word of it. Below is the concept that word belongs to. Judge from the concept alone.")
