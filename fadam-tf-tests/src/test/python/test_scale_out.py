"""tpu-configs/train.py, the data-parallel launcher, on models exported from Java.

Every run here is a subprocess with a timeout, on 127.0.0.1 with ports chosen free at run time:
  - --strategy one reaches the state Java's own run reaches on the same batches (the demo's
    --tfrecord stream), within float32 round-off (Python's TensorFlow build is not Java's);
  - --strategy mirrored (two CPU replicas) traces each per-replica function once, and ends
    bit-identical to two MultiWorkerMirroredStrategy workers (half of every batch each); both
    equal one process on whole batches within float32 round-off;
  - a worker killed with kill -9 in the middle of the run: the restarted job resumes from the
    chief's last checkpoint and reaches exactly the state of the uninterrupted job;
  - workers started from different exports refuse to train;
  - each of four replicas takes its documented rows of every global batch;
  - --export writes a SavedModel that Java loads and continues: Java's own losses.
"""

import json
import os
import pathlib
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest

from conftest import (LAUNCHER, TRAINED, assert_javas_losses, events, export_batches, finish, free_ports,
                      start_workers, write_tfrecord)

sys.path.insert(0, str(LAUNCHER.parent))
import train  # noqa: E402  (the launcher's own helpers: variable names, fingerprints)

BATCH = 32  # rows per global batch: 16 per worker
STEPS = 8  # launcher steps in every run
TIMEOUT = 300  # seconds, for any one launcher process
# float32 round-off, relative to each tensor's largest magnitude, after STEPS steps.
ROUND_OFF = 1e-5


@pytest.fixture(scope="module")
def demo(java, tmp_path_factory):
    """The demo model exported by Java at step 1, the TFRecord stream of its next STEPS batches,
    and Java's own state after training on them (scripts/demo --save / --resume --tfrecord)."""
    d = tmp_path_factory.mktemp("scale-out")
    small = ["--batch", BATCH, "--embed", 16, "--hidden", 128]
    java("org.fadam.demo.Demo", "--optimizers", "fadam", "--steps", 1, "--eval-every", 1,
         *small, "--out", d / "out1", "--save", d / "start")
    java("org.fadam.demo.Demo", "--resume", d / "start", "--steps", STEPS, "--eval-every", STEPS,
         "--tfrecord", d / "train.tfrecord", "--out", d / "out2", "--save", d / "java-end")
    return d


def launcher_args(demo, out, *extra):
    return [sys.executable, str(LAUNCHER), "--savedmodel", str(demo / "start"),
            "--data", str(demo / "train.tfrecord"), "--global-batch", str(BATCH),
            "--steps", str(STEPS), "--log-every", "2", "--write-final", str(out), *map(str, extra)]


def run_launcher(args, env=None, cwd=None):
    done = subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT, cwd=cwd,
                          env={**os.environ, **(env or {})})
    if done.returncode != 0:
        pytest.fail(f"{' '.join(args[1:])} exited {done.returncode}:\n{done.stdout}\n{done.stderr[-4000:]}")
    return events(done.stdout)


def final(folder, task=0):
    return dict(np.load(pathlib.Path(folder) / f"task-{task}.npz"))


def bit_identical(a, b):
    return sorted(a) == sorted(b) and all(a[n].tobytes() == b[n].tobytes() for n in a)


def worst_relative(a, b):
    """max over float tensors of max|a − b| / max|a|."""
    assert sorted(a) == sorted(b)
    worst = 0.0
    for n in a:
        if a[n].dtype.kind == "f" and a[n].size:
            scale = max(float(np.abs(a[n]).max()), 1e-30)
            worst = max(worst, float(np.abs(a[n].astype(np.float64) - b[n]).max()) / scale)
        else:
            assert np.array_equal(a[n], b[n]), n
    return worst


@pytest.fixture(scope="module")
def one(demo, tmp_path_factory):
    out = tmp_path_factory.mktemp("one")
    ev = run_launcher(launcher_args(demo, out, "--strategy", "one", "--checkpoint-dir",
                                    out / "ckpt", "--checkpoint-every", 3, "--keep", 2))
    return out, ev


@pytest.fixture(scope="module")
def two_workers(demo, tmp_path_factory):
    """Two MWMS workers, uninterrupted, checkpointing every 2 steps."""
    out = tmp_path_factory.mktemp("two-workers")
    args = launcher_args(demo, out, "--checkpoint-dir", out / "ckpt", "--checkpoint-every", 2,
                         "--keep", 2)
    outs = finish(start_workers([args, args]))
    return out, [events(o) for o, _ in outs]


def children(pid):
    """The process ids of a process's children (Linux /proc): the launcher's training process."""
    try:
        return [int(c) for c in pathlib.Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def gone(pid):
    try:
        return pathlib.Path(f"/proc/{pid}/status").read_text().find("State:\tZ") >= 0
    except OSError:
        return True


ONE_TRACE = {"gradients": 1, "apply": 1, "step": 1}


def test_one_process_reaches_javas_state(demo, one):
    import tensorflow as tf

    out, ev = one
    java_end = {train.variable_name(v): v.numpy()
                for v in tf.saved_model.load(str(demo / "java-end")).variables}
    mine = final(out)
    worst = worst_relative(java_end, mine)
    print(f"launcher --strategy one vs Java's train, {STEPS} steps: worst relative {worst:.3g}")
    assert worst <= ROUND_OFF
    assert mine["train_step/train_step-iterations"] == 1 + STEPS
    logged = [e for e in ev if "loss" in e]
    assert [e["step"] for e in logged] == [2, 4, 6, 8] and all(e["examples_per_s"] > 0 for e in logged[1:])
    assert [e["model_step"] for e in logged] == [3, 5, 7, 9]
    assert [e["skipped_steps"] for e in logged] == [0, 0, 0, 0]
    assert ev[-1]["traces"] == ONE_TRACE
    # The chief's checkpoints: at 3, 6 and the end; the newest 2 kept.
    assert sorted(p.name for p in (out / "ckpt").glob("ckpt-*.index")) == ["ckpt-6.index", "ckpt-8.index"]


def test_mirrored_on_two_cpus_traces_once_and_equals_the_two_workers(demo, one, two_workers, tmp_path):
    ev = run_launcher(launcher_args(demo, tmp_path, "--strategy", "mirrored", "--cpu-replicas", 2))
    assert ev[0]["replicas"] == 2
    # One Python trace of each per-replica XLA function (and of the step) for the two replicas.
    assert ev[-1]["traces"] == ONE_TRACE
    mirrored = final(tmp_path)
    assert bit_identical(mirrored, final(two_workers[0], 0)), "mirrored differs from the two workers"
    worst = worst_relative(final(one[0]), mirrored)
    print(f"mirrored (2 CPU replicas) vs one process: worst relative {worst:.3g}; bit-identical to 2 MWMS workers")
    assert worst <= ROUND_OFF


def test_two_workers_hold_identical_variables_equal_to_one_process(one, two_workers):
    out, evs = two_workers
    w0, w1 = final(out, 0), final(out, 1)
    assert bit_identical(w0, w1), "the two workers' variables differ"
    assert evs[0][-1]["fingerprint"] == evs[1][-1]["fingerprint"]
    assert evs[0][-1]["traces"] == ONE_TRACE
    starts = [[e for e in ev if e.get("event") == "start"][0] for ev in evs]
    assert [(s["worker"], s["workers"], s["replicas"]) for s in starts] == [(0, 2, 2), (1, 2, 2)]
    worst = worst_relative(final(one[0]), w0)
    print(f"2 MWMS workers (half a batch each) vs one process on whole batches: worst relative {worst:.3g}")
    assert worst <= ROUND_OFF
    # Only the chief wrote checkpoints, the newest 2 kept.
    assert sorted(p.name for p in (out / "ckpt").glob("ckpt-*.index")) == ["ckpt-6.index", "ckpt-8.index"]
    assert [e["step"] for e in evs[0] if e.get("event") == "checkpoint"] == [2, 4, 6, 8]
    assert not [e for e in evs[1] if e.get("event") == "checkpoint"]


def test_a_worker_killed_mid_run_resumes_to_the_uninterrupted_state(demo, two_workers, tmp_path):
    args = launcher_args(demo, tmp_path, "--checkpoint-dir", tmp_path / "ckpt",
                         "--checkpoint-every", 2, "--keep", 2)
    # Worker 1 stops after step 5 (the chief has written ckpt-4), and its training process is
    # killed there with kill -9.
    procs = start_workers([args, args], envs=[{}, {"FADAM_TRAIN_PAUSE_AT_STEP": "5"}])
    timer = threading.Timer(TIMEOUT, lambda: [p.kill() for p in procs])
    timer.start()
    try:
        seen = []
        for line in procs[1].stdout:
            seen.append(line)
            if '"paused"' in line:
                break
        assert any('"paused"' in line for line in seen), "worker 1 never paused:\n" + "".join(seen)
        [trainer] = children(procs[1].pid)
        os.kill(trainer, signal.SIGKILL)
        procs[1].wait(timeout=30)
        assert procs[1].returncode == 128 + signal.SIGKILL  # the watchdog reports the kill
        # The chief now waits for worker 1 in the next all-reduce: the job is lost. Killing the
        # chief's watchdog with kill -9 takes its training process with it.
        chief = children(procs[0].pid)
        procs[0].kill()
        procs[0].wait()
        for _ in range(100):
            if all(gone(c) for c in chief):
                break
            threading.Event().wait(0.1)
        assert all(gone(c) for c in chief), "the chief's training process outlived its watchdog"
    finally:
        timer.cancel()
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
    assert not (tmp_path / "task-0.npz").exists(), "the job was killed before its end"
    assert (tmp_path / "ckpt" / "ckpt-4.index").exists()

    outs = finish(start_workers([args, args]))
    for out, _ in outs:
        resumed = [e for e in events(out) if e.get("event") == "resumed"]
        assert [e["step"] for e in resumed] == [4], out
    uninterrupted = final(two_workers[0])
    assert bit_identical(final(tmp_path, 0), uninterrupted), "worker 0 differs from the uninterrupted job"
    assert bit_identical(final(tmp_path, 1), uninterrupted), "worker 1 differs from the uninterrupted job"


def test_workers_from_different_exports_refuse_to_train(demo, tmp_path):
    a = launcher_args(demo, tmp_path)
    b = list(a)
    b[b.index(str(demo / "start"))] = str(demo / "java-end")
    outs = finish(start_workers([a, b]), expect=1)
    for _, err in outs:
        assert "the workers start from different exports" in err, err[-2000:]


@pytest.mark.parametrize("name", TRAINED)
def test_an_export_continues_in_java(exports, java, tmp_path, name):
    """The launcher trains half of Java's steps after the export (--checkpoint-dir none) and
    exports; Java loads that SavedModel and trains the other half with its train signature."""
    export = exports[name]
    steps = list(export.steps)
    half = len(steps) // 2
    rows = write_tfrecord(tmp_path / "data.tfrecord", export_batches(export, steps[:half]))
    target = tmp_path / "continued"
    target.mkdir()
    (target / "stale").write_text("an earlier export, replaced as a whole")
    ev = run_launcher([sys.executable, str(LAUNCHER), "--savedmodel", export.model_dir,
                       "--data", str(tmp_path / "data.tfrecord"), "--global-batch", str(rows // half),
                       "--steps", str(half), "--checkpoint-dir", "none", "--export", str(target)],
                      cwd=tmp_path)
    assert [e["step"] for e in ev if e.get("event") == "exported"] == [half]
    assert not (tmp_path / "none").exists(), "--checkpoint-dir none wrote checkpoints"
    assert not (target / "stale").exists() and (target / "saved_model.pb").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # nothing left beside
    java("org.fadam.tools.PythonInterop", "continue", "--model", name, "--from", target,
         "--first", steps[half], "--steps", len(steps) - half, "--out", tmp_path / "losses.npy")
    losses = np.load(tmp_path / "losses.npy")
    worst = float(np.max(np.abs(losses - export.losses[half:]) / np.abs(export.losses[half:])))
    print(f"{name}: Java continuing the launcher's export vs Java's own run, {len(steps) - half}"
          f" losses: worst relative {worst:.3g}")
    assert_javas_losses(losses, export.losses[half:])


ROWS_SCRIPT = """
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 4)
strategy = tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(4)])
sys.path.insert(0, sys.argv[1])
import train
specs = {"labels": tf.TensorSpec([None], tf.int32)}
data = strategy.distribute_datasets_from_function(
    train.dataset_fn([sys.argv[2]], specs, global_batch=16, replicas=4, skip=1))
print(json.dumps([[x.numpy().tolist() for x in strategy.experimental_local_results(b["labels"])]
                  for b in data]))
"""


def test_each_replica_takes_its_rows_of_every_global_batch(tmp_path):
    """The documented order: global batch k is rows 16k ... 16k+15, replica r of 4 takes rows
    16k + 4r ... 16k + 4r + 3 (here after skipping one batch, as a resumed job does)."""
    write_tfrecord(tmp_path / "rows.tfrecord", {"labels": np.arange(64)})
    done = subprocess.run([sys.executable, "-c", ROWS_SCRIPT, str(LAUNCHER.parent),
                           str(tmp_path / "rows.tfrecord")], capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(done.stdout.strip().splitlines()[-1])
    assert rows == [[list(range(16 * k + 4 * r, 16 * k + 4 * r + 4)) for r in range(4)]
                    for k in (1, 2, 3)]


def test_help_and_usage_errors(tmp_path):
    done = subprocess.run([sys.executable, str(LAUNCHER), "--help"], capture_output=True,
                          text=True, timeout=TIMEOUT)
    assert done.returncode == 0
    for flag in ("--strategy", "--savedmodel", "--data", "--global-batch", "--steps",
                 "--checkpoint-dir", "--checkpoint-every", "--keep", "--export", "--connect-timeout"):
        assert flag in done.stdout
    bad = subprocess.run([sys.executable, str(LAUNCHER), "--savedmodel", "x", "--data", "y",
                          "--global-batch", "0", "--steps", "1"], capture_output=True, text=True,
                         timeout=TIMEOUT)
    assert bad.returncode == 2 and "--global-batch must be >= 1; got 0" in bad.stderr
    remote = subprocess.run([sys.executable, str(LAUNCHER), "--savedmodel", "x", "--data", "y",
                             "--global-batch", "2", "--steps", "1", "--export", "gs://b/m"],
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert remote.returncode == 2 and "--export needs a local directory" in remote.stderr
