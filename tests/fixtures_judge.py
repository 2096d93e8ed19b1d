"""Session fixtures of the judge tests (embedded judge model, one `clvq-judge serve` process)."""
