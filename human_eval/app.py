"""The study app: `streamlit run human_eval/app.py -- --study PATH` (or `clvq-judge study serve`).

Annotators open `/?token=...`; the researcher opens `/?admin=1` for results (password required).
Absolute imports, so the same file runs from a checkout and from the installed package.
"""

from clvq_judge.human_eval.views import main

main()
