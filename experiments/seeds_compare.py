"""Did any README figure move outside its interval? Two `clvq-judge seeds` records, before and after a change.

    python experiments/seeds_compare.py BEFORE_seeds.json AFTER_seeds.json --out docs/evidence/seeds_compare.json

For every method and metric the seeds tables report, the after-mean is checked against the before-interval (a
95% t-interval over seeds) and the before-mean against the after-interval. `--changed METHOD` marks methods
that were changed on purpose (their rows are listed, not counted as regressions).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

METRICS = ("used_concepts", "l_out_lookup_fvu", "accuracy_concept_removed", "accuracy_random_energy",
           "drop_vs_energy_control")


def compare(before: dict, after: dict, changed: set[str]) -> dict:
    rows = []
    for method, entry in after["methods"].items():
        old = before["methods"].get(method)
        if old is None:
            continue
        for metric in METRICS:
            a, b = old[metric], entry[metric]
            if a.get("low") is None or b.get("low") is None:
                continue
            rows.append({"method": method, "metric": metric, "before": [a["mean"], a["low"], a["high"]],
                         "after": [b["mean"], b["low"], b["high"]],
                         "after_mean_inside_before_ci": a["low"] <= b["mean"] <= a["high"],
                         "before_mean_inside_after_ci": b["low"] <= a["mean"] <= b["high"],
                         "changed_on_purpose": method in changed})
    kept = [r for r in rows if not r["changed_on_purpose"]]
    return {"before": {"date": before.get("date"), "seeds": before.get("seeds")},
            "after": {"date": after.get("date"), "seeds": after.get("seeds")},
            "rows": rows, "checked": len(kept),
            "outside": [f"{r['method']} {r['metric']}" for r in kept
                        if not (r["after_mean_inside_before_ci"] or r["before_mean_inside_after_ci"])]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--changed", action="append", default=[])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    result = compare(json.loads(args.before.read_text()), json.loads(args.after.read_text()), set(args.changed))
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    for r in result["rows"]:
        flag = "changed on purpose" if r["changed_on_purpose"] else (
            "inside" if r["after_mean_inside_before_ci"] or r["before_mean_inside_after_ci"] else "OUTSIDE")
        print(f"{r['method']:<14} {r['metric']:<26} before {r['before'][0]:.3f} [{r['before'][1]:.3f}, "
              f"{r['before'][2]:.3f}]  after {r['after'][0]:.3f} [{r['after'][1]:.3f}, {r['after'][2]:.3f}]  {flag}")
    print(f"{result['checked']} figures checked; outside both intervals: {', '.join(result['outside']) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
