"""LLM judging of concept descriptions (explainer, pairwise/listwise comparisons, statistics).

Seam for a later issue: the judge client interface is `complete(messages, params) -> text, logprobs, usage`
(see docs/architecture.md). `judge` may import `core`, never `human_eval` or the CLI.
"""
