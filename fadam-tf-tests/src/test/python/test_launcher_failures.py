"""tpu-configs/train.py on bad input and when the cluster does not assemble.

Each bad input stops the launcher with one line ("train.py: ...") and a non-zero exit status,
before it writes anything, leaving an existing checkpoint byte for byte as it was: an export
without the stateless signatures, a global batch the replicas cannot share, data whose features
do not match the train inputs, a checkpoint of another model, too little data for --steps. A
non-finite gradient under the export's ERROR policy stops it with Java's message; under SKIP
the step is skipped and logged. A lone multi-worker worker logs whom it waits for, gives up after
--connect-timeout, and stops at once on SIGTERM. Every run is a subprocess with a timeout.
"""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from conftest import LAUNCHER, ROOT, events, export_batches, free_ports, variable_name, write_tfrecord

TIMEOUT = 120  # seconds, for any one launcher process
BATCHES = 3  # global batches of the data
JAVA_MESSAGE = ("non-finite gradient (NaN, Inf, or a sum of squares that overflows) for variable `w`;"
                " no variable was changed")


@pytest.fixture(scope="module")
def small(exports, tmp_path_factory):
    """The small classifier export (x [batch, 4], y [batch, 3]; "error" of PythonInterop: cheap
    to load and compile), BATCHES global batches of 8 rows as TFRecord, and a launcher checkpoint
    of it."""
    d = tmp_path_factory.mktemp("failures")
    columns = _classifier_columns(BATCHES * 8)
    write_tfrecord(d / "data.tfrecord", columns)
    model = exports["error"].model_dir
    _launcher_checkpoint(model, d / "ckpt", 1)
    return {"model": model, "data": d / "data.tfrecord", "batch": 8, "columns": columns,
            "ckpt": d / "ckpt"}


def _classifier_columns(rows):
    rng = np.random.default_rng(0)
    return {"x": rng.normal(size=(rows, 4)).astype(np.float32),
            "y": np.eye(3, dtype=np.float32)[np.arange(rows) % 3]}


def _launcher_checkpoint(model_dir, folder, step):
    """A checkpoint as the launcher writes one: its step and every variable by Java name."""
    loaded = tf.saved_model.load(model_dir)
    checkpoint = tf.train.Checkpoint(step=tf.Variable(step, dtype=tf.int64),
                                     variables={variable_name(v): v for v in loaded.variables})
    tf.train.CheckpointManager(checkpoint, str(folder), max_to_keep=1).save(checkpoint_number=step)


def snapshot(folder):
    """Every file under a folder with its bytes and modification time."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(pathlib.Path(folder).rglob("*")) if p.is_file()}


def launch(*args, env=None):
    done = subprocess.run([sys.executable, str(LAUNCHER), *map(str, args)], capture_output=True,
                          text=True, timeout=TIMEOUT, env={**os.environ, **(env or {})})
    lines = [line for line in done.stderr.splitlines() if line.startswith("train.py:")]
    return done.returncode, lines, events(done.stdout)


def fails_cleanly(small, tmp_path, *args, status=1, ckpt=None):
    """Runs the launcher on a copy of a checkpoint folder; returns its one error line after
    checking the exit status, that it never started training and the checkpoint is untouched."""
    folder = tmp_path / "ckpt"
    shutil.copytree(ckpt or small["ckpt"], folder)
    before = snapshot(folder)
    code, lines, ev = launch(*args, "--checkpoint-dir", folder)
    assert code == status, lines
    assert len(lines) == 1, lines
    assert not [e for e in ev if "step" in e and "event" not in e], "it trained"
    assert snapshot(folder) == before, "the checkpoint changed"
    return lines[0]


def test_an_export_without_the_stateless_signatures(small, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(small["model"], old)
    model = saved_model_pb2.SavedModel()
    model.ParseFromString((old / "saved_model.pb").read_bytes())
    for meta in model.meta_graphs:
        del meta.signature_def["stateless_gradients"]
        del meta.signature_def["stateless_apply"]
    (old / "saved_model.pb").write_bytes(model.SerializeToString())
    line = fails_cleanly(small, tmp_path, "--savedmodel", old, "--data", small["data"],
                         "--global-batch", small["batch"], "--steps", 2)
    assert line.startswith(f"train.py: --savedmodel {old} has no stateless_gradients or"
                           " stateless_apply signature"), line
    assert "re-export it" in line


def test_a_global_batch_the_replicas_cannot_share(small, tmp_path):
    line = fails_cleanly(small, tmp_path, "--strategy", "mirrored", "--cpu-replicas", 2,
                         "--savedmodel", small["model"], "--data", small["data"],
                         "--global-batch", small["batch"] - 1, "--steps", 2, status=2)
    assert line == f"train.py: --global-batch {small['batch'] - 1} is not a multiple of the 2 replicas"


@pytest.mark.parametrize("case", ["missing", "misshapen", "misshapen-later"])
def test_data_that_does_not_match_the_train_inputs(small, tmp_path, case):
    columns = dict(small["columns"])
    if case == "missing":
        del columns["y"]
    else:
        x = np.concatenate([columns["x"], columns["x"][:, :1]], axis=1)  # 5 a row
        if case == "misshapen-later":  # only one record of the second global batch
            bad = small["batch"] + 5
            columns["x"] = [x[r] if r == bad else columns["x"][r] for r in range(len(x))]
        else:
            columns["x"] = x
    write_tfrecord(tmp_path / "bad.tfrecord", columns)
    args = ["--savedmodel", small["model"], "--data", tmp_path / "bad.tfrecord",
            "--global-batch", small["batch"], "--steps", 2]
    if case == "misshapen-later":  # found when its batch is parsed: after step 1, no checkpoint yet
        folder = tmp_path / "ckpt"
        code, lines, ev = launch(*args, "--checkpoint-dir", folder, "--checkpoint-every", 2)
        assert code == 1 and len(lines) == 1, lines
        assert lines[0].startswith(f"train.py: --data: a record of global batch 2 (rows {small['batch']}"
                                   f" to {2 * small['batch'] - 1}) does not match the train inputs"
                                   " (x float32 [batch, 4], y float32 [batch, 3]): Key: x, Index: 5."), lines[0]
        assert not folder.exists() or not list(folder.glob("ckpt-*")), "it wrote a checkpoint"
        return
    line = fails_cleanly(small, tmp_path, *args)
    prefix = f"train.py: --data {tmp_path / 'bad.tfrecord'}: the first record"
    if case == "missing":
        assert line == (f"{prefix} has no feature `y` (the train inputs: x float32 [batch, 4],"
                        " y float32 [batch, 3]; it has x)")
    else:
        assert line == (f"{prefix}'s feature `x` holds 5 float values; the train input x"
                        " is float32 [batch, 4]: 4 float values per row")


def test_a_checkpoint_of_another_model(small, exports, tmp_path):
    other = tmp_path / "other"
    _launcher_checkpoint(exports["demo"].model_dir, other, 3)
    line = fails_cleanly(small, tmp_path, "--savedmodel", small["model"], "--data", small["data"],
                         "--global-batch", small["batch"], "--steps", 2, ckpt=other)
    assert line == (f"train.py: checkpoint {tmp_path / 'ckpt' / 'ckpt-3'} is not of this model"
                    f" (--savedmodel {small['model']}): it lacks `train_step/w-fim`,"
                    " `train_step/w-m`, `train_step/w-step` and 1 more; it has `b1`, `b2`, `b3` and"
                    " 33 more, which the model does not")


def test_too_little_data_for_the_steps(small, tmp_path):
    start = time.monotonic()
    line = fails_cleanly(small, tmp_path, "--savedmodel", small["model"], "--data", small["data"],
                         "--global-batch", small["batch"], "--steps", BATCHES + 1)
    rows = BATCHES * small["batch"]
    assert line == (f"train.py: --data holds {rows} rows, {BATCHES} global batches of {small['batch']};"
                    f" --steps {BATCHES + 1} needs {rows + small['batch']} rows")
    print(f"too little data: refused after {time.monotonic() - start:.1f} s (process start included)")


def _classifier_data(path):
    """16 rows of the 4-feature, 3-class models; row 9 (global batch 2 of 8 rows) holds a NaN."""
    columns = _classifier_columns(16)
    columns["x"][9, 1] = np.nan
    write_tfrecord(path, columns)


def test_a_non_finite_gradient_under_error_stops_with_javas_message(exports, tmp_path):
    # The message is Java's: org.fadam.Updater.nonFiniteMessage and StepRunner's ending.
    java = (ROOT / "fadam-tf/src/main/java/org/fadam/Updater.java").read_text()
    assert '"non-finite gradient (NaN, Inf, or a sum of squares that overflows) for variable `"' in java
    assert '"; no variable was changed"' in (ROOT / "fadam-tf/src/main/java/org/fadam/StepRunner.java").read_text()
    _classifier_data(tmp_path / "nan.tfrecord")
    folder = tmp_path / "ckpt"
    code, lines, ev = launch("--savedmodel", exports["error"].model_dir, "--data", tmp_path / "nan.tfrecord",
                             "--global-batch", 8, "--steps", 2, "--log-every", 1,
                             "--checkpoint-dir", folder, "--checkpoint-every", 1)
    assert (code, lines) == (1, [f"train.py: {JAVA_MESSAGE}"])
    assert [e["step"] for e in ev if e.get("event") == "checkpoint"] == [1]
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint", "ckpt-1.data-00000-of-00001", "ckpt-1.index"]


def test_a_non_finite_gradient_under_skip_is_skipped_and_logged(exports, tmp_path):
    _classifier_data(tmp_path / "nan.tfrecord")
    code, lines, ev = launch("--savedmodel", exports["float64"].model_dir, "--data", tmp_path / "nan.tfrecord",
                             "--global-batch", 8, "--steps", 2, "--log-every", 1)
    assert (code, lines) == (0, [])
    logged = [e for e in ev if "loss" in e]
    assert [(e["step"], e["skipped_steps"], e["model_step"]) for e in logged] == [(1, 0, 1), (2, 1, 2)]
    assert logged[1]["loss"] is None  # NaN: not a JSON number


def _lone_worker(*extra, env=None):
    """Worker 1 of a two-worker cluster whose worker 0 never starts."""
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    env = {**os.environ, **(env or {}),
           "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 1}})}
    args = [sys.executable, str(LAUNCHER), "--strategy", "multiworker", "--savedmodel", "unused",
            "--data", "unused", "--global-batch", 2, "--steps", 1, *extra]
    proc = subprocess.Popen([str(a) for a in args], env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    return proc, cluster["worker"]


def _first_event(proc):
    line = proc.stdout.readline()  # the watchdog's first "waiting" line
    return json.loads(line) if line.startswith("{") else line


def test_a_lone_worker_logs_whom_it_waits_for_and_gives_up(tmp_path):
    # A waiting line at once, then every FADAM_TRAIN_WAIT_LOG_EVERY seconds (30 by default).
    proc, workers = _lone_worker("--connect-timeout", 2.5, env={"FADAM_TRAIN_WAIT_LOG_EVERY": "1"})
    try:
        start = time.monotonic()
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    waited = time.monotonic() - start
    assert events(out) == [{"event": "waiting", "waited_s": t, "timeout_s": 2.5, "this": workers[1],
                            "for": [workers[0]]} for t in (0, 1, 2)]
    lines = [line for line in err.splitlines() if line.startswith("train.py:")]
    assert proc.returncode == 1
    assert lines == [f"train.py: the other workers ({workers[0]}) did not connect to this one"
                     f" ({workers[1]}) within --connect-timeout 2.5 s; start every worker listed in"
                     " TF_CONFIG's cluster"]
    print(f"lone worker, --connect-timeout 2.5: gave up after {waited:.1f} s (process start included)")


def test_sigterm_stops_a_lone_worker_at_once(tmp_path):
    proc, workers = _lone_worker()
    timer = threading.Timer(TIMEOUT, proc.kill)  # bounds the blocking reads below
    timer.start()
    try:
        waiting = _first_event(proc)  # it waits for worker 0, blocked in TensorFlow's C++
        assert waiting["event"] == "waiting" and waiting["for"] == [workers[0]], waiting
        [trainer] = [int(c) for c in pathlib.Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
        time.sleep(1)
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        took = time.monotonic() - start
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM
    lines = [line for line in err.splitlines() if line.startswith("train.py:")]
    assert lines == ["train.py: stopped by SIGTERM (the latest checkpoint stays the last complete one)"]
    assert not pathlib.Path(f"/proc/{trainer}").exists() or "State:\tZ" in pathlib.Path(
        f"/proc/{trainer}/status").read_text(), "the training process outlived the watchdog"
    print(f"SIGTERM to a lone worker: stopped after {took:.2f} s")
    assert took < 10


# --- what a careless user hits (issue 23) ------------------------------------------------------


@pytest.mark.parametrize("damage", ["saved_model.pb", "variables/variables.index"])
def test_a_truncated_export_is_one_line_naming_the_file(small, tmp_path, damage):
    copy = tmp_path / "copy"
    shutil.copytree(small["model"], copy)
    cut = copy / damage
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    done = subprocess.run([sys.executable, str(LAUNCHER), "--savedmodel", str(copy), "--data",
                           str(small["data"]), "--global-batch", str(small["batch"]), "--steps", "2"],
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    lines = [x for x in done.stderr.splitlines() if x.startswith("train.py:")]
    assert len(lines) == 1 and str(copy) in lines[0], done.stderr[-2000:]


def test_an_unknown_flag_is_reported_before_missing_ones():
    done = subprocess.run([sys.executable, str(LAUNCHER), "--bogus"], capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == "train.py: error: unrecognized arguments: --bogus"


def test_checkpoint_dir_none_writes_no_checkpoints(small, tmp_path):
    done = subprocess.run([sys.executable, str(LAUNCHER), "--savedmodel", str(small["model"]),
                           "--data", str(small["data"]), "--global-batch", str(small["batch"]),
                           "--steps", "2", "--checkpoint-dir", "none", "--checkpoint-every", "1"],
                          capture_output=True, text=True, timeout=TIMEOUT, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not [e for e in events(done.stdout) if e.get("event") == "checkpoint"]
    assert list(tmp_path.iterdir()) == []
