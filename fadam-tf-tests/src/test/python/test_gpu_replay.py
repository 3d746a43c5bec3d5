"""scripts/gpu-replay on JAX's CPU backend: the HLO modules TF Java's XLA compiled, replayed by
another XLA (JAX's), equal TF's own CPU outputs after steps 1 and 3 — the check a GPU run repeats
on the GPU backend. Java exports the `ci` set once (scripts/xla-dump --replay ci)."""

import importlib.machinery
import importlib.util
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, run_java

REPLAY = ROOT / "scripts" / "gpu-replay"
# The step telemetry outputs after step, finite, applied (docs/telemetry.md)
TELEMETRY = ["grad_rms", "clipped_natural", "clipped_decay", "eps_floor", "skipped", "learning_rate"]
CI_SET = ["fadam_f32_128x256", "fadam_bf16_128x256", "fadafactor_f32_128x256",
          "fadafactor_bf16_128x256", "demo_fadam", "demo_fadafactor", "transformer_fadam"]


def replay_module():
    """scripts/gpu-replay as a module (its top level imports only the standard library)."""
    loader = importlib.machinery.SourceFileLoader("gpu_replay", str(REPLAY))
    spec = importlib.util.spec_from_loader("gpu_replay", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def run_replay(folder, *args):
    return subprocess.run([sys.executable, str(REPLAY), "--cpu", str(folder), *args],
                          capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="session")
def ci_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("replay-ci")
    run_java("org.fadam.tools.XlaDump", "--replay", "ci", "--out", out)
    return out


def one_config(ci_set, name, folder):
    """A folder with one configuration of the ci set: its files and a manifest of it alone."""
    manifest = json.loads((ci_set / "manifest.json").read_text())
    config = next(c for c in manifest["configs"] if c["name"] == name)
    for f in (config["hlo"], config["data"]):
        shutil.copy(ci_set / f, folder / f)
    manifest["configs"] = [config]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return config


def test_every_ci_step_matches_tfs_cpu_outputs(ci_set, tmp_path):
    results_file = tmp_path / "results.json"
    done = run_replay(ci_set, "--json", results_file)
    print(done.stdout)
    assert done.returncode == 0, done.stdout + done.stderr[-4000:]
    results = json.loads(results_file.read_text())["results"]
    assert [r["name"] for r in results] == CI_SET
    assert all(r["check"] == "ok" for r in results), results
    for r in results:
        if not r["name"].startswith(("demo_", "transformer_")):
            # The gradient is an input, bit for bit: nothing but float32 round-off, everywhere.
            assert r["amplified_elements"] == 0 and r["max_diff"] < 1e-5, r


def test_parameters_and_outputs_are_named_from_the_module(ci_set):
    manifest = json.loads((ci_set / "manifest.json").read_text())
    fadam = next(c for c in manifest["configs"] if c["name"] == "fadam_f32_128x256")
    assert [(p["name"], p["role"], p["dtype"], p["shape"]) for p in fadam["params"]] == [
        ("grad_theta", "input", "float32", [128, 256]),
        ("theta", "variable", "float32", [128, 256]),
        ("train_step/theta-m", "variable", "float32", [128, 256]),
        ("train_step/theta-fim", "variable", "float32", [128, 256]),
        ("train_step/theta-step", "variable", "int64", []),
        ("train_step/train_step-iterations", "variable", "int64", []),
        ("train_step/train_step-skipped_steps", "variable", "int64", []),
        ("train_step/hparams/learning_rate_scale", "variable", "float32", []),  # read, never written
        ("train_step/hparams/weight_decay", "variable", "float32", []),
    ]
    # The optimizer alone: the export's apply_gradients function, gradient in, no loss.
    assert fadam["hlo_module"].startswith("train_step_apply_gradients")
    assert [(o["name"], o["role"], o.get("param")) for o in fadam["outputs"]] == [
        ("step", "result", None), ("finite", "result", None), ("applied", "result", None),
        *[(t, "result", None) for t in TELEMETRY],
        ("theta", "update", 1), ("train_step/theta-m", "update", 2), ("train_step/theta-fim", "update", 3),
        ("train_step/theta-step", "update", 4), ("train_step/train_step-iterations", "update", 5),
        ("train_step/train_step-skipped_steps", "update", 6)]
    bf16 = next(c for c in manifest["configs"] if c["name"] == "fadafactor_bf16_128x256")
    assert [(p["name"], p["dtype"], p["shape"]) for p in bf16["params"][1:4]] == [
        ("theta", "bfloat16", [128, 256]), ("train_step/theta-m", "float32", [128, 256]),
        ("train_step/theta-fim_row", "float32", [128])]
    demo = next(c for c in manifest["configs"] if c["name"] == "demo_fadam")
    assert [p["name"] for p in demo["params"][:3]] == ["tokens", "labels", "embedding"]
    assert [o["name"] for o in demo["outputs"][:11]] == [
        "loss", "step", "finite", "applied", *TELEMETRY, "embedding"]
    assert demo["parameters"] == sum(int(np.prod(p["shape"])) for p in demo["params"][2:11])


def test_an_output_off_by_more_than_round_off_fails(ci_set, tmp_path):
    config = one_config(ci_set, "fadam_f32_128x256", tmp_path)
    data = dict(np.load(tmp_path / config["data"]))
    theta = data["out3_p1"].copy()
    theta.flat[1234] *= 1 + 1e-4  # 400 float32 ulps
    data["out3_p1"] = theta
    np.savez(tmp_path / config["data"], **data)
    done = run_replay(tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr[-4000:]
    assert "step 3 theta (float32): 1 of 32768 elements beyond round-off" in done.stdout


def test_parameters_fed_in_the_wrong_order_fail(ci_set, tmp_path):
    config = one_config(ci_set, "fadam_f32_128x256", tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    params = manifest["configs"][0]["params"]
    params[2]["index"], params[3]["index"] = params[3]["index"], params[2]["index"]  # m <-> fim
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    done = run_replay(tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr[-4000:]
    assert "FAIL" in done.stdout, done.stdout


def test_the_mlir_rewrite_of_tfs_variable_write_back():
    r = replay_module()
    text = ('module @m attributes {mhlo.cross_program_prefetches = [], mhlo.input_output_alias = [{alias = '
            '{kind = "may_alias", parameter_index = array<i64>, parameter_number = 2 : i64}, output_index = '
            'array<i64: 3>}], mhlo.is_dynamic = false} {\n'
            '    %610 = mhlo.copy %609 : tensor<64x64xf32> loc(#loc338)\n}')
    copied = r._COPY.sub(r"\1 = stablehlo.reshape \2 : (\3) -> \3", text)
    assert "%610 = stablehlo.reshape %609 : (tensor<64x64xf32>) -> tensor<64x64xf32> loc(#loc338)" in copied
    dot = "%150 = stablehlo.dot %149, %arg3, precision = [DEFAULT, DEFAULT] : (tensor<2x3xf32>, tensor<3x4xf32>)"
    assert "precision = [HIGHEST, HIGHEST]" in r._DEFAULT_PRECISION.sub("precision = [HIGHEST, HIGHEST]", dot)
    assert r.drop_attribute(copied, "mhlo.input_output_alias").startswith(
        "module @m attributes {mhlo.cross_program_prefetches = [], mhlo.is_dynamic = false} {")


def test_the_tolerances():
    r = replay_module()
    want = np.array([1.0, -2.0, 1e-3], np.float32)
    assert r.difference(want * (1 + 1e-6), want, "float32")[1] == 0
    # 1e-4 relative is beyond round-off, except on 1e-3, which is held to 2e-6 of the largest (2).
    assert r.difference(want * (1 + 1e-4), want, "float32")[1] == 2
    assert r.difference(np.array([3, 4]), np.array([3, 5]), "int64")[1] == 1
    demo = {"model": "demo"}
    assert r.acceptable(demo, 0.04, 1, 1000) and not r.acceptable(demo, 0.06, 1, 1000)
    assert r.acceptable({"model": "transformer"}, 0.04, 10, 1000)
    assert not r.acceptable(demo, 0.01, 11, 1000) and not r.acceptable({"model": "optimizer"}, 1e-4, 1, 1000)


@pytest.mark.parametrize("text, cause", [
    ('{"configs": [{"name": "demo_fadam", "hlo": "demo_fadam.hlo', "Unterminated string"),
    ('{"configs": [{"name": "demo_fadam"}]}', "no hlo in a configuration"),
    ("[]", "list indices must be integers"),
])
def test_a_damaged_manifest_is_one_line_naming_it(tmp_path, text, cause):
    (tmp_path / "manifest.json").write_text(text)
    done = run_replay(tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    manifest = tmp_path / "manifest.json"
    assert done.stderr.startswith(f"gpu-replay: {manifest} is truncated or corrupt ({cause}"), done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
