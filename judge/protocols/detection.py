"""Detection (after delphi's detection scoring): the judge sees one concept (its description, card or both)
and one sentence with a word marked, and says whether that word is an instance of the concept. For every
sampled unit and method, the unit's concept is shown with `--items` member occurrences (other evaluation
sentences whose marked word the method assigns to it) and as many non-members (half of them, where they
exist, occurrences of one of the concept's own word types that the method assigns elsewhere, so a judge
cannot pass by spotting the word), drawn seeded.

The verdict is P(Yes) normalised over Yes/No from label log-probabilities, so there is no option order to be
biased by; without log-probabilities the answer is parsed (Yes = 1, No = 0). Per concept: AUC of members
against non-members and accuracy at the judge's median score (the design is balanced); per method: the mean
over its units' concepts with cluster-bootstrap CIs over sentences; a method comparison from the paired
per-sentence AUC differences.

Known-answer control: each member occurrence is also shown with the unit's decoy concept of the same method
(the one the pairwise control uses); a judge that reads the concept must say Yes more readily to the true
concept than to the decoy. Its accuracy (share of members scored higher under the true concept, ties half)
must clear 0.5 with its CI, or every line is flagged "not informative".
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from clvq_judge.core.activations import ActivationStore
from clvq_judge.core.classifier import load_sentences
from clvq_judge.core.runs import derive_seed
from clvq_judge.core.stats import bootstrap_ci
from clvq_judge.core.units import concept_folder
from clvq_judge.core.words import split_words
from clvq_judge.judge import stats
from clvq_judge.judge.client import Completion, Request
from clvq_judge.judge.labels import normalise_choice, parse_choice
from clvq_judge.judge.render import DETECTION, OPTION_WORDS, Option, card_words, detection_messages, prompt
from clvq_judge.judge.schema import DETECTION_COLUMNS

from . import Ask, Context, Protocol, register
from .comparison import fmt, judge_flag

YES, NO = "Yes", "No"
CHOICES = (YES, NO)


class _Pool:
    """The evaluation tokens of a run, with their sentence text, for drawing member and non-member items."""

    def __init__(self, run):
        self.run = run
        store = ActivationStore(run.require("extract"))
        tokens = store.tokens("eval")
        self.sentence = tokens["sentence"].to_numpy()
        self.position = tokens["position"].to_numpy()
        self.word = tokens["word"].astype(str).to_numpy()
        self.texts = load_sentences(run).set_index("sentence")["text"]
        self.wordlike = np.array([any(ch.isalnum() for ch in w) for w in self.word])
        self._assignments: dict[str, np.ndarray] = {}

    def assignments(self, method: str) -> np.ndarray:
        if method not in self._assignments:
            self._assignments[method] = np.asarray(np.load(concept_folder(self.run, method) / "assignments.npy"))
        return self._assignments[method]

    def marked(self, row: int) -> str:
        text = str(self.texts.loc[int(self.sentence[row])])
        position = int(self.position[row])
        if position > 0:
            _, starts, ends = split_words(text)
            if position <= len(starts):
                s, e = int(starts[position - 1]), int(ends[position - 1])
                return f"{text[:s]}[[{text[s:e]}]]{text[e:]}"
        return f"[[{self.word[row]}]] {text}"

    def draw(self, method: str, concept: int, n: int, exclude_sentence: int, seed: int) -> list[tuple[int, bool]]:
        """(row, is_member) items: n members in distinct sentences, n non-members (hard ones first)."""
        rng = np.random.default_rng(seed)
        ids = self.assignments(method)
        # Sentence starts and punctuation are no word a reader can judge; they are never items.
        usable = (self.sentence != exclude_sentence) & (self.position > 0) & self.wordlike
        members = np.flatnonzero(usable & (ids == concept))
        members = members[rng.permutation(len(members))]
        _, first = np.unique(self.sentence[members], return_index=True)
        members = members[np.sort(first)][:n]
        if len(members) == 0:
            return []
        own_words = set(self.word[ids == concept])
        others = usable & (ids != concept) & (ids >= 0)
        hard = np.flatnonzero(others & np.isin(self.word, list(own_words)))
        easy = np.flatnonzero(others & ~np.isin(self.word, list(own_words)))
        k = len(members)
        n_hard = min(len(hard), k // 2)
        picked = list(rng.choice(hard, size=n_hard, replace=False)) if n_hard else []
        picked += list(rng.choice(easy, size=min(len(easy), k - n_hard), replace=False))
        return [(int(r), True) for r in members] + [(int(r), False) for r in picked]


@register
class Detection(Protocol):
    name = "detection"
    template = DETECTION

    def plan(self, ctx: Context) -> list[Ask]:
        pool = _Pool(ctx.run)
        asks = []
        for ju in ctx.units:
            u = ju.unit
            for m in ctx.methods:
                concept = u.concepts[m]
                items = pool.draw(m, concept, ctx.items, u.sentence, derive_seed(ctx.seed, "detection", m, u.sentence))
                for i, (row, member) in enumerate(items):
                    word = str(pool.word[row])
                    facts = {"row": row, "member": member, "text": pool.marked(row), "word": word,
                             "on_card": on_card(ctx.cards[m][concept], word)}
                    asks.append(Ask("detection", ju, i, [(m, concept, "true")], ("detection", u.sentence, m), facts))
                    if member and ctx.known_answer and m in ju.control:
                        decoy = {**facts, "on_card": on_card(ctx.cards[m][ju.control[m]], word)}
                        asks.append(Ask("detection_control", ju, i, [(m, ju.control[m], "random")],
                                        ("detection", u.sentence, m), decoy))
        return asks

    def request(self, ask: Ask, ctx: Context) -> Request:
        m, concept, _ = ask.shown[0]
        option = Option(ctx.cards[m][concept], ctx.descriptions.get(m, {}).get(concept))
        return Request(messages=detection_messages(option, ask.extra["text"], ctx.show), max_tokens=2, choices=CHOICES)

    def verdict(self, ask: Ask, completion: Completion):
        soft = normalise_choice(completion.choice_logprobs, CHOICES)
        if soft is not None:
            return soft[YES], soft
        label = parse_choice(completion.text, CHOICES)
        return (None if label is None else float(label == YES)), None

    def tables(self, judge: str, asks: list[Ask], records: list[dict], ctx: Context) -> dict[str, pd.DataFrame]:
        p = prompt(self.template)
        rows = []
        for ask, rec in zip(asks, records):
            m, concept, role = ask.shown[0]
            rows.append({
                "judge": judge, "kind": ask.kind, "sentence": ask.unit.unit.sentence, "method": m, "concept": concept,
                "role": role, "item": ask.order, "item_row": ask.extra["row"], "item_word": ask.extra["word"],
                "member": ask.extra["member"], "on_card": ask.extra["on_card"], "raw_answer": rec["raw"],
                "reask_answer": rec["reask"] if rec["reask"] is not None else "",
                "p_yes": rec["verdict"] if rec["verdict"] is not None else np.nan, "parse_failed": rec["verdict"] is None,
                "seconds": rec.get("seconds", np.nan), "prompt": p.name, "prompt_sha": p.sha,
            })
        return {"comparisons": pd.DataFrame(rows, columns=DETECTION_COLUMNS)}

    def summarise(self, tables: dict[str, pd.DataFrame], ctx: Context) -> dict[str, pd.DataFrame]:
        items = tables["comparisons"]
        seed = derive_seed(ctx.seed, "bootstrap")
        per_concept = concept_scores(items)
        method_rows, pair_rows = [], []
        judges = list(dict.fromkeys(items["judge"]))
        for judge in judges:
            mine = per_concept[per_concept["judge"] == judge]
            control = known_answer_items(items[items["judge"] == judge])
            judge_ka = _mean_with_ci(control, "correct", ctx.n_boot, seed)
            # What a judge that only checks whether the item's word is printed on the card would score.
            lexical = concept_scores(items[items["judge"] == judge], column="on_card")
            lexical_ka = known_answer_items(items[items["judge"] == judge], column="on_card")
            informative = bool(np.isfinite(judge_ka[1]) and judge_ka[1] > 0.5)
            for m in ctx.methods:
                rows = mine[mine["method"] == m]
                auc = _mean_with_ci(rows, "auc", ctx.n_boot, seed)
                acc = _mean_with_ci(rows, "accuracy", ctx.n_boot, seed)
                ka = _mean_with_ci(control[control["method"] == m], "correct", ctx.n_boot, seed)
                method_rows.append({
                    "judge": judge, "method": m, "n": int(rows["auc"].notna().sum()),
                    "detection_auc": auc[0], "detection_auc_low": auc[1], "detection_auc_high": auc[2],
                    "detection_accuracy": acc[0], "detection_accuracy_low": acc[1], "detection_accuracy_high": acc[2],
                    "known_answer_accuracy": ka[0], "known_answer_low": ka[1], "known_answer_high": ka[2],
                    "judge_known_answer_accuracy": judge_ka[0], "judge_known_answer_low": judge_ka[1],
                    "judge_known_answer_high": judge_ka[2],
                    "string_match_auc": float(lexical[lexical["method"] == m]["auc"].mean()),
                    "string_match_known_answer": float(lexical_ka["correct"].mean()) if len(lexical_ka) else np.nan,
                    "unparsed": int(items[(items["judge"] == judge) & (items["method"] == m)]["parse_failed"].sum()),
                    "informative": informative,
                })
            for a, b in itertools.combinations(ctx.methods, 2):
                pair_rows.append({"judge": judge, **_paired_difference(mine, a, b, ctx.n_boot, seed)})
        return {"comparisons": items, "concepts": per_concept, "methods": pd.DataFrame(method_rows),
                "pairs": pd.DataFrame(pair_rows)}

    def format(self, frames: dict[str, pd.DataFrame], note: str = "") -> str:
        lines = [note] if note else []
        for judge, block in frames["methods"].groupby("judge", sort=False):
            head = block.iloc[0]
            flag, why = judge_flag(head["informative"])
            lines.append(f"judge {judge}: detection known-answer accuracy (member scored higher under its own concept "
                         f"than under a decoy) {fmt(head['judge_known_answer_accuracy'], head['judge_known_answer_low'], head['judge_known_answer_high'])} ({why}); "
                         f"a judge that only spots the word on the card would score {fmt(head['string_match_known_answer'])}")
            lines.append(f"  {'method':<14}{'detection AUC [95% CI]':<24}{'word on card':<14}{'accuracy [CI]':<22}{'known-answer [CI]':<22}"
                         f"{'concepts':<10}{'unparsed':<9}")
            for row in block.to_dict("records"):
                lines.append(
                    f"  {row['method']:<14}{fmt(row['detection_auc'], row['detection_auc_low'], row['detection_auc_high']):<24}"
                    f"{fmt(row['string_match_auc']):<14}"
                    f"{fmt(row['detection_accuracy'], row['detection_accuracy_low'], row['detection_accuracy_high']):<22}"
                    f"{fmt(row['known_answer_accuracy'], row['known_answer_low'], row['known_answer_high']):<22}"
                    f"{row['n']:<10}{row['unparsed']:<9}{flag}")
            for pair in frames["pairs"][frames["pairs"]["judge"] == judge].to_dict("records"):
                lines.append(f"    {pair['method_a']} - {pair['method_b']}: AUC difference "
                             f"{fmt(pair['auc_difference'], pair['auc_difference_low'], pair['auc_difference_high'])} "
                             f"over {pair['n']} sentences{flag}")
        items = frames["comparisons"]
        lines.append(f"{len(items)} answers (chance AUC 0.50), {int(items['parse_failed'].sum())} unparseable after one "
                     "re-ask (counted, not guessed)")
        return "\n".join(lines)


def auc(positives: np.ndarray, negatives: np.ndarray) -> float:
    """Probability that a random member scores above a random non-member (ties half); NaN without both."""
    positives, negatives = np.asarray(positives, float), np.asarray(negatives, float)
    positives, negatives = positives[np.isfinite(positives)], negatives[np.isfinite(negatives)]
    if not len(positives) or not len(negatives):
        return float("nan")
    diff = positives[:, None] - negatives[None, :]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())


def on_card(card: dict, word: str) -> bool:
    """Whether the item's word is printed among the card's member words (what string matching could use)."""
    return word.casefold() in {str(w).casefold() for w, _ in card_words(card, OPTION_WORDS)}


def concept_scores(items: pd.DataFrame, column: str = "p_yes") -> pd.DataFrame:
    """Per (judge, sentence, method): the concept's AUC and accuracy at the judge's median score (`column`
    "on_card" scores the string-matching baseline instead)."""
    rows = []
    true = items[items["kind"] == "detection"]
    for judge, block in true.groupby("judge", sort=False):
        values = block[column].astype(float)
        threshold = float(np.nanmedian(values)) if values.notna().any() else 0.5
        for (sentence, method), group in block.groupby(["sentence", "method"], sort=False):
            member = group["member"].astype(bool).to_numpy()
            scores = group[column].to_numpy(dtype=float)
            ok = np.isfinite(scores)
            correct = np.where(member, scores > threshold, scores <= threshold)
            rows.append({"judge": judge, "sentence": sentence, "method": method, "concept": int(group["concept"].iloc[0]),
                         "n_items": int(ok.sum()), "auc": auc(scores[member], scores[~member]),
                         "accuracy": float(correct[ok].mean()) if ok.any() else float("nan"), "threshold": threshold})
    return pd.DataFrame(rows, columns=["judge", "sentence", "method", "concept", "n_items", "auc", "accuracy", "threshold"])


def known_answer_items(items: pd.DataFrame, column: str = "p_yes") -> pd.DataFrame:
    """Per member item shown with both its own concept and the decoy: 1 when the own concept scored higher."""
    keys = ["judge", "sentence", "method", "item"]
    own = items[(items["kind"] == "detection") & items["member"].astype(bool)].set_index(keys)[column].astype(float)
    decoy = items[items["kind"] == "detection_control"].set_index(keys)[column].astype(float)
    both = pd.concat({"own": own, "decoy": decoy}, axis=1).dropna().reset_index()
    both["correct"] = (both["own"] > both["decoy"]).astype(float) + 0.5 * (both["own"] == both["decoy"])
    return both


def _mean_with_ci(frame: pd.DataFrame, column: str, n_boot: int, seed: int) -> tuple[float, float, float]:
    values = frame[column].to_numpy(dtype=float) if len(frame) else np.zeros(0)
    if not np.isfinite(values).any():
        return float("nan"), float("nan"), float("nan")
    low, high = stats.cluster_mean_ci(frame["sentence"].to_numpy(), values, n_boot, seed)
    return float(np.nanmean(values)), low, high


def _paired_difference(per_concept: pd.DataFrame, a: str, b: str, n_boot: int, seed: int) -> dict:
    wide = per_concept.pivot_table(index="sentence", columns="method", values="auc", aggfunc="mean")
    if a not in wide or b not in wide:
        diffs = np.zeros(0)
    else:
        diffs = (wide[a] - wide[b]).dropna().to_numpy()
    low, high = bootstrap_ci(diffs, n_boot, seed) if len(diffs) and n_boot > 0 else (np.nan, np.nan)
    return {"method_a": a, "method_b": b, "n": int(len(diffs)),
            "auc_difference": float(diffs.mean()) if len(diffs) else float("nan"),
            "auc_difference_low": low, "auc_difference_high": high,
            "a_better": int((diffs > 0).sum()), "ties": int((diffs == 0).sum()), "b_better": int((diffs < 0).sum())}
