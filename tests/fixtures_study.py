"""Session fixtures of the human-evaluation tests (a study from a tiny run, a browser)."""
