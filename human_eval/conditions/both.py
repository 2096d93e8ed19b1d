"""`both`: the evaluation sentence with its explanation word highlighted, and that word's concept."""

from .base import Condition


class SentenceAndConcept(Condition):
    name = "both"
    summary = "the evaluation sentence with its explanation word highlighted and that word's concept"
    shows_sentence = True
    shows_concept = True
    question = ("Which label did the model predict for this sentence? The highlighted word is the one the model "
                "relied on most; below it is the concept that word belongs to. Use the whole sentence and the "
                "concept together.")
