"""precision.py: what `--precision=auto` picks on faked hardware, and the resume rules."""

import json
import os

import pytest

from ssagan_tf import precision
from ssagan_tf.training.config import resolve_precision

NO_BF16 = frozenset({"sse4_2", "avx2", "avx512f"})


@pytest.mark.parametrize("gpus,flags,expected,why", [
    ([], {"avx512f", "amx_bf16", "amx_tile"}, "bf16", "amx_bf16"),
    ([], {"avx512f", "avx512_bf16"}, "bf16", "avx512_bf16"),
    ([], NO_BF16, "fp32", "no amx_bf16 or avx512_bf16"),
    ([(8, 0)], NO_BF16, "bf16", "capability 8.0 has fast bfloat16"),
    ([(9, 0), (9, 0)], NO_BF16, "bf16", "capability 9.0"),
    ([(7, 0)], {"avx512_bf16"}, "fp16", "capability 7.0 has float16"),      # GPUs decide over the CPU
    ([(7, 5), (8, 6)], NO_BF16, "fp16", "capability 7.5"),                   # the slowest GPU decides
    ([(6, 1)], {"avx512_bf16"}, "fp32", "capability 6.1 has neither"),
])
def test_auto_picks_by_hardware(gpus, flags, expected, why):
    choice = precision.choose_precision("auto", gpus=gpus, flags=frozenset(flags))
    assert choice.precision == expected and choice.requested == "auto"
    assert why in choice.reason
    assert choice.describe().startswith(f"Precision {expected} (auto: ")


@pytest.mark.parametrize("name", ["fp32", "bf16", "fp16"])
def test_explicit_precision_is_taken_as_is(name):
    choice = precision.choose_precision(name, gpus=[(6, 0)], flags=NO_BF16)
    assert choice.precision == name and choice.reason == "as requested"


def test_bad_precision_and_policies():
    with pytest.raises(ValueError, match="precision must be one of auto, fp32, bf16, fp16"):
        precision.choose_precision("float8")
    assert [precision.dtype_policy(p) for p in ("fp32", "bf16", "fp16")] == \
        ["float32", "mixed_bfloat16", "mixed_float16"]


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text("processor\t: 0\nmodel name\t: X\nflags\t\t: fpu avx512f avx512_bf16 amx_tile\n\n"
                    "processor\t: 1\nflags\t\t: fpu\n")
    assert precision.cpu_flags(str(path)) == {"fpu", "avx512f", "avx512_bf16", "amx_tile"}
    assert precision.cpu_flags(str(tmp_path / "missing")) == frozenset()


def saved_run(tmp_path, model_fields):
    os.makedirs(tmp_path / "checkpoints")
    (tmp_path / "checkpoints" / "checkpoint").write_text('model_checkpoint_path: "ckpt-1"\n')
    (tmp_path / "checkpoints" / "ckpt-1.index").write_bytes(b"")
    (tmp_path / "config.json").write_text(json.dumps({"data_dir": "data", "model_dir": str(tmp_path), "tau": 0.1,
                                                      "model": {"system": "ssa_cyclegan", "image_size": 32, "channels": 1, "ngf": 8,
                                                                "ndf": 8, "n_res_blocks": 1, **model_fields}}))
    return str(tmp_path)


def test_auto_continues_a_saved_run_in_its_precision(tmp_path):
    run = saved_run(tmp_path, {"precision": "fp32"})
    choice = resolve_precision("auto", run, flags=frozenset({"avx512_bf16"}), gpus=[])
    assert choice.precision == "fp32" and "resuming a run trained in fp32" in choice.reason
    # --fresh, or an explicit precision, decide anew.
    assert resolve_precision("auto", run, fresh=True, flags=frozenset({"avx512_bf16"}), gpus=[]).precision == "bf16"
    assert resolve_precision("bf16", run).precision == "bf16"


def test_a_run_saved_with_mixed_precision_resumes_as_fp16(tmp_path):
    run = saved_run(tmp_path, {"mixed_precision": True})
    assert resolve_precision("auto", run, gpus=[], flags=NO_BF16).precision == "fp16"


def test_a_directory_without_checkpoints_decides_by_hardware(tmp_path):
    assert resolve_precision("auto", str(tmp_path), gpus=[], flags=NO_BF16).precision == "fp32"


def test_a_stale_checkpoint_index_without_files_is_no_saved_run(tmp_path):
    os.makedirs(tmp_path / "checkpoints")
    (tmp_path / "checkpoints" / "checkpoint").write_text('model_checkpoint_path: "ckpt-9"\n')
    (tmp_path / "config.json").write_text(json.dumps({"model": {"precision": "fp16"}}))
    assert resolve_precision("auto", str(tmp_path), gpus=[], flags=NO_BF16).precision == "fp32"
