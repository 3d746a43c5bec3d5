"""The Python test suite of fadam-tf: Python TensorFlow runs what the Java library exports.

Tests live in this folder as test_*.py files; `mvn -B verify` runs all of them (through
scripts/python-tests, in the integration-test phase of fadam-tf-tests, after the Java tests) in
.venv, the environment scripts/lib.sh creates from tpu-configs/requirements.txt. A new test file
needs nothing else; a new package goes into that requirements file (or into a requirements file
of its own that the script passes to fadam_venv).

Fixtures here:
  exports  the models the Java tool org.fadam.tools.PythonInterop exported for this session, by
           name ("demo", "bf16": trained ones with Java's batches, losses, predictions and final
           variable values; "float64", "print": models a TPU job cannot run; "error": a small
           model under the ERROR policy; "dropin": a VariableV2 model), exported once.
  python_runs  each trained export loaded in Python and trained on Java's batches, once.
  java     runs a main class of fadam-tf-tests with the project's classpath.
Helpers for the launcher's tests (tpu-configs/train.py): LAUNCHER, write_tfrecord, free_ports,
events, start_workers and finish (MultiWorkerMirroredStrategy workers on 127.0.0.1).
"""

import json
import os
import pathlib
import socket
import subprocess

import ml_dtypes
import numpy as np
import pytest
import tensorflow as tf

ROOT = pathlib.Path(__file__).resolve().parents[4]
LAUNCHER = ROOT / "tpu-configs" / "train.py"


def run_java(main, *args):
    """Runs `main` with the classpath scripts/python-tests exported; fails with its output."""
    classpath = os.environ.get("FADAM_CLASSPATH")
    if not classpath:
        pytest.fail("FADAM_CLASSPATH is not set: run the suite through scripts/python-tests or mvn -B verify")
    cmd = [os.environ.get("FADAM_JAVA", "java"), "-cp", classpath, main, *map(str, args)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"{' '.join(cmd[3:])} exited {done.returncode}:\n{done.stdout}\n{done.stderr[-4000:]}")
    return done.stdout


class Export:
    """One model Java exported: its SavedModel and, for trained ones, what Java saw after it."""

    def __init__(self, folder):
        self.folder = pathlib.Path(folder)
        self.model_dir = str(self.folder / "model")
        manifest = self.folder / "manifest.json"
        self.manifest = json.loads(manifest.read_text()) if manifest.exists() else None

    @property
    def first(self):
        """The index of the first batch after the export."""
        return self.manifest["before"]

    @property
    def steps(self):
        """The batch indices Java trained on after the export, in order."""
        return range(self.first, self.first + self.manifest["steps"])

    def batch(self, k):
        """The train signature's inputs of batch k, by name (tensors: signatures take no arrays)."""
        return {n: tf.constant(np.load(self.folder / f"batch{k}.{n}.npy")) for n in self.manifest["inputs"]}

    @property
    def losses(self):
        """Java's loss at each of `steps` (float32), the run uninterrupted by any export."""
        return np.load(self.folder / "losses.npy")

    def predict_inputs(self):
        return {n: tf.constant(np.load(self.folder / f"predict.{n}.npy")) for n in self.manifest["serve_inputs"]}

    @property
    def predictions(self):
        """Java's serve_default output on predict_inputs() at the exported state."""
        return np.load(self.folder / "predictions.npy")

    @property
    def variables(self):
        """[{name, dtype, shape, trainable, final}] for every variable of the checkpoint."""
        return self.manifest["variables"]

    def final_value(self, variable):
        """A variable's value after Java's last step (numpy's bfloat16 from ml_dtypes for bfloat16)."""
        value = np.load(self.folder / variable["final"])
        return value.view(ml_dtypes.bfloat16) if variable["dtype"] == "bfloat16" else value


TRAINED = ["demo", "bf16"]


def variable_name(v):
    """The Java name of a loaded variable ("w1", "train_step/w1-m"): its handle is "<name>/handle"."""
    return v.name[: -len("/handle:0")] if v.name.endswith("/handle:0") else v.name


def train(loaded, export, batches):
    """Calls the loaded model's train signature on each batch index; the losses (float32)."""
    signature = loaded.signatures["train"]
    return np.array([signature(**export.batch(k))["loss"].numpy() for k in batches], np.float32)


def assert_javas_losses(losses, java):
    """Java's losses: bit for bit where the two TensorFlow builds' XLA CPU code rounds alike,
    else within 1e-6 relative. Measured here: the bf16 model bit for bit; the demo model 5 of 6
    losses bit for bit, one 1 ulp (1.1e-7 relative) apart."""
    np.testing.assert_allclose(np.asarray(losses, np.float32), java, rtol=1e-6, atol=0)


def bits(x):
    """float32 values as their bit patterns, so that equality is bit for bit."""
    return np.asarray(x, np.float32).view(np.int32)


class Run:
    """Python's run of a trained export: loaded, then trained on every batch Java trained on."""

    def __init__(self, export):
        self.loaded = tf.saved_model.load(export.model_dir)
        self.at_export = {variable_name(v): v.numpy() for v in self.loaded.variables}
        self.losses = train(self.loaded, export, export.steps)
        self.final = {variable_name(v): v.numpy() for v in self.loaded.variables}


@pytest.fixture(scope="session")
def python_runs(exports):
    """Run per trained model, by name: what the tests compare with Java's and among themselves."""
    return {name: Run(exports[name]) for name in TRAINED}


@pytest.fixture(scope="session")
def exports(tmp_path_factory):
    out = tmp_path_factory.mktemp("java-exports")
    run_java("org.fadam.tools.PythonInterop", "export", "--out", out)
    return {p.name: Export(p) for p in out.iterdir()}


@pytest.fixture(scope="session")
def java():
    return run_java


def write_tfrecord(path, columns):
    """Writes {feature: array [rows, ...]} as one tf.train.Example per row (float features for
    float arrays, int64 ones for integer arrays), in row order: what the launcher reads."""
    rows = len(next(iter(columns.values())))
    with tf.io.TFRecordWriter(str(path)) as w:
        for r in range(rows):
            feature = {}
            for name, a in columns.items():
                v = np.asarray(a[r]).reshape(-1)
                feature[name] = (tf.train.Feature(float_list=tf.train.FloatList(value=v)) if v.dtype.kind == "f"
                                 else tf.train.Feature(int64_list=tf.train.Int64List(value=v)))
            w.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return rows


def export_batches(export, batches):
    """{input: rows of the given batches of a trained export, concatenated in order}."""
    return {n: np.concatenate([np.load(export.folder / f"batch{k}.{n}.npy") for k in batches])
            for n in export.manifest["inputs"]}


def free_ports(n):
    """n loopback ports free now (bound, read, released)."""
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def events(stdout):
    """The launcher's JSON log lines."""
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


WORKER_TIMEOUT = 300  # seconds, for any one launcher process


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
    """Waits for every worker (killing all of them past WORKER_TIMEOUT); returns their stdout/stderr."""
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=WORKER_TIMEOUT))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for i, (p, (out, err)) in enumerate(zip(procs, outs)):
        if expect is not None and p.returncode != expect:
            pytest.fail(f"worker {i} exited {p.returncode}, expected {expect}:\n{out}\n{err[-4000:]}")
    return outs
