import numpy as np
import pytest

from clvq_judge.core.atomic import write_json, write_with
from clvq_judge.core.errors import UserError
from clvq_judge.core.runs import Run


def test_failed_write_leaves_no_file_and_no_temp(tmp_path):
    target = tmp_path / "a.npy"

    def boom(path):
        np.save(path, np.zeros(3))
        raise RuntimeError("disk died")

    with pytest.raises(RuntimeError):
        write_with(target, boom, suffix=".npy")
    assert list(tmp_path.iterdir()) == []
    write_with(target, lambda p: np.save(p, np.ones(2)), suffix=".npy")
    assert np.load(target).tolist() == [1, 1] and len(list(tmp_path.iterdir())) == 1


def test_stage_markers(tmp_path):
    from dataclasses import dataclass

    @dataclass
    class Cfg:
        x: int = 1

    run = Run.open(tmp_path, "r", create=True)
    assert run.begin("s", Cfg()) is True
    (run.stage_dir("s") / "partial.bin").write_text("half")
    assert run.begin("s", Cfg()) is True and (run.stage_dir("s") / "partial.bin").exists()  # resume keeps work
    assert run.begin("s", Cfg(x=2)) is True and not (run.stage_dir("s") / "partial.bin").exists()  # other options restart
    run.finish("s", Cfg(x=2))
    assert run.begin("s", Cfg(x=2)) is False
    with pytest.raises(UserError, match="--force"):
        run.begin("s", Cfg(x=3))
    assert run.begin("s", Cfg(x=3), force=True) is True
    write_json(run.root / "run.json", {})
    with pytest.raises(UserError, match="invalid run name"):
        Run.open(tmp_path, "../escape")
