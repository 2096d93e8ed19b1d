"""`sentence`: the evaluation sentence with its explanation word highlighted, no concept (the control)."""

from .base import Condition


class SentenceOnly(Condition):
    name = "sentence"
    summary = "the evaluation sentence with its explanation word highlighted, no concept (the control)"
    shows_sentence = True
    shows_concept = False
    question = ("Which label did the model predict for this sentence? The highlighted word is the one the model "
                "relied on most. Judge from the whole sentence.")
