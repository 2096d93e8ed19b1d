"""The stage table: every `clvq-judge` command, its config, its function and the record it keeps in a run.

One table, read by the CLI (subcommands, `--help`), by `core.runs` (where a stage's `done.json` lives) and by
error messages (which command remakes an outdated result). Entries name their module by string so that
`clvq-judge --help` imports no stage (stages pull in torch).

A stage with a `record` runs through `Run.begin`/`Run.finish`: its `done.json` in `runs/<run>/<folder>/` holds
its config hash and the done hashes of what it read, so a later stage refuses or redoes an outdated input. The
record is a template: `{method}` and `{name}` are the stage's `--method` and `--name`. Commands without a
record (demo, seeds, serve, explore, judges, study serve) produce no artifact other stages read, or compose
stages that each keep their own.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class StageSpec:
    name: str
    """Command words: "rank", or a group's action such as "study create"."""
    summary: str
    config: str
    """"module:Class" of the stage's dataclass config (or a function returning it: train's comes from its method)."""
    function: str
    """"module:function" taking that config and returning the text to print."""
    record: str | None = None
    """Key of the stage's record in a run (see the module docstring); None = keeps none."""
    folder: str | None = None
    """Folder of that record inside the run when it is not the key itself."""

    def load(self, ref: str):
        module, attr = ref.split(":")
        return getattr(importlib.import_module(module), attr)

    def config_class(self) -> type:
        found = self.load(self.config)
        return found if isinstance(found, type) else found()

    def matches(self, key: str) -> dict[str, str] | None:
        """The template's fields when `key` is one of this stage's records, else None."""
        if self.record is None:
            return None
        pattern = re.escape(self.record).replace(r"\{method\}", "(?P<method>[^/]+)").replace(r"\{name\}", "(?P<name>[^/]+)")
        found = re.fullmatch(pattern, key)
        return found.groupdict() if found else None


_CORE, _JUDGE, _HUMAN, _PIPE = "clvq_judge.core", "clvq_judge.judge", "clvq_judge.human_eval", "clvq_judge.pipeline"

STAGES: list[StageSpec] = [
    StageSpec("demo", "The whole product on the embedded offline default: model, ablation, judge, study, simulated annotators, report.",
              f"{_PIPE}.demo:DemoConfig", f"{_PIPE}.demo:run_demo"),
    StageSpec("seeds", "The demo's model axis over several seeds: every headline figure as mean and 95% interval.",
              f"{_PIPE}.seeds:SeedsConfig", f"{_PIPE}.seeds:run_seeds"),
    StageSpec("finetune", "Load a dataset and model, train (or adopt) the classifier under study.",
              f"{_CORE}.classifier:FinetuneConfig", f"{_CORE}.classifier:finetune", "finetune", "classifier"),
    StageSpec("extract", "Cache per-word activations, predictions and Integrated-Gradients saliency.",
              f"{_CORE}.extract:ExtractConfig", f"{_CORE}.extract:extract", "extract", "activations"),
    StageSpec("train", "Fit a registered concept method (--method; each brings its own options) on the cached activations.",
              f"{_CORE}.train:train_config_class", f"{_CORE}.train:train", "methods/{method}"),
    StageSpec("concepts", "Write concept cards, vectors and per-token assignments of a trained method.",
              f"{_CORE}.concepts:ConceptsConfig", f"{_CORE}.concepts:concepts", "concepts/{method}"),
    StageSpec("ablate", "Faithfulness: remove each sentence's concept at L_in (probe and model-level) vs random controls.",
              f"{_CORE}.ablation.stage:AblateConfig", f"{_CORE}.ablation.stage:ablate", "ablate", "ablation"),
    StageSpec("diagnose", "Diagnostics of a trained method: lookup FVU before/after training, oracle ceiling, NMI, decoder context use.",
              f"{_CORE}.diagnose:DiagnoseConfig", f"{_CORE}.diagnose:diagnose", "diagnose/{method}"),
    StageSpec("describe", "Explainer LLM: a one-line description of each concept the sampled units use (blind to the method).",
              f"{_JUDGE}.describe:DescribeConfig", f"{_JUDGE}.describe:describe", "describe", "judge/descriptions"),
    StageSpec("rank", "Blinded LLM judging of concept methods (calibrated pairwise by default, pairwise, listwise or detection), each with its known-answer control.",
              f"{_JUDGE}.rank:RankConfig", f"{_JUDGE}.rank:rank", "rank", "judge"),
    StageSpec("judges", "Calibration table of every judge that answered in a run: known-answer control, position bias, agreement, cost.",
              f"{_JUDGE}.judges:JudgesConfig", f"{_JUDGE}.judges:judges"),
    StageSpec("serve", "Serve a judge model (transformers, or llama.cpp with --model llamacpp:...; default: the embedded judge) as an OpenAI-compatible API.",
              f"{_JUDGE}.serve:ServeConfig", f"{_JUDGE}.serve:serve"),
    StageSpec("export", "Gather a run's ranking, ablation and human results into CSVs ready for a paper.",
              f"{_PIPE}.export:ExportConfig", f"{_PIPE}.export:export", "export"),
    StageSpec("report", "One self-contained HTML report of a run: per axis a summary table with CIs and a chart, concept cards; raw tables as CSVs.",
              f"{_PIPE}.report:ReportConfig", f"{_PIPE}.report:build_report", "report"),
    StageSpec("explore", "Concept explorer of a run (Streamlit): search concepts by word, one concept's members, contexts and verdicts, methods side by side.",
              f"{_PIPE}.explorer:ExploreConfig", f"{_PIPE}.explorer:explore"),
    StageSpec("study create", "Build a human-evaluation study (conditions concept, sentence, both) from a run and print one invite link per annotator.",
              f"{_HUMAN}.builder:CreateConfig", f"{_HUMAN}.builder:create_study", "studies/{name}"),
    StageSpec("study serve", "Start the annotation app (Streamlit) for a study.",
              f"{_HUMAN}.serve:StudyServeConfig", f"{_HUMAN}.serve:serve_study"),
    StageSpec("study results", "Accuracy per condition x method with CIs, the concept's added value, alpha, flags and progress, as tidy CSVs.",
              f"{_HUMAN}.results:ResultsConfig", f"{_HUMAN}.results:study_results", "studies/{name}/results"),
    StageSpec("study simulate", "LLM annotators answer a study through exactly the page a person sees, in every condition (kind 'simulated').",
              f"{_HUMAN}.simulate:SimulateConfig", f"{_HUMAN}.simulate:simulate_study", "studies/{name}/simulate"),
]

# Record key -> folder, where they differ (finetune's record lives in classifier/, rank's in judge/).
STAGE_DIRS = {s.record: s.folder for s in STAGES if s.record and s.folder}


def record_key(stage: str, **fields: str) -> str:
    """Stage `stage`'s record key in a run, its template filled in: record_key("study results", name="s")
    is "studies/s/results". The one place a record's key is spelled; readers and writers both ask here."""
    spec = next((s for s in STAGES if s.name == stage), None)
    if spec is None or spec.record is None:
        raise KeyError(f"stage {stage!r} keeps no record")
    return spec.record.format(**fields)


def spec_for(key: str) -> tuple[StageSpec, dict[str, str]] | None:
    for spec in STAGES:
        fields = spec.matches(key)
        if fields is not None:
            return spec, fields
    return None


def command_for(run: str, key: str) -> str:
    """"run `clvq-judge <stage> --run R [--method M | --name N]`": the command that remakes record `key`."""
    found = spec_for(key)
    if found is None:
        return f"rerun the stage that writes {key}/ of run {run!r}"
    spec, fields = found
    extra = "".join(f" --{k} {v}" for k, v in fields.items())
    return f"run `clvq-judge {spec.name} --run {run}{extra}`"
