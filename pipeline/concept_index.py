"""Per-concept views over a run's collected results, for the explorer and the report's concept cards.

Everything here is read from what the stages wrote (through `collect.Results`) and aggregated per concept:
member words and their contexts, the judge answers and study answers a concept took part in, the ablation
figures of its method, and the L_in -> L_out view (how the concept's members sit in the top layer). Texts
come back as data or as escaped HTML, never as markup taken from a sentence. Torch-free.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from clvq_judge.core import schema as core_schema
from clvq_judge.core.explanation import explanation_tokens
from clvq_judge.human_eval.display import highlight

from .collect import Results, read_table

SORTS = ("size", "ablation effect", "judge score")
NEAREST = 5


def parse_assignments(text: str) -> dict[str, str]:
    """"A=clvq;B=kmeans (true)" -> {"A": "clvq", "B": "kmeans (true)"}."""
    out = {}
    for part in str(text or "").split(";"):
        label, sep, value = part.partition("=")
        if sep:
            out[label] = value
    return out


@dataclass
class LOutView:
    layer: int
    share: float
    """This concept's part of the lookup FVU: its members' squared distance to their concept's mean top-layer
    vector over the total top-layer variance of the evaluation tokens (the parts sum to the lookup FVU)."""
    lookup_fvu: float
    """Sum of the parts (evaluation means; `concepts` reports the one with training means)."""
    within_share: float
    """Share of the members' own top-layer variance around their mean (1 = the concept says nothing about L_out)."""
    nearest: list[tuple[int, float]]
    """Concepts of the same method whose mean top-layer vectors are closest (cosine of centred means)."""


class ConceptIndex:
    """Cached per-concept aggregates of one run (build once per process; every view afterwards is a lookup)."""

    def __init__(self, results: Results):
        self.results = results

    @cached_property
    def methods(self) -> list[str]:
        return self.results.concept_methods

    @cached_property
    def tokens(self) -> pd.DataFrame:
        t = self.results.eval_tokens
        return pd.DataFrame({"sentence": t["sentence"].to_numpy(), "position": t["position"].to_numpy(),
                             "word": t["word"].astype(str).to_numpy()})

    @cached_property
    def words_lower(self) -> np.ndarray:
        return self.tokens["word"].str.lower().to_numpy()

    @cached_property
    def sentence_rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(sentence ids, first row, end row) of every evaluation sentence (tokens are stored sentence by sentence)."""
        sentences = self.tokens["sentence"].to_numpy()
        change = np.flatnonzero(np.r_[True, sentences[1:] != sentences[:-1]])
        return sentences[change], change, np.r_[change[1:], len(sentences)]

    def assignments(self, method: str) -> np.ndarray:
        return np.asarray(self.results.assignments(method))

    # --- lists and search ------------------------------------------------------------------------------

    def overview(self, method: str) -> pd.DataFrame:
        """One row per used concept: id, size, top words, judge score, study accuracy, ablation effect."""
        return self._overview[method]

    @cached_property
    def _overview(self) -> dict[str, pd.DataFrame]:
        out = {}
        judge = self.judge_answers
        study = self.study_answers
        for method in self.methods:
            cards = self.results.cards(method)
            used = [c for c in cards if c["count"] > 0]
            frame = pd.DataFrame({
                "concept": [c["id"] for c in used], "size": [c["count"] for c in used],
                "top words": [", ".join(str(w) for w, _ in c.get("top_words", [])[:8]) for c in used]})
            mine = judge[(judge["method"] == method) & (judge["kind"] != "known_answer")
                         & ~judge["parse_failed"]] if len(judge) else judge
            scores = mine.groupby("concept")["chosen"].agg(["mean", "size"]) if len(mine) else pd.DataFrame()
            frame["judge score"] = frame["concept"].map(scores["mean"]) if len(scores) else np.nan
            frame["judge answers"] = frame["concept"].map(scores["size"]).fillna(0).astype(int) if len(scores) else 0
            own = study[study["method"] == method] if len(study) else study
            acc = own.groupby("concept")["correct"].agg(["mean", "size"]) if len(own) else pd.DataFrame()
            frame["study accuracy"] = frame["concept"].map(acc["mean"]) if len(acc) else np.nan
            frame["study answers"] = frame["concept"].map(acc["size"]).fillna(0).astype(int) if len(acc) else 0
            drops = self.concept_drops(method)
            frame["ablation effect"] = frame["concept"].map(drops["drop"]) if drops is not None else np.nan
            frame["sentences explained"] = frame["concept"].map(self.explained_counts(method)).fillna(0).astype(int)
            out[method] = frame
        return out

    def sorted_overview(self, method: str, by: str = "size") -> pd.DataFrame:
        column = {"size": "size", "ablation effect": "ablation effect", "judge score": "judge score"}[by]
        return self.overview(method).sort_values([column, "size"], ascending=False, na_position="last", kind="mergesort")

    def search(self, word: str) -> pd.DataFrame:
        """Concepts (per method) that hold `word` among their members, case-insensitive, with how often."""
        query = word.strip().lower()
        rows = np.flatnonzero(self.words_lower == query) if query else np.zeros(0, dtype=np.int64)
        parts = []
        for method in self.methods:
            ids = self.assignments(method)[rows]
            ids = ids[ids >= 0]
            if not len(ids):
                continue
            found, counts = np.unique(ids, return_counts=True)
            part = pd.DataFrame({"method": method, "concept": found, "occurrences": counts})
            parts.append(part.merge(self.overview(method), on="concept", how="left"))
        if not parts:
            return pd.DataFrame(columns=["method", "concept", "occurrences", "size", "top words"])
        return pd.concat(parts, ignore_index=True).sort_values(["method", "occurrences"], ascending=[True, False])

    # --- one concept -----------------------------------------------------------------------------------

    def card(self, method: str, concept: int) -> dict:
        cards = self.results.cards(method)
        if not 0 <= concept < len(cards):
            raise KeyError(f"{method} has no concept {concept}")
        return cards[concept]

    def member_rows(self, method: str, concept: int) -> np.ndarray:
        return np.flatnonzero(self.assignments(method) == concept)

    def member_words(self, method: str, concept: int) -> pd.DataFrame:
        words = self.tokens["word"].to_numpy()[self.member_rows(method, concept)]
        counts = pd.Series(words).value_counts()
        return pd.DataFrame({"word": counts.index.astype(str), "count": counts.to_numpy()})

    def context_html(self, row: int) -> str:
        """The sentence of an evaluation token rebuilt from its words (as concept cards do), the token marked;
        every word escaped."""
        ids, first, end = self.sentence_rows
        at = int(np.searchsorted(first, row, side="right") - 1)
        words = self.tokens["word"].to_numpy()
        positions = self.tokens["position"].to_numpy()
        parts = []
        for r in range(first[at], end[at]):
            if positions[r] == 0 and r != row:
                continue  # the sentence-start token is shown only when it is the member itself
            text = html.escape(str(words[r]))
            parts.append(f"<mark>{text}</mark>" if r == row else text)
        return " ".join(parts)

    def contexts(self, method: str, concept: int, page: int = 0, per_page: int = 10) -> tuple[list[tuple[int, str]], int]:
        """(sentence id, escaped HTML) of the members on one page, and the number of members."""
        rows = self.member_rows(method, concept)
        sentences = self.tokens["sentence"].to_numpy()
        # One context per sentence first, then the second member of each, ...: a page shows many sentences.
        member_sentences = sentences[rows]
        change = np.r_[True, member_sentences[1:] != member_sentences[:-1]]
        starts = np.flatnonzero(change)
        rank = np.arange(len(rows)) - np.repeat(starts, np.diff(np.r_[starts, len(rows)]))
        rows = rows[np.lexsort((rows, rank))]
        chosen = rows[page * per_page:(page + 1) * per_page]
        return [(int(sentences[r]), self.context_html(int(r))) for r in chosen], len(rows)

    def description(self, method: str, concept: int) -> str | None:
        return self._descriptions(method).get(concept)

    def _descriptions(self, method: str) -> dict[int, str]:
        cache = self.__dict__.setdefault("_description_cache", {})
        if method not in cache:
            cache[method] = self.results.descriptions(method)
        return cache[method]

    # --- the judge and the study -----------------------------------------------------------------------

    @cached_property
    def judge_answers(self) -> pd.DataFrame:
        """One row per (judge answer, concept shown): judge, kind, sentence, word, order, label, method, role,
        concept, chosen, parse_failed, opponents, verdict, raw_answer."""
        comparisons = self.results.judge_table("comparisons")
        columns = ["judge", "kind", "sentence", "word", "order", "label", "method", "role", "concept", "chosen",
                   "parse_failed", "opponents", "verdict", "raw_answer"]
        if comparisons is None or comparisons.empty:
            return pd.DataFrame(columns=columns).astype({"parse_failed": bool, "concept": int})
        if self.results.judge_protocol == "detection":
            # One concept per question: "chosen" is the judge's P(Yes) that the item's word is an instance.
            frame = pd.DataFrame({
                "judge": comparisons["judge"], "kind": comparisons["kind"], "sentence": comparisons["sentence"],
                "word": comparisons["item_word"], "order": comparisons["item"], "label": "",
                "method": comparisons["method"], "role": comparisons["role"], "concept": comparisons["concept"],
                "chosen": comparisons["p_yes"], "parse_failed": comparisons["parse_failed"].astype(bool),
                "opponents": "", "raw_answer": comparisons["raw_answer"],
                "verdict": np.where(comparisons["member"].astype(bool), "member", "non-member")})
            return frame[columns]
        rows = []
        for r in comparisons.to_dict("records"):
            shown, concepts = parse_assignments(r["shown"]), parse_assignments(r["concepts"])
            chosen = str(r["verdict_label"]) if isinstance(r["verdict_label"], str) else ""
            first = chosen.split(">")[0] if chosen else ""
            for label, who in shown.items():
                method, _, role = who.partition(" (")
                others = [v for k, v in shown.items() if k != label]
                rows.append({
                    "judge": r["judge"], "kind": r["kind"], "sentence": int(r["sentence"]), "word": r["word"],
                    "order": r["order"], "label": label, "method": method, "role": role.rstrip(")"),
                    "concept": int(concepts.get(label, -1)), "chosen": float(first == label) if first else np.nan,
                    "parse_failed": bool(r["parse_failed"]), "opponents": ", ".join(others), "verdict": r["verdict"],
                    "raw_answer": r["raw_answer"]})
        return pd.DataFrame(rows, columns=columns)

    def judge_record(self, method: str, concept: int) -> pd.DataFrame:
        a = self.judge_answers
        return a[(a["method"] == method) & (a["concept"] == concept)]

    @cached_property
    def study_answers(self) -> pd.DataFrame:
        parts = []
        for study in self.results.studies:
            answers = self.results.study_table(study, "answers")
            if answers is not None and len(answers):
                parts.append(answers[answers["item_kind"] == "task"].assign(study=study))
        if not parts:
            return pd.DataFrame(columns=["study", "method", "concept", "sentence", "annotator_kind", "answer", "truth",
                                         "correct"])
        return pd.concat(parts, ignore_index=True)

    def study_record(self, method: str, concept: int) -> pd.DataFrame:
        a = self.study_answers
        if a.empty:
            return a
        return a[(a["method"] == method) & (a["concept"] == concept)][
            ["study", "sentence", "annotator_kind", "answer", "truth", "correct", "confidence"]]

    # --- the model axis --------------------------------------------------------------------------------

    @cached_property
    def explanations(self) -> pd.DataFrame:
        """The explanation token of every evaluation sentence (the one `ablate`, the judge and the study use)."""
        saliency_path = self.results.root / "activations" / "saliency.parquet"
        if not saliency_path.exists():
            return pd.DataFrame(columns=["sentence", "row"])
        return explanation_tokens(pd.read_parquet(saliency_path), self.results.eval_tokens, top_k=1)

    def explained_counts(self, method: str) -> pd.Series:
        """Concept id -> number of evaluation sentences whose explanation word it holds."""
        rows = self.explanations["row"].to_numpy(dtype=np.int64)
        ids = self.assignments(method)[rows] if len(rows) else np.zeros(0, dtype=np.int64)
        return pd.Series(ids).value_counts()

    def method_ablation(self, method: str) -> pd.DataFrame | None:
        """The method's model-level ablation rows (its smallest k), one per condition."""
        table = self.results.ablation_results()
        if table is None:
            return None
        part = table[table["method"] == method]
        if part.empty:
            return None
        part = part[part["k"] == part["k"].min()]
        protocol = "model" if (part["protocol"] == "model").any() else part["protocol"].iloc[0]
        return part[part["protocol"] == protocol]

    @cached_property
    def ablation_sentences(self) -> pd.DataFrame | None:
        path = self.results.root / core_schema.ABLATION_STAGE / core_schema.ABLATION_FILES["sentences"]
        return read_table(path, core_schema.ABLATION_SENTENCES, "ablate")

    def concept_drops(self, method: str) -> pd.DataFrame | None:
        """Per concept: accuracy before minus after removing it, over the sentences whose explanation word it
        holds (needs ablate's per-sentence table; None without it)."""
        per = self.ablation_sentences
        part = self.method_ablation(method)
        if per is None or part is None:
            return None
        per = per[(per["label"] == part["label"].iloc[0]) & (per["protocol"] == part["protocol"].iloc[0])]
        if per.empty:
            return None
        rows = self.explanations[["sentence", "row"]]
        concept = pd.Series(self.assignments(method)[rows["row"].to_numpy(dtype=np.int64)], index=rows["sentence"].to_numpy())
        wide = per.pivot_table(index="sentence", columns="condition", values="correct", aggfunc="first")
        if not {"original", "concept"} <= set(wide.columns):
            return None
        wide = wide.assign(concept_id=concept.reindex(wide.index).to_numpy())
        grouped = wide.groupby("concept_id")
        return pd.DataFrame({"drop": grouped["original"].mean() - grouped["concept"].mean(), "n": grouped.size()})

    # --- L_in -> L_out ---------------------------------------------------------------------------------

    @cached_property
    def _l_out(self) -> tuple[int, np.ndarray] | None:
        from clvq_judge.core.activations import ActivationStore

        folder = self.results.root / "activations"
        if not (folder / "manifest.json").exists():
            return None
        store = ActivationStore(folder)
        layer = store.layer_out
        return layer, np.concatenate([chunk.astype(np.float64) for chunk in store.iter_chunks(layer, "eval")])

    @cached_property
    def _l_out_stats(self) -> dict[str, tuple]:
        return {}

    def _method_l_out(self, method: str):
        cache = self._l_out_stats
        if method not in cache:
            layer, y = self._l_out
            ids = self.assignments(method)
            k = len(self.results.cards(method))
            valid = ids >= 0
            counts = np.bincount(ids[valid], minlength=k).astype(np.float64)
            order = np.argsort(ids[valid], kind="stable")
            present = np.flatnonzero(counts)
            sums = np.zeros((k, y.shape[1]))
            starts = np.r_[0, np.cumsum(counts[present])[:-1]].astype(np.int64)
            sums[present] = np.add.reduceat(y[valid][order], starts, axis=0)
            means = sums / np.maximum(counts, 1)[:, None]
            squares = np.bincount(ids[valid], weights=(y[valid] ** 2).sum(1), minlength=k)
            sse = squares - counts * (means ** 2).sum(1)
            total = float(((y - y.mean(0)) ** 2).sum())
            centred = means - y.mean(0)
            norms = np.linalg.norm(centred, axis=1)
            unit = np.where(norms[:, None] > 0, centred / np.maximum(norms, 1e-12)[:, None], 0.0)
            cache[method] = (layer, counts, sse, total, unit)
        return cache[method]

    def warm(self) -> None:
        """Compute what the first concept page of each method would (meant for a background thread)."""
        if self._l_out is not None:
            for method in self.methods:
                self._method_l_out(method)

    def l_out_view(self, method: str, concept: int) -> LOutView | None:
        if self._l_out is None:
            return None
        layer, counts, sse, total, unit = self._method_l_out(method)
        if counts[concept] == 0:
            return None
        cos = unit @ unit[concept]
        cos[concept] = -np.inf
        cos[counts == 0] = -np.inf
        order = np.argsort(-cos, kind="stable")[:NEAREST]
        members = self.member_rows(method, concept)
        y = self._l_out[1][members]
        spread = float(((y - y.mean(0)) ** 2).sum())
        around_global = float(((y - self._l_out[1].mean(0)) ** 2).sum())
        return LOutView(layer=layer, share=float(sse[concept]) / max(total, 1e-12),
                        lookup_fvu=float(sse[counts > 0].sum()) / max(total, 1e-12),
                        within_share=spread / max(around_global, 1e-12),
                        nearest=[(int(c), float(cos[c])) for c in order if np.isfinite(cos[c])])

    # --- one evaluation sentence -----------------------------------------------------------------------

    @cached_property
    def units(self) -> dict[int, dict]:
        return {int(u["sentence"]): u for u in self.results.judge_units}

    def unit_html(self, sentence: int) -> str:
        """The judged sentence with its explanation word marked, escaped (as the annotators see it)."""
        u = self.units[sentence]
        return highlight(str(u["text"]), tuple(u["span"]), str(u.get("word", "")))

    def side_by_side(self, sentence: int) -> list[dict]:
        """Per method: the concept its explanation word has, its words, description, and the verdicts on it."""
        u = self.units[sentence]
        out = []
        for method, concept in u.get("concepts", {}).items():
            concept = int(concept)
            judge = self.judge_record(method, concept)
            judge = judge[judge["sentence"] == sentence]
            study = self.study_record(method, concept)
            study = study[study["sentence"] == sentence] if len(study) else study
            card = self.card(method, concept) if method in self.methods else {"top_words": []}
            out.append({"method": method, "concept": concept,
                        "top_words": [(str(w), int(n)) for w, n in card.get("top_words", [])[:12]],
                        "description": self.description(method, concept) if method in self.methods else None,
                        "judge": judge, "study": study})
        return out
