"""scripts/tpu-check (tpu-configs/tpu_check.py): passes the Java exports a TPU can run, fails
the ones it cannot, naming the ops and nodes."""

import shutil
import subprocess
import sys

import pytest
from tensorflow.core.protobuf import saved_model_pb2

from conftest import ROOT, TRAINED

sys.path.insert(0, str(ROOT / "tpu-configs"))
import tpu_check  # noqa: E402  (lives with the TPU configs, not in a package)


def check(capsys, model_dir):
    status = tpu_check.main([model_dir])
    return status, capsys.readouterr().out


@pytest.mark.parametrize("name", TRAINED)
def test_the_trained_exports_pass(exports, capsys, name):
    status, out = check(capsys, exports[name].model_dir)
    assert (status, out) == (0, "PASS train\nPASS gradients\nPASS apply_gradients\n"
                                "PASS stateless_gradients\nPASS stateless_apply\n")


def test_a_float64_parameter_fails_naming_its_reads_and_math(exports, capsys):
    status, out = check(capsys, exports["float64"].model_dir)
    assert status == 1
    assert out.startswith("FAIL train\n")
    assert "dtypes: variable w/handle:0 is float64" in out
    assert "dtype float64 (a TPU step holds float32, bfloat16, int32, int64, bool):" in out
    assert "    ReadVariableOp (" in out and "    Sqrt (" in out


def test_a_print_op_fails_as_host_only_naming_its_node(exports, capsys):
    status, out = check(capsys, exports["print"].model_dir)
    assert status == 1
    lines = out.splitlines()
    assert lines[0] == "FAIL train"
    host = lines.index("  host-only op (no TPU kernel):")
    assert lines[host + 1].startswith("    PrintV2 (1): __inference_train_step_")
    assert lines[host + 1].endswith("/Print")
    assert "  dtype string (a TPU step holds float32, bfloat16, int32, int64, bool):" in lines
    # The model's loss (and its print) is in both gradients signatures too, not in the applies.
    assert "FAIL gradients" in lines and "PASS apply_gradients" in lines
    assert "FAIL stateless_gradients" in lines and lines[-1] == "PASS stateless_apply"


def test_an_export_without_the_stateless_signatures_fails_naming_them(exports, capsys, tmp_path):
    """What fadam-tf exported before the stateless signatures: the launcher cannot run it."""
    old = tmp_path / "old"
    shutil.copytree(exports["demo"].model_dir, old)
    model = saved_model_pb2.SavedModel()
    model.ParseFromString((old / "saved_model.pb").read_bytes())
    for meta in model.meta_graphs:
        del meta.signature_def["stateless_gradients"]
        del meta.signature_def["stateless_apply"]
    (old / "saved_model.pb").write_bytes(model.SerializeToString())
    status, out = check(capsys, str(old))
    assert status == 1
    assert out.startswith("PASS train\nPASS gradients\nPASS apply_gradients\n")
    for name in ("stateless_gradients", "stateless_apply"):
        assert (f"FAIL {name}\n  missing: the export has no {name} signature, which"
                " tpu-configs/train.py runs") in out


def test_an_export_without_the_variables_collection_fails(exports, capsys, tmp_path):
    """What fadam-tf exported before it wrote the collections: Python saw no variables."""
    old = tmp_path / "old"
    shutil.copytree(exports["demo"].model_dir, old)
    model = saved_model_pb2.SavedModel()
    model.ParseFromString((old / "saved_model.pb").read_bytes())
    for meta in model.meta_graphs:
        del meta.collection_def["variables"]
        del meta.collection_def["trainable_variables"]
    (old / "saved_model.pb").write_bytes(model.SerializeToString())
    status, out = check(capsys, str(old))
    assert status == 1
    assert "variables: the export lists no variables" in out
    assert "variable handle inside the step" in out and "    VarHandleOp (40): " in out  # 38 + the two hparams


def test_a_drop_in_export_fails_on_its_reference_variables(exports, capsys):
    status, out = check(capsys, exports["dropin"].model_dir)
    assert status == 1
    assert "  reference variable (VariableV2): use resource variables:" in out
    assert "    VariableV2 (5): " in out  # w, its m, fim and step, FAdam's skipped_steps


def test_the_script_exits_1_on_failure_and_2_on_a_usage_error(exports, tmp_path):
    script = str(ROOT / "scripts" / "tpu-check")
    done = subprocess.run([script, exports["print"].model_dir], capture_output=True, text=True)
    assert done.returncode == 1, done.stderr
    assert done.stdout.startswith("FAIL train\n")
    missing = subprocess.run([script, str(tmp_path / "nothing")], capture_output=True, text=True)
    assert missing.returncode == 2
    assert "no SavedModel at" in missing.stderr


def test_the_script_answers_help_and_the_poms_version(tmp_path):
    script = str(ROOT / "scripts" / "tpu-check")
    pom = (ROOT / "pom.xml").read_text()
    version = pom.split("<artifactId>fadam-tf-parent</artifactId>")[1].split("<version>")[1].split("<")[0]
    done = subprocess.run([script, "--version"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"tpu-check (fadam-tf {version})"
    usage = subprocess.run([script, "--help"], capture_output=True, text=True)
    assert usage.returncode == 0 and "SAVEDMODEL" in usage.stdout and "--batch-size" in usage.stdout
    bad = subprocess.run([script, "--no-such-flag", str(tmp_path)], capture_output=True, text=True)
    assert bad.returncode == 2 and "unrecognized arguments: --no-such-flag" in bad.stderr


def damaged_copy(exports, tmp_path, relative):
    """A copy of the demo export with the file at `relative` cut to half its length."""
    copy = tmp_path / "damaged"
    shutil.copytree(exports["demo"].model_dir, copy)
    if relative == "variables/variables.data":
        relative = next(p.relative_to(copy) for p in (copy / "variables").glob("variables.data-*"))
    target = copy / relative
    target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    return copy, target


@pytest.mark.parametrize("relative, cause", [
    ("saved_model.pb", "not a SavedModel: Error parsing message"),
    ("variables/variables.data", "TensorFlow: Read less bytes than requested"),
    ("variables/variables.index", "TensorFlow: "),
])
def test_a_truncated_export_is_one_line_naming_the_file(exports, capsys, tmp_path, relative, cause):
    copy, target = damaged_copy(exports, tmp_path, relative)
    status = tpu_check.main([str(copy)])
    captured = capsys.readouterr()
    assert status == 2
    assert captured.out == ""
    assert captured.err.startswith(f"tpu-check: {target} is truncated or corrupt ({cause}"), captured.err
    assert captured.err.count("\n") == 1, captured.err


def test_the_script_says_so_in_one_line_without_a_traceback(exports, tmp_path):
    copy, target = damaged_copy(exports, tmp_path, "variables/variables.data")
    done = subprocess.run([str(ROOT / "scripts" / "tpu-check"), str(copy)], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr == (f"tpu-check: {target} is truncated or corrupt"
                           " (TensorFlow: Read less bytes than requested)\n")


def test_an_unknown_flag_is_reported_with_or_without_a_path(tmp_path):
    script = str(ROOT / "scripts" / "tpu-check")
    alone = subprocess.run([script, "--bogus"], capture_output=True, text=True)
    assert alone.returncode == 2
    assert "tpu-check: error: unrecognized arguments: --bogus (and SAVEDMODEL is missing)" in alone.stderr
    assert "Traceback" not in alone.stderr
