"""The machine record a timing is read against: parsed from /proc/cpuinfo, one caption line in the README."""

import importlib.util
from pathlib import Path

from clvq_judge.core import machine

ROOT = Path(__file__).resolve().parents[1]


def test_cpuinfo_parse_keeps_model_and_flags(tmp_path):
    fake = tmp_path / "cpuinfo"
    fake.write_text("processor\t: 0\nmodel name\t: AMD EPYC 7B12\nflags\t\t: fpu sse2 avx avx2 fma f16c\n\n"
                    "processor\t: 1\nmodel name\t: AMD EPYC 7B12\nflags\t\t: fpu sse2 avx avx2 fma f16c\n")
    model, flags = machine._proc_cpuinfo(fake)
    assert model == "AMD EPYC 7B12" and {"avx2", "fma"} <= flags and "avx512f" not in flags
    assert machine._proc_cpuinfo(tmp_path / "missing") == (None, set())


def test_cpu_info_names_the_flags_that_decide_speed():
    info = machine.cpu_info()
    assert info["model"] and info["cores"] >= 1 and info["torch_threads"] >= 1
    assert all(machine.RELEVANT_FLAG.match(f) for f in info["flags"])
    assert info["avx512"] == any(f.startswith("avx512") for f in info["flags"])
    assert info["native_bf16"] <= bool({"avx512_bf16", "amx_bf16"} & set(info["flags"]))


def test_readme_time_line_says_which_machine():
    spec = importlib.util.spec_from_file_location("readme_table", ROOT / "benchmarks" / "readme_table.py")
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    plain = {"model": "AMD EPYC 7B12", "cores": 2, "avx2": True, "avx512": False, "amx": False, "native_bf16": False}
    line = table.machine_line(plain, {"train": "float32", "rank": {"embedded": "float32"}})
    assert line == ("Measured on AMD EPYC 7B12, 2 cores, AVX2, no AVX-512 or native bf16; model stages in float32, "
                    "judge in float32.")


def test_isa_caps_are_recorded_and_named_in_the_caption(monkeypatch):
    for name in machine.ISA_CAPS:
        monkeypatch.setenv(name, "avx2" if name == "ATEN_CPU_CAPABILITY" else "AVX2")
    info = machine.cpu_info()
    assert set(info["isa_caps"]) == set(machine.ISA_CAPS) and machine.capped_to_avx2(info)
    strong = {"model": "Xeon", "cores": 2, "avx2": True, "avx512": True, "amx": True, "native_bf16": True,
              "isa_caps": info["isa_caps"]}
    assert "capped to AVX2" in machine.describe(strong)
    monkeypatch.delenv("MKL_ENABLE_INSTRUCTIONS")
    partial = machine.cpu_info()
    assert not machine.capped_to_avx2(partial)
    assert "capped" not in machine.describe({**strong, "isa_caps": partial["isa_caps"]})
