"""Every user-fixable problem gives one clear line on stderr, exit code 2, and no traceback."""

import subprocess
import sys

import pandas as pd
import pytest

from clvq_judge.cli.main import main


def _files(tmp_path):
    ok = pd.DataFrame({"text": [f"sample {i} text" for i in range(30)], "label": [i % 2 for i in range(30)]})
    (tmp_path / "empty.csv").write_text("text,label\n")
    ok.drop(columns="label").to_csv(tmp_path / "nolabel.csv", index=False)
    ok.assign(label=1).to_csv(tmp_path / "oneclass.csv", index=False)
    (tmp_path / "latin1.csv").write_bytes(b"text,label\n" + "caf\xe9 tr\xe8s bon,1\nmauvais,0\n".encode("latin-1"))
    (tmp_path / "malformed.csv").write_text('text,label\n"unterminated quote,1\nfine,0\n')
    (tmp_path / "afile").write_text("not a folder")
    return tmp_path


CASES = [
    # (argv, words the one-line message must contain)
    (["finetune", "--dataset", "{tmp}/missing.csv"], ["does not exist"]),
    (["finetune", "--dataset", "no_such_org/no_such_dataset"], ["hub", "embedded dataset"]),
    (["finetune", "--dataset", "{tmp}/empty.csv"], ["no usable rows"]),
    (["finetune", "--dataset", "{tmp}/nolabel.csv"], ["column 'label'", "--label-column"]),
    (["finetune", "--dataset", "{tmp}/oneclass.csv"], ["single class"]),
    (["finetune", "--dataset", "{tmp}/latin1.csv"], ["not valid utf-8", "--encoding latin-1"]),
    (["finetune", "--dataset", "{tmp}/malformed.csv"], ["cannot parse"]),
    (["finetune", "--model", "no-such-org/no-such-model", "--max-train", "20", "--max-dev", "10"], ["embedded models"]),
    (["finetune", "--runs-dir", "{tmp}/afile/runs"], ["cannot write", "--runs-dir"]),
    (["finetune", "--mode", "sideways"], ["--mode"]),
    (["finetune", "--device", "cuda"], ["no CUDA"]),
    (["extract", "--run", "never-made"], ["not found", "finetune"]),
    (["extract", "--run", "tiny", "--runs-dir", "{runs}", "--layers", "4", "9"], ["layer 9", "0..6"]),
    (["extract", "--run", "tiny", "--runs-dir", "{runs}", "--aggregate", "median"], ["--aggregate"]),
    (["finetune", "--run", "tiny", "--runs-dir", "{runs}", "--model", "gemma-270m", "--max-train", "150", "--max-dev", "40"], ["--force"]),
]


@pytest.mark.parametrize("argv,needles", CASES, ids=[" ".join(c[0][:3]) for c in CASES])
def test_bad_input_one_line_exit_2(argv, needles, tmp_path, minilm_run, capsys):
    runs, _ = minilm_run
    _files(tmp_path)
    argv = [a.format(tmp=tmp_path, runs=runs) for a in argv]
    if "--runs-dir" not in argv:
        argv += ["--runs-dir", str(tmp_path / "runs")]
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle.lower() in err.lower(), err


def test_real_process_exit_code_and_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "clvq_judge.cli.main", "finetune", "--dataset", str(tmp_path / "x.csv"),
                           "--runs-dir", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "does not exist" in proc.stderr


def test_help_lists_every_option_with_default(capsys):
    with pytest.raises(SystemExit):
        main(["extract", "--help"])
    out = capsys.readouterr().out
    for option in ("--layers", "--aggregate", "--ig-steps", "--device", "--force", "--run"):
        assert option in out
    assert "(default: last)" in out and "(default: auto)" in out
