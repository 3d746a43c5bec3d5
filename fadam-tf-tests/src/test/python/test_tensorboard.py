"""TensorBoard scalars (docs/telemetry.md): Java's org.fadam.Summaries and tpu-configs/train.py
--tensorboard write the loss and every step-telemetry tag, and the event files read back with
tf.compat.v1.train.summary_iterator hold, at each step, exactly the values that step returned."""
import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.framework import tensor_util

from conftest import LAUNCHER, events, run_java, write_tfrecord

TAGS = ["loss", "grad_rms", "clipped_natural", "clipped_decay", "eps_floor", "skipped", "learning_rate"]
STEPS = 3


def scalars(folder):
    """{(tag, step): value} of every scalar in the event files under folder (each once)."""
    out = {}
    files = sorted(str(p) for p in folder.rglob("events.out.tfevents.*"))
    assert files, f"no event file under {folder}"
    for f in files:
        for event in tf.compat.v1.train.summary_iterator(f):
            for v in event.summary.value:
                value = (float(tensor_util.MakeNdarray(v.tensor)) if v.HasField("tensor")
                         else float(v.simple_value))
                key = (v.tag, event.step)
                assert key not in out, f"{key} written twice"
                out[key] = value
    return out


def assert_same(written, returned, where):
    """Every tag at every step: the float32 of what the step returned."""
    for step, values in returned.items():
        for tag in TAGS:
            want = np.float32(values[tag])
            got = np.float32(written[(tag, step)])
            assert (np.isnan(want) and np.isnan(got)) or got == want, (where, tag, step, got, want)
    assert {tag for tag, _ in written} == set(TAGS), where
    assert {step for _, step in written} == set(returned), where


def test_javas_summaries_hold_what_each_step_returned(tmp_path):
    run_java("org.fadam.tools.PythonInterop", "summaries", "--model", "bf16", "--steps", STEPS,
             "--out", tmp_path)
    returned = {row["step"]: row for row in json.loads((tmp_path / "steps.json").read_text())}
    assert sorted(returned) == list(range(1, STEPS + 1))
    # the telemetry is real: a gradient, η_t of the model, fractions in [0, 1]
    assert all(r["grad_rms"] > 0 and r["learning_rate"] > 0 for r in returned.values())
    assert all(0 <= r[t] <= 1 for r in returned.values() for t in ("clipped_natural", "clipped_decay", "eps_floor"))
    assert_same(scalars(tmp_path / "java"), returned, "java")


def test_train_py_writes_the_same_tags_from_the_chief(exports, tmp_path):
    rng = np.random.default_rng(1)
    rows = STEPS * 8
    write_tfrecord(tmp_path / "data.tfrecord", {
        "x": rng.normal(size=(rows, 4)).astype(np.float32),
        "y": np.eye(3, dtype=np.float32)[np.arange(rows) % 3]})
    board = tmp_path / "board"
    done = subprocess.run(
        [sys.executable, str(LAUNCHER), "--savedmodel", str(exports["error"].model_dir),
         "--data", str(tmp_path / "data.tfrecord"), "--global-batch", "8", "--steps", str(STEPS),
         "--log-every", "1", "--tensorboard", str(board)],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    returned = {e["step"]: e for e in events(done.stdout) if "step" in e and "event" not in e}
    assert sorted(returned) == list(range(1, STEPS + 1))
    for r in returned.values():
        assert r["grad_rms"] > 0 and r["learning_rate"] > 0 and r["skipped"] == 0
    assert_same(scalars(board), returned, "train.py")


def test_train_py_refuses_a_tensorboard_folder_it_cannot_write(exports, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    done = subprocess.run(
        [sys.executable, str(LAUNCHER), "--savedmodel", str(exports["error"].model_dir),
         "--data", str(tmp_path / "none.tfrecord"), "--global-batch", "8", "--steps", "1",
         "--tensorboard", str(blocker / "sub")],
        capture_output=True, text=True, timeout=300)
    lines = [line for line in done.stderr.splitlines() if line.startswith("train.py:")]
    assert done.returncode != 0
    assert len(lines) == 1 and "--tensorboard" in lines[0], done.stderr[-2000:]
    assert not [e for e in events(done.stdout) if "step" in e and "event" not in e], "it trained"
