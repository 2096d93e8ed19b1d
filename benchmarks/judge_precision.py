"""The embedded judge's speed and answers in each precision, with and without the instruction set capped to AVX2.

    python benchmarks/judge_precision.py --out docs/evidence/judge_precision.json

Each (precision, cap) cell runs in its own process (the caps are read when torch loads): it scores 16 verdict
prompts of the calibrated protocol's shape (one forward pass each, label log-probabilities) and decodes 8 short
descriptions, twice, keeping the faster pass. The label log-probabilities of every cell are compared with
float32's uncapped ones. Capping (`core.machine.ISA_CAPS`) slows torch's own kernels, oneDNN and MKL; fbgemm,
which int8's matmuls use, picks its kernels from the CPU itself, so a capped int8 time is optimistic for a
real AVX2-only CPU. The JSON records the machine with every cell.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

CAPS = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
PRECISIONS = ("float32", "bfloat16", "int8")
LABELS = ("A", "B", "Equal")


def prompts(render) -> tuple[list[str], list[str]]:
    system = ("You compare two explanations of one word in a sentence that a text classifier labelled. Answer with "
              "the letter of the explanation that better says why the word matters for the label, or Equal.")
    topics = ["shares of tech firms rose", "the striker scored twice", "the minister resigned", "the film opened",
              "the bank cut rates", "the band toured Europe", "the court ruled", "the phone maker launched"]
    verdicts = [render([{"role": "system", "content": system}, {"role": "user", "content":
                f"Sentence: {topics[i % 8]} on day {i}.\nMarked word: {topics[i % 8].split()[-1]}\n"
                f"A: words about business (12 members): shares (5), firms (3), market (2)\n"
                f"B: words about sport (9 members): scored (4), match (3), team (2)\nAnswer:"}]) for i in range(16)]
    describe = [render([{"role": "user", "content": f"Name in 2-5 words what these words share: {t}, {t.split()[0]}s"}])
                for t in topics]
    return verdicts, describe


def cell(precision: str) -> dict:
    from clvq_judge.core.machine import cpu_info
    from clvq_judge.judge.backends.local import LocalModel
    from clvq_judge.judge.embedded import resolve_judge_model

    model = LocalModel(resolve_judge_model("embedded"), precision, "cpu")
    verdicts, describe = prompts(model.render)
    ids = model.label_tokens(LABELS)
    best_score = best_generate = float("inf")
    for _ in range(2):
        start = time.perf_counter()
        scored = model.score(verdicts)
        best_score = min(best_score, time.perf_counter() - start)
        start = time.perf_counter()
        generated = model.generate(describe, 16, 0.0, 0)
        best_generate = min(best_generate, time.perf_counter() - start)
    return {"precision": precision, "score_16_s": round(best_score, 3), "generate_8_s": round(best_generate, 3),
            "generated_tokens": sum(len(g.token_ids) for g in generated),
            "label_logprobs": [[float(s.logprobs[i]) for i in ids] for s in scored],
            "descriptions": [g.text for g in generated], "machine": cpu_info()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cell", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.cell:
        json.dump(cell(args.cell), sys.stdout)
        return 0
    cells = []
    for capped in (False, True):
        for precision in PRECISIONS:
            env = {**os.environ, **(CAPS if capped else {})}
            if not capped:
                for name in CAPS:
                    env.pop(name, None)
            out = subprocess.run([sys.executable, __file__, "--out", str(args.out), "--cell", precision], env=env,
                                 check=True, capture_output=True, text=True).stdout
            cells.append({"capped_to_avx2": capped, **json.loads(out)})
            print(f"capped={capped} {precision}: score 16 in {cells[-1]['score_16_s']} s, "
                  f"decode 8 in {cells[-1]['generate_8_s']} s", file=sys.stderr)
    reference = next(c for c in cells if c["precision"] == "float32" and not c["capped_to_avx2"])["label_logprobs"]
    for c in cells:
        diffs = [abs(a - b) for row, ref in zip(c["label_logprobs"], reference) for a, b in zip(row, ref)]
        c["max_abs_logprob_diff_vs_float32"] = round(max(diffs), 3)
        # What the calibrated protocol reads: the log-odds of option A against option B.
        c["max_abs_logodds_diff_vs_float32"] = round(max(abs((row[0] - row[1]) - (ref[0] - ref[1]))
                                                         for row, ref in zip(c["label_logprobs"], reference)), 3)
        c["same_top_label_as_float32"] = sum(max(range(3), key=row.__getitem__) == max(range(3), key=ref.__getitem__)
                                             for row, ref in zip(c["label_logprobs"], reference)) / len(reference)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"cells": cells}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
