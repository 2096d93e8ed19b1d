"""The science of clvq-judge: data, models, classifier, activations, concept methods, ablation.

`core` never imports `clvq_judge.judge`, `clvq_judge.human_eval` or the CLI.
"""
