"""tpu-configs/train.py, the data-parallel launcher, on the demo model exported from Java.

Every run here is a subprocess with a timeout, on 127.0.0.1 with ports chosen free at run time:
  - --strategy one reaches the state Java's own run reaches on the same batches (the demo's
    --tfrecord stream), within float32 round-off (Python's TensorFlow build is not Java's);
  - --strategy mirrored (two CPU replicas) and two MultiWorkerMirroredStrategy workers, half of
    every batch each, hold bit-identical copies, equal to one process within float32 round-off;
  - a worker killed with kill -9 in the middle of the run: the restarted job resumes from the
    chief's last checkpoint and reaches exactly the state of the uninterrupted job;
  - workers started from different exports refuse to train.
"""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[4]
LAUNCHER = ROOT / "tpu-configs" / "train.py"
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


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def launcher_args(demo, out, *extra):
    return [sys.executable, str(LAUNCHER), "--savedmodel", str(demo / "start"),
            "--data", str(demo / "train.tfrecord"), "--global-batch", str(BATCH),
            "--steps", str(STEPS), "--log-every", "2", "--write-final", str(out), *map(str, extra)]


def events(stdout):
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def run_launcher(args, env=None):
    done = subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT,
                          env={**os.environ, **(env or {})})
    if done.returncode != 0:
        pytest.fail(f"{' '.join(args[1:])} exited {done.returncode}:\n{done.stdout}\n{done.stderr[-4000:]}")
    return events(done.stdout)


def start_workers(argss, envs=None):
    """Starts one MultiWorkerMirroredStrategy worker per argument list, on free loopback ports."""
    ports = free_ports(len(argss))
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for i, args in enumerate(argss):
        env = {**os.environ, **((envs or [{}] * len(argss))[i]),
               "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})}
        procs.append(subprocess.Popen(args + ["--strategy", "multiworker"], env=env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    return procs


def finish(procs, expect=0):
    """Waits for every worker (killing all of them past TIMEOUT); returns their stdout/stderr."""
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=TIMEOUT))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for i, (p, (out, err)) in enumerate(zip(procs, outs)):
        if expect is not None and p.returncode != expect:
            pytest.fail(f"worker {i} exited {p.returncode}, expected {expect}:\n{out}\n{err[-4000:]}")
    return outs


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
    # The chief's checkpoints: at 3, 6 and the end; the newest 2 kept.
    assert sorted(p.name for p in (out / "ckpt").glob("ckpt-*.index")) == ["ckpt-6.index", "ckpt-8.index"]


def test_mirrored_on_two_cpus_equals_one_process(demo, one, tmp_path):
    run_launcher(launcher_args(demo, tmp_path, "--strategy", "mirrored", "--cpu-replicas", 2))
    worst = worst_relative(final(one[0]), final(tmp_path))
    print(f"mirrored (2 CPU replicas) vs one process: worst relative {worst:.3g}")
    assert worst <= ROUND_OFF


def test_two_workers_hold_identical_variables_equal_to_one_process(one, two_workers):
    out, evs = two_workers
    w0, w1 = final(out, 0), final(out, 1)
    assert bit_identical(w0, w1), "the two workers' variables differ"
    assert evs[0][-1]["fingerprint"] == evs[1][-1]["fingerprint"]
    starts = [e[0] for e in evs]
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
    # Worker 1 stops after step 5 (the chief has written ckpt-4), and is killed there.
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
        os.kill(procs[1].pid, signal.SIGKILL)
        procs[1].wait()
        assert procs[1].returncode == -signal.SIGKILL
        # The chief now waits for worker 1 in the next all-reduce: the job is lost; kill it.
        procs[0].kill()
        procs[0].wait()
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
        assert "the workers start from different variables" in err, err[-2000:]


def test_help_and_usage_errors(tmp_path):
    done = subprocess.run([sys.executable, str(LAUNCHER), "--help"], capture_output=True,
                          text=True, timeout=TIMEOUT)
    assert done.returncode == 0
    for flag in ("--strategy", "--savedmodel", "--data", "--global-batch", "--steps",
                 "--checkpoint-dir", "--checkpoint-every", "--keep", "--connect-timeout"):
        assert flag in done.stdout
    assert "Exit status: 0 done; 1 an error" in done.stdout
    bad = subprocess.run([sys.executable, str(LAUNCHER), "--savedmodel", "x", "--data", "y",
                          "--global-batch", "0", "--steps", "1"], capture_output=True, text=True,
                         timeout=TIMEOUT)
    assert bad.returncode == 2 and "--global-batch must be >= 1; got 0" in bad.stderr


# --- what a careless user hits -----------------------------------------------------------------


def test_checkpoint_dir_none_writes_no_checkpoints(demo, tmp_path):
    args = launcher_args(demo, tmp_path / "final", "--checkpoint-dir", "none", "--checkpoint-every", 2)
    done = subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not [e for e in events(done.stdout) if e.get("event") == "checkpoint"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]


def test_a_truncated_export_is_one_line_naming_the_file(demo, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(demo / "start", copy)
    pb = copy / "saved_model.pb"
    pb.write_bytes(pb.read_bytes()[: pb.stat().st_size // 2])
    args = launcher_args(demo, tmp_path / "final")
    args[args.index("--savedmodel") + 1] = str(copy)
    done = subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    line = [x for x in done.stderr.splitlines() if x.startswith("train.py:")]
    assert line == [f"train.py: {pb} is truncated or corrupt (not a SavedModel: Error parsing message"
                    " with type 'tensorflow.SavedModel')"], done.stderr[-2000:]


def test_an_unknown_flag_is_reported_before_missing_ones():
    done = subprocess.run([sys.executable, str(LAUNCHER), "--bogus"], capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == "train.py: error: unrecognized arguments: --bogus"



def test_data_that_cannot_cover_the_steps_fails_before_training(demo, tmp_path):
    args = launcher_args(demo, tmp_path, "--strategy", "one")
    args[args.index("--steps") + 1] = str(STEPS + 1)
    done = subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 1
    assert done.stderr == (f"train.py: --data holds {STEPS * BATCH} rows: {STEPS} global batches of {BATCH},"
                           f" fewer than --steps {STEPS + 1}; give more data, fewer --steps or a smaller"
                           " --global-batch\n")
    assert events(done.stdout) == []  # not started
    # A file cut short is named, also before training.
    short = tmp_path / "short.tfrecord"
    short.write_bytes((demo / "train.tfrecord").read_bytes()[:-3])
    args = launcher_args(demo, tmp_path)
    args[args.index("--data") + 1] = str(short)
    done = subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 1
    assert done.stderr.startswith(f"train.py: {short} is truncated or corrupt: a TFRecord after record"
                                  f" {STEPS * BATCH - 1} ")
    assert done.stderr.count("\n") == 1


def lone_worker(demo, out, *extra):
    """Worker 0 of a two-worker cluster whose worker 1 never starts: (process, own address, peer)."""
    own, peer = (f"127.0.0.1:{p}" for p in free_ports(2))
    env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": {"worker": [own, peer]},
                                                  "task": {"type": "worker", "index": 0}})}
    proc = subprocess.Popen(launcher_args(demo, out, "--strategy", "multiworker", *extra), env=env,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return proc, own, peer


def test_a_lone_worker_says_it_waits_for_its_peer_and_gives_up_after_the_timeout(demo, tmp_path):
    proc, own, peer = lone_worker(demo, tmp_path, "--connect-timeout", 6)
    out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 1, err[-2000:]
    waiting = [e for e in events(out) if e.get("event") == "waiting"]
    assert waiting, out
    assert all(e["for"] == [peer] and e["not_answering"] == [peer] for e in waiting), waiting
    assert "Traceback" not in err
    gave_up = [line for line in err.splitlines() if line.startswith("train.py:")]
    assert gave_up == [f"train.py: gave up after 6 s waiting for the other workers of worker 0 ({own}):"
                       f" {peer} not answering; start every worker of TF_CONFIG's cluster, or raise"
                       " --connect-timeout"], err[-2000:]
    assert not train.answers(own), "the trainer outlived its watcher"


def test_a_lone_worker_stops_on_sigterm(demo, tmp_path):
    proc, own, peer = lone_worker(demo, tmp_path)  # the default timeout: 10 minutes
    try:
        deadline = time.monotonic() + TIMEOUT
        while not train.answers(own):  # its server is up: it waits for the peer in TensorFlow
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-2000:]
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert err.splitlines()[-1] == (f"train.py: stopped by SIGTERM while worker 0 ({own}) waited for the"
                                    f" other workers ({peer})")
    assert not train.answers(own), "the trainer outlived its watcher"
