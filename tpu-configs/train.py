#!/usr/bin/env python3
"""Data-parallel training of a fadam-tf SavedModel on TensorFlow's distribution runtime.

One program and one replica step for every scale. The SavedModel (exported from Java by
FisherTrainStep) carries the optimizer step as two pure functions of values:
`stateless_gradients` (the train inputs and var_<key> = every parameter's value -> loss and
grad_<key> per parameter) and `stateless_apply` (var_<key> = every variable's value and the
gradients -> every variable's new value, and `finite`). This job owns the variables: it reads the
export's values once and creates its own tf.Variables under strategy.scope() (distributed ones:
mirrored, or replicated on the TPU cores). One replica function, traced once, runs on every
replica: stateless_gradients on the replica's rows (XLA-compiled), the mean of the gradients over
all replicas (one all-reduce), stateless_apply (XLA-compiled), and the new values assigned to
the replica's copy of the variables. Every replica computes the same new values, so the copies
stay identical without any further communication.

  --strategy one          OneDeviceStrategy: one process, one device (the first GPU, else CPU).
  --strategy mirrored     one process, several local devices (GPUs; or --cpu-replicas N CPUs).
  --strategy multiworker  MultiWorkerMirroredStrategy: one process per host, the cluster in the
                          TF_CONFIG environment variable, collective all-reduce over gRPC.
  --strategy tpu          TPUStrategy on a Cloud TPU (--tpu NAME, or local on a TPU VM).

Data: --data TFRecord files of tf.train.Example, one example per row, features named after the
train inputs (int64 features for integer inputs, float features for float ones), read in order
(tf.data, static shapes). Global batch k is examples k*G ... k*G+G-1; replica r of R takes rows
k*G + r*G/R ... of it (each input pipeline, one per worker or TPU host, parses only its own rows),
so the average of the replicas' mean gradients is the gradient of the whole batch. Before
training, the launcher checks the data's first record against the train inputs and counts the
rows (up to what --steps needs): too few rows fail at once. A later record that does not match
fails its step, naming its global batch.

Checkpoints: the chief alone writes them (tf.train.CheckpointManager over the launcher's variables
and its step, the last --keep kept) into --checkpoint-dir every --checkpoint-every steps and after
the last step; every worker resumes from the latest one by itself on start (the directory must be
shared by all workers, as TensorFlow requires: NFS, GCS). A checkpoint of another model is
refused. --export DIR writes, after the last step, the original SavedModel with the trained
values (written beside DIR, then renamed): Java's FisherTrainStep.loadSavedModel continues it.

Non-finite gradients follow the export's policy, which stateless_apply carries: under SKIP the
step changes nothing and skipped_steps grows (the log lines show it); under ERROR the job stops
with Java's message naming the first parameter whose gradient's sum of squares is not finite,
exit status 1, before any checkpoint of that step.

The job runs in a child process watched by this one: while the workers of a multiworker cluster
find each other (TensorFlow blocks in C++ there, deaf to signals), it logs every 30 s which peers
it waits for, gives up after --connect-timeout seconds, and a SIGTERM or SIGINT stops the job at
any time (exit status 143 or 130) without touching the last checkpoint.

Prints one JSON log line per --log-every steps (step, model_step, loss: null when not finite,
skipped_steps, examples/s) and, on a terminal, a progress line. Exit status 0 on success, 1 on
an error, 2 on a usage error.
"""

import argparse
import hashlib
import json
import math
import os
import re
import select
import signal
import subprocess
import sys
import time

# Written before TensorFlow is imported (its C++ logging reads it at load time).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

STATELESS_GRADIENTS = "stateless_gradients"
STATELESS_APPLY = "stateless_apply"
VALUE_PREFIX = "var_"
GRADIENT_PREFIX = "grad_"
LOSS = "loss"
FINITE = "finite"
APPLIED = "applied"
# The step telemetry every train/apply signature returns (docs/telemetry.md), and the TensorBoard
# tags --tensorboard writes: loss, then these, as Java's org.fadam.Summaries writes them.
TELEMETRY = ("grad_rms", "clipped_natural", "clipped_decay", "eps_floor", "skipped", "learning_rate")
STRATEGIES = ("one", "mirrored", "multiworker", "tpu")
# The process that trains: set (to the write end of the watchdog's pipe) in the child's environment.
CHILD_ENV = "FADAM_TRAIN_CHILD_FD"
# Seconds between "waiting" log lines while the cluster assembles (the variable: tests only).
WAIT_LOG_EVERY = float(os.environ.get("FADAM_TRAIN_WAIT_LOG_EVERY", "30"))
# Calls of each traced Python body, by name: the replica step must trace once per shape.
TRACES = {}


class UsageError(Exception):
    """A command-line mistake: exit status 2."""


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="train.py",
        description=__doc__.split("\n\n")[0] + " See the top of this file and"
        " docs/scaling-out.md for the details.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--strategy", choices=STRATEGIES, default="one",
                   help="how to distribute (default: one)")
    p.add_argument("--savedmodel", required=True,
                   help="the SavedModel directory exported from Java")
    p.add_argument("--data", required=True, nargs="+",
                   help="TFRecord files (or glob patterns) of tf.train.Example, read in order")
    p.add_argument("--global-batch", type=int, required=True,
                   help="rows per step over all replicas (a multiple of the number of replicas)")
    p.add_argument("--steps", type=int, required=True,
                   help="steps to reach, counting those of a resumed checkpoint")
    p.add_argument("--checkpoint-dir", default="none",
                   help="where the chief writes checkpoints and every worker resumes from (shared"
                   " by all workers); none (the default): no checkpoints")
    p.add_argument("--checkpoint-every", type=int, default=100,
                   help="steps between checkpoints (default 100; one is also written at the end)")
    p.add_argument("--keep", type=int, default=3, help="checkpoints kept (default 3)")
    p.add_argument("--export", metavar="DIR",
                   help="after the last step, write the SavedModel with the trained values to the"
                   " local directory DIR (replacing it; written beside, then renamed), for Java")
    p.add_argument("--log-every", type=int, default=10, help="steps between log lines (default 10)")
    p.add_argument("--tensorboard", metavar="DIR",
                   help="the chief writes TensorBoard scalars of every step into DIR (loss and the"
                        " step telemetry: " + ", ".join(TELEMETRY) + "; docs/telemetry.md)")
    p.add_argument("--connect-timeout", type=float, default=600, metavar="SECONDS",
                   help="give up when the cluster (multiworker: every TF_CONFIG worker; tpu: the"
                   " TPU system) is not up after this long (default 600)")
    p.add_argument("--cpu-replicas", type=int, default=0,
                   help="mirrored only: split the CPU into N logical devices, one replica each"
                   " (to try data parallelism without GPUs)")
    p.add_argument("--tpu", default="", help="tpu only: the TPU name or address (default: local)")
    p.add_argument("--write-final", metavar="DIR",
                   help="after the last step, write every variable to DIR/task-<i>.npz (checks)")
    p.add_argument("--progress", action="store_true",
                   help="show the progress line even when stderr is not a terminal")
    args = parse_reporting_unknown_first(p, argv)
    for name in ("global_batch", "steps", "checkpoint_every", "keep", "log_every"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1; got {getattr(args, name)}")
    if not args.connect_timeout > 0:
        p.error(f"--connect-timeout must be > 0; got {args.connect_timeout}")
    if args.cpu_replicas and args.strategy != "mirrored":
        p.error("--cpu-replicas is for --strategy mirrored")
    if args.checkpoint_dir == "none":
        args.checkpoint_dir = None
    if args.export and "://" in args.export:
        p.error(f"--export needs a local directory (it is renamed into place); got {args.export}")
    return args


def parse_reporting_unknown_first(parser, argv):
    """parser.parse_args, but an unknown flag is reported even when a required one is missing
    (argparse would report only the missing one)."""
    required = [a for a in parser._actions if a.required]
    for a in required:
        a.required = False
    try:
        _, unknown = parser.parse_known_args(argv)
    finally:
        for a in required:
            a.required = True
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return parser.parse_args(argv)


def log(msg):
    print(json.dumps(msg) if isinstance(msg, dict) else msg, flush=True)


# -------------------------------------------------------------------------------------------------
# The watchdog: this process starts the job as its child and watches it. TensorFlow's
# multi-worker setup blocks in C++ holding Python's lock until every worker has joined, and its
# coordination service catches SIGTERM: a thread of the job itself could neither log nor stop it.


def peers():
    """(this worker's address, the other workers' addresses) from TF_CONFIG; ("", []) without it."""
    try:
        config = json.loads(os.environ.get("TF_CONFIG", "{}"))
        cluster, task = config.get("cluster", {}), config.get("task", {})
        addresses = [a for job in ("chief", "worker") for a in cluster.get(job, [])]
        own = cluster[task["type"]][task["index"]]
    except (ValueError, KeyError, IndexError, TypeError):
        return "", []
    return own, [a for a in addresses if a != own]


def _die_with_parent():
    """In the child, before exec: SIGKILL when the watchdog dies (Linux prctl PR_SET_PDEATHSIG),
    so that a watchdog killed with kill -9 takes its job with it. SIGINT is the watchdog's."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def supervise(args, argv):
    """Runs the job in a child process; returns the exit status."""
    read_end, write_end = os.pipe()
    child = subprocess.Popen([sys.executable, os.path.abspath(__file__), *argv],
                             env={**os.environ, CHILD_ENV: str(write_end)}, pass_fds=(write_end,),
                             preexec_fn=_die_with_parent)
    os.close(write_end)
    stop = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.append(signum))
    own, others = peers()
    waiting_since = None  # when the child started to wait for the cluster, until it is up
    next_log = 0.0
    try:
        while True:
            if stop:
                child.kill()
                child.wait()
                name = signal.Signals(stop[0]).name
                print(f"train.py: stopped by {name} (the latest checkpoint stays the last complete"
                      " one)", file=sys.stderr, flush=True)
                return 128 + stop[0]
            try:
                ready, _, _ = select.select([read_end], [], [], 0.2)
            except InterruptedError:
                continue
            if ready:
                note = os.read(read_end, 1)
                if note == b"w":
                    waiting_since = next_log = time.monotonic()
                elif note == b"c":
                    waiting_since = None
            status = child.poll()
            if status is not None:
                if status < 0:
                    print(f"train.py: the training process was killed by signal {-status}",
                          file=sys.stderr, flush=True)
                    return 128 - status
                return status
            if waiting_since is not None:
                now = time.monotonic()
                if now - waiting_since >= args.connect_timeout:
                    child.kill()
                    child.wait()
                    if args.strategy == "multiworker":
                        what = (f"the other workers ({', '.join(others) or 'none listed'}) did not"
                                f" connect to this one ({own})")
                        fix = "start every worker listed in TF_CONFIG's cluster"
                    else:
                        what = f"the TPU system ({args.tpu or 'local'}) did not come up"
                        fix = "check that the TPU is READY and --tpu names it"
                    print(f"train.py: {what} within --connect-timeout {args.connect_timeout:g} s;"
                          f" {fix}", file=sys.stderr, flush=True)
                    return 1
                if now >= next_log:
                    event = {"event": "waiting", "waited_s": round(now - waiting_since),
                             "timeout_s": args.connect_timeout}
                    if args.strategy == "multiworker":
                        event.update({"this": own, "for": others})
                    else:
                        event["for"] = f"TPU {args.tpu or 'local'}"
                    log(event)
                    next_log += WAIT_LOG_EVERY
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        os.close(read_end)


def notify(note):
    """Tells the watchdog b"w" (the cluster is being joined) or b"c" (joined)."""
    fd = os.environ.get(CHILD_ENV)
    if fd:
        try:
            os.write(int(fd), note)
        except OSError:
            pass


# -------------------------------------------------------------------------------------------------
# The strategy comes first: MultiWorkerMirroredStrategy must be created before any other TF work.


def make_strategy(args):
    """The tf.distribute strategy: the first TensorFlow work done."""
    import tensorflow as tf

    if args.strategy == "one":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if args.strategy == "mirrored":
        if args.cpu_replicas:
            cpu = tf.config.list_physical_devices("CPU")[0]
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * args.cpu_replicas)
            devices = [f"/cpu:{i}" for i in range(args.cpu_replicas)]
            return tf.distribute.MirroredStrategy(
                devices, cross_device_ops=tf.distribute.ReductionToOneDevice())
        return tf.distribute.MirroredStrategy()
    if args.strategy == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise UsageError("--strategy multiworker needs the TF_CONFIG environment variable"
                             " (see docs/scaling-out.md)")
        notify(b"w")
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        notify(b"c")
        return strategy
    notify(b"w")
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=args.tpu)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    notify(b"c")
    return tf.distribute.TPUStrategy(resolver)


def task_info(strategy):
    """(this worker's index, number of workers, whether it is the chief). A TPUStrategy job is one
    process (the client) driving every host of the slice: one worker, the chief."""
    import tensorflow as tf

    resolver = getattr(strategy, "cluster_resolver", None)
    if isinstance(strategy, tf.distribute.TPUStrategy) or resolver is None \
            or not resolver.cluster_spec().as_dict() or resolver.task_type is None:
        return 0, 1, True
    spec = resolver.cluster_spec().as_dict()
    kind, index = resolver.task_type, resolver.task_id
    kinds = [k for k in ("chief", "worker") if k in spec]
    position = 0
    for k in kinds:
        if k == kind:
            position += index
            break
        position += len(spec[k])
    workers = sum(len(spec[k]) for k in kinds)
    chief = kind == "chief" or ("chief" not in spec and kind == "worker" and index == 0)
    return position, workers, chief


# -------------------------------------------------------------------------------------------------
# The model: the export's variables (read once) and its two stateless signatures as pure functions.


def variable_name(variable):
    """A loaded variable's name as Java named it: 'w1', 'train_step/w1-m', ..."""
    return re.sub(r"/handle$", "", re.sub(r":\d+$", "", variable.name))


def value_key(name):
    """The signatures' key of a variable: its Java name with every character outside
    [A-Za-z0-9_] replaced by '_' ('train_step/w1-m' -> 'train_step_w1_m')."""
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


class ExportError(Exception):
    """A SavedModel that cannot be read: one line naming the file and the cause."""


def load_savedmodel(tf, path):
    """tf.saved_model.load(path), with an unreadable, truncated or corrupt export as an ExportError
    (one line naming the file and the cause) instead of TensorFlow's traceback. A copy of
    tpu_check.py's: each file may be copied alone onto a TPU VM."""
    pb = os.path.join(path, "saved_model.pb")
    try:
        with open(pb, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ExportError(f"cannot read {pb}: {e.strerror or e}") from None
    from tensorflow.core.protobuf import saved_model_pb2

    try:
        saved_model_pb2.SavedModel.FromString(data)
    except Exception as e:  # protobuf's DecodeError (its module differs between implementations)
        raise ExportError(f"{pb} is truncated or corrupt (not a SavedModel: {_first_line(e)})") from None
    try:
        return tf.saved_model.load(path)
    except tf.errors.OpError as e:  # restoring the variables: a short read, a bad checksum, ...
        raise ExportError(f"{_damaged_variables_file(path, e)} is truncated or corrupt "
                          f"(TensorFlow: {op_error_reason(e)})") from None
    except Exception as e:
        raise ExportError(f"cannot load the SavedModel at {path}: {_first_line(e)}") from None


def op_error_reason(e):
    """The cause in a TensorFlow op error's text: the last paragraph's first line (the paragraphs
    before it say where the op was defined)."""
    text = (e.message if hasattr(e, "message") else str(e)).strip()
    last = text.split("\n\n")[-1].strip()
    return last.splitlines()[0] if last else type(e).__name__


def _damaged_variables_file(path, e):
    """The checkpoint file a restore error points at: the index when it is not a table, else the
    data (its one shard, or the shards' pattern)."""
    variables = os.path.join(path, "variables")
    if "sstable" in op_error_reason(e):
        return os.path.join(variables, "variables.index")
    shards = sorted(f for f in os.listdir(variables) if f.startswith("variables.data-")) \
        if os.path.isdir(variables) else []
    return os.path.join(variables, shards[0] if len(shards) == 1 else "variables.data-*")


class Model:
    """The export: its variables by Java name (in the export's order), their values, and
    stateless_gradients / stateless_apply as functions of tensors without any captured variable."""

    def __init__(self, path):
        import tensorflow as tf
        from tensorflow.core.protobuf import saved_model_pb2

        self.path = path
        pb = os.path.join(path, "saved_model.pb")
        if not tf.io.gfile.exists(pb):
            raise ValueError(f"--savedmodel {path}: no SavedModel there (no saved_model.pb)")
        try:
            saved = saved_model_pb2.SavedModel.FromString(tf.io.gfile.GFile(pb, "rb").read())
        except Exception as e:  # protobuf's DecodeError (its module differs between implementations)
            raise ValueError(f"{pb} is truncated or corrupt (not a SavedModel: {_first_line(e)})") from None
        meta = saved.meta_graphs[0]
        missing = [s for s in (STATELESS_GRADIENTS, STATELESS_APPLY) if s not in meta.signature_def]
        if missing:
            raise ValueError(
                f"--savedmodel {path} has no {' or '.join(missing)} signature (it has"
                f" {', '.join(sorted(meta.signature_def)) or 'none'}): it was exported by an older"
                " fadam-tf; re-export it with this version's FisherTrainStep.export")
        try:
            loaded = load_savedmodel(tf, path)
        except ExportError as e:
            raise ValueError(str(e)) from None
        if not loaded.variables:
            raise ValueError(f"--savedmodel {path}: Python sees no variables in the SavedModel (no"
                             " 'variables' collection): re-export it with this version of fadam-tf")
        self.names = [variable_name(v) for v in loaded.variables]
        self.values = {variable_name(v): v.numpy() for v in loaded.variables}  # until released
        self.shapes = {n: (list(v.shape), str(v.dtype)) for n, v in self.values.items()}
        self.trainable = {variable_name(v): bool(v.trainable) for v in loaded.variables}
        self.parameters = [n for n in self.names if self.trainable[n]]
        self.keys = {n: value_key(n) for n in self.names}
        if len(set(self.keys.values())) != len(self.keys):
            raise ValueError(f"--savedmodel {path}: two variables share a signature key")

        grads_def = meta.signature_def[STATELESS_GRADIENTS]
        apply_def = meta.signature_def[STATELESS_APPLY]
        self.input_specs = {}
        for k, info in grads_def.inputs.items():
            if not k.startswith(VALUE_PREFIX):
                dims = [d.size if d.size >= 0 else None for d in info.tensor_shape.dim]
                self.input_specs[k] = tf.TensorSpec(dims, tf.as_dtype(info.dtype), name=k)
        values = {VALUE_PREFIX + self.keys[n] for n in self.names}
        params = {VALUE_PREFIX + self.keys[n] for n in self.parameters}
        grads = {GRADIENT_PREFIX + self.keys[n] for n in self.parameters}
        want = {
            "stateless_gradients inputs": (
                {k for k in grads_def.inputs if k.startswith(VALUE_PREFIX)}, params),
            "stateless_gradients outputs": (set(grads_def.outputs), {LOSS} | grads),
            "stateless_apply inputs": (set(apply_def.inputs), values | grads),
            "stateless_apply outputs": (set(apply_def.outputs),
                                        {FINITE, APPLIED, *TELEMETRY} | values),
        }
        for what, (have, need) in want.items():
            if have != need:
                raise ValueError(f"--savedmodel {path}: the {what} do not match its variables"
                                 f" (missing {sorted(need - have)}, extra {sorted(have - need)})")
        self.gradients = _pure_function(loaded.signatures[STATELESS_GRADIENTS], grads_def)
        self.apply = _pure_function(loaded.signatures[STATELESS_APPLY], apply_def)
        self.iterations = next((n for n in self.names if n.endswith("-iterations")), None)
        self.skipped = next((n for n in self.names if n.endswith("-skipped_steps")), None)

    def fingerprint(self):
        return fingerprint(self.values)


def _pure_function(signature, signature_def):
    """The signature as a function of its inputs alone, sorted by key -> {output key: tensor}.

    A TF1 SavedModel's signature function captures every variable handle of the graph, used or
    not; a function that a replica on another device (or a TPU core) calls must capture none. The
    signature's own graph (placeholders and one call of the XLA-marked step function) is imported
    again without the captured handles and pruned to its inputs and outputs."""
    import tensorflow as tf

    graph_def = signature.graph.as_graph_def()
    inputs = {k: v.name for k, v in signature_def.inputs.items()}
    outputs = {k: v.name for k, v in signature_def.outputs.items()}
    fed = {name.split(":")[0] for name in inputs.values()}
    nodes = [n for n in graph_def.node if n.op != "Placeholder" or n.name in fed]
    del graph_def.node[:]
    graph_def.node.extend(nodes)
    wrapped = tf.compat.v1.wrap_function(
        lambda: tf.graph_util.import_graph_def(graph_def, name=""), [])
    g = wrapped.graph
    keys = sorted(inputs)
    pruned = wrapped.prune([g.get_tensor_by_name(inputs[k]) for k in keys],
                           {k: g.get_tensor_by_name(v) for k, v in outputs.items()})
    if pruned.captured_inputs:
        raise ValueError(f"a stateless signature captures {len(pruned.captured_inputs)} tensors")

    def call(feeds):
        return pruned(*[feeds[k] for k in keys])

    return call


def fingerprint(values):
    """SHA-256 over every variable's name and bytes: equal iff the states are bit-identical."""
    h = hashlib.sha256()
    for name in sorted(values):
        h.update(name.encode())
        h.update(values[name].tobytes())
    return h.digest()


# -------------------------------------------------------------------------------------------------
# Data: TFRecord files of tf.train.Example, global batches, each input pipeline its own rows.


def data_files(patterns):
    """The files of --data, each pattern's matches sorted (tf.io.gfile: local paths and gs://)."""
    import tensorflow as tf

    files = []
    for p in patterns:
        matched = sorted(tf.io.gfile.glob(p))
        if not matched:
            raise ValueError(f"--data {p}: no such file")
        files.extend(matched)
    return files


def _describe(spec):
    return f"{spec.dtype.name} [batch{''.join(f', {d}' for d in spec.shape[1:])}]"


def check_records(files, specs):
    """Checks the first record of the data against the train inputs: each feature present, of
    the right kind (int64 for integer inputs, float for floating ones) and length. (A later record
    that does not match fails its step, naming its global batch.)"""
    import numpy as np
    import tensorflow as tf

    wanted = ", ".join(f"{k} {_describe(s)}" for k, s in sorted(specs.items()))
    for f in files:  # up to the first that holds a record
        try:
            first = next(iter(tf.data.TFRecordDataset([f]).take(1)), None)
        except tf.errors.OpError as e:
            raise ValueError(f"--data {f}: not a TFRecord file ({_first_line(e)})") from None
        if first is None:
            continue
        try:
            example = tf.train.Example.FromString(first.numpy())
        except Exception:  # noqa: BLE001 (protobuf's DecodeError)
            raise ValueError(f"--data {f}: its first record is not a tf.train.Example") from None
        features = example.features.feature
        for name, spec in sorted(specs.items()):
            kind = "float_list" if spec.dtype.is_floating else "int64_list"
            size = int(np.prod(spec.shape[1:], dtype=np.int64))
            if name not in features:
                has = ", ".join(sorted(features)) or "none"
                raise ValueError(f"--data {f}: the first record has no feature `{name}` (the train"
                                 f" inputs: {wanted}; it has {has})")
            got = features[name].WhichOneof("kind")
            count = len(getattr(features[name], got).value) if got else 0
            if got != kind or count != size:
                raise ValueError(
                    f"--data {f}: the first record's feature `{name}` holds {count}"
                    f" {(got or 'no').replace('_list', '')} values; the train input {name} is"
                    f" {_describe(spec)}: {size} {kind.replace('_list', '')} values per row")
        return


def count_rows(files, needed):
    """Rows in the files, counted up to `needed` (the framing is read, no record is parsed)."""
    import tensorflow as tf

    ds = tf.data.TFRecordDataset(files, num_parallel_reads=None).take(needed)
    return int(ds.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))


def dataset_fn(files, specs, global_batch, replicas, skip):
    """For distribute_datasets_from_function: input pipeline p of P reads every global batch from
    batch `skip` on, parses only its rows p*G/P ... (p+1)*G/P - 1 and yields them as consecutive
    per-replica batches of G/R rows, one for each of its local replicas in turn."""
    import tensorflow as tf

    per_replica = global_batch // replicas
    features = {}
    for name, spec in specs.items():
        kind = tf.float32 if spec.dtype.is_floating else tf.int64
        features[name] = tf.io.FixedLenFeature(spec.shape[1:], kind)

    def make(context):
        pipelines, pipeline = context.num_input_pipelines, context.input_pipeline_id
        share = global_batch // pipelines
        local = share // per_replica

        def parse(rows):
            mine = rows[pipeline * share:(pipeline + 1) * share]
            parsed = tf.io.parse_example(mine, features)
            return {n: tf.reshape(tf.cast(parsed[n], specs[n].dtype),
                                  [local, per_replica, *specs[n].shape[1:]]) for n in specs}

        ds = tf.data.TFRecordDataset(files).batch(global_batch, drop_remainder=True).skip(skip)
        return ds.map(parse).unbatch().prefetch(2 * local)

    return make


# -------------------------------------------------------------------------------------------------
# Checkpoints: the launcher's variables by Java name, and its step.


def checkpoint_variables(path):
    """{Java name: (shape, dtype)} of the `variables` a launcher checkpoint holds, or None when it
    holds none (not a checkpoint of this launcher)."""
    import tensorflow as tf
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    reader = tf.train.load_checkpoint(path)
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    root = {c.local_name: c.node_id for c in graph.nodes[0].children}
    if "variables" not in root:
        return None
    shapes, dtypes = reader.get_variable_to_shape_map(), reader.get_variable_to_dtype_map()
    out = {}
    for child in graph.nodes[root["variables"]].children:
        for attribute in graph.nodes[child.node_id].attributes:
            if attribute.name == "VARIABLE_VALUE":
                key = attribute.checkpoint_key
                out[child.local_name] = (list(shapes[key]), dtypes[key].name)
    return out


def check_checkpoint(path, model):
    """Refuses a checkpoint whose variables are not the model's (names, shapes, dtypes)."""
    held = checkpoint_variables(path)
    if held is None:
        raise ValueError(f"checkpoint {path} is not one of train.py's (it holds no `variables`)")
    ours = model.shapes
    problems = []
    lacks = sorted(set(ours) - set(held))
    extra = sorted(set(held) - set(ours))
    if lacks:
        problems.append(f"it lacks {_few(lacks)}")
    if extra:
        problems.append(f"it has {_few(extra)}, which the model does not")
    for n in sorted(set(ours) & set(held)):
        if held[n][0] != ours[n][0] or held[n][1] != ours[n][1]:
            (there, kind), (here, ours_kind) = held[n], ours[n]
            problems.append(f"`{n}` is {kind} {there} there, {ours_kind} {here} here")
            break
    if problems:
        raise ValueError(f"checkpoint {path} is not of this model (--savedmodel {model.path}): "
                         + "; ".join(problems))


def _few(names, shown=3):
    text = ", ".join(f"`{n}`" for n in names[:shown])
    return text + (f" and {len(names) - shown} more" if len(names) > shown else "")


# -------------------------------------------------------------------------------------------------
# The export back to Java: the original SavedModel with the trained values.


def write_export(model, values, target):
    """Copies the export to a hidden folder beside `target`, rewrites its variables/variables.*
    with `values` keyed by the Java names (the checkpoint keys Java's saver uses), then renames it
    into place (a previous `target` is renamed aside first and deleted last): a crash leaves
    either the old folder or the new one, never a partial export."""
    import shutil

    import tensorflow as tf

    target = os.path.abspath(target)
    parent, base = os.path.dirname(target), os.path.basename(target)
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{base}.tmp-{os.getpid()}")
    old = os.path.join(parent, f".{base}.old-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(model.path, tmp)
    prefix = os.path.join(tmp, "variables", "variables")
    reader = tf.train.load_checkpoint(os.path.join(model.path, "variables", "variables"))
    keys = sorted(reader.get_variable_to_shape_map())
    missing = sorted(set(values) - set(keys))
    if missing:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ValueError(f"--export: the SavedModel's checkpoint has no key for {_few(missing)}")
    for f in tf.io.gfile.glob(prefix + ".*"):
        tf.io.gfile.remove(f)
    tensors = [tf.constant(values[k] if k in values else reader.get_tensor(k)) for k in keys]
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=keys, shape_and_slices=[""] * len(keys),
                      tensors=tensors)
    for f in [os.path.join(dp, n) for dp, _, names in os.walk(tmp) for n in names]:
        with open(f, "rb") as handle:
            os.fsync(handle.fileno())
    if os.path.exists(target):
        os.rename(target, old)
    os.rename(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


# -------------------------------------------------------------------------------------------------


class Progress:
    """A progress line on a terminal (carriage return, no newline), nothing elsewhere."""

    def __init__(self, on):
        self.on = on

    def update(self, step, steps, loss, rate):
        if self.on:
            speed = "compiling" if rate is None else f"{rate:,.0f} examples/s"
            sys.stderr.write(f"\rstep {step}/{steps}  loss {loss:.4f}  {speed} ")
            sys.stderr.flush()

    def clear(self):
        """Blanks the line, so that a log line printed next starts at its left edge."""
        if self.on:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()

    def end(self):
        if self.on:
            sys.stderr.write("\n")
            sys.stderr.flush()


def non_finite_message(name):
    """Java's message (org.fadam.Updater.nonFiniteMessage and FisherTrainStep.train's ending)."""
    return (f"non-finite gradient (NaN, Inf, or a sum of squares that overflows) for variable"
            f" `{name}`; no variable was changed")


def _first_line(error):
    """The first line of an error's message, without TensorFlow's {{function_node ...}} prefix."""
    text = getattr(error, "message", None) or str(error)
    text = re.sub(r"\{\{[^}]*\}\}\s*", "", text)
    lines = [" ".join(line.split()) for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def _traced(name):
    TRACES[name] = TRACES.get(name, 0) + 1


def train(args):
    strategy = make_strategy(args)  # before any other TF work
    import numpy as np
    import tensorflow as tf

    worker, workers, chief = task_info(strategy)
    board = None
    if args.tensorboard and chief:  # the chief alone writes the scalars (docs/telemetry.md)
        board = open_tensorboard(tf, args.tensorboard)  # checked before anything else
    replicas = strategy.num_replicas_in_sync
    if args.global_batch % replicas:
        raise UsageError(f"--global-batch {args.global_batch} is not a multiple of the"
                         f" {replicas} replicas")
    per_replica = args.global_batch // replicas
    model = Model(args.savedmodel)
    specs = model.input_specs
    files = data_files(args.data)
    check_records(files, specs)
    rows = count_rows(files, args.steps * args.global_batch)
    if rows < args.steps * args.global_batch:
        raise ValueError(f"--data holds {rows} rows, {rows // args.global_batch} global batches of"
                         f" {args.global_batch}; --steps {args.steps} needs"
                         f" {args.steps * args.global_batch} rows")
    if workers > 1:
        check_same(strategy, model.fingerprint(), "the workers start from different exports",
                   "give every worker the same --savedmodel")

    # The job's variables: created under the strategy's scope from the export's values, so they
    # are distributed ones (a copy per replica device, kept equal by equal updates).
    with strategy.scope():
        variables = {n: tf.Variable(model.values[n], trainable=model.trainable[n],
                                    name=model.keys[n]) for n in model.names}
        step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="launcher_step")
    model.values = None  # the variables hold them now

    manager = None
    start = 0
    if args.checkpoint_dir:
        checkpoint = tf.train.Checkpoint(step=step_var, variables=variables)
        manager = tf.train.CheckpointManager(checkpoint, args.checkpoint_dir, max_to_keep=args.keep)
        latest = manager.latest_checkpoint
        if latest:
            check_checkpoint(latest, model)
            try:
                checkpoint.restore(latest).assert_consumed()
            except (AssertionError, ValueError, tf.errors.OpError) as e:
                raise ValueError(f"checkpoint {latest} does not restore into this model:"
                                 f" {_first_line(e)}") from None
            start = int(step_var.numpy())
            log({"event": "resumed", "path": latest, "step": start})
            if workers > 1:
                check_same(strategy, fingerprint({n: v.numpy() for n, v in variables.items()}),
                           "the workers resumed different variables",
                           "give every worker the same --checkpoint-dir (a shared one)")
    # The per-replica computations, traced once each for the replica's batch shape and compiled
    # by XLA (as a TPU compiles them), then called as concrete functions by every replica.
    batch_specs = {k: tf.TensorSpec([per_replica, *s.shape[1:]], s.dtype) for k, s in specs.items()}
    value_specs = {n: tf.TensorSpec(v.shape, v.dtype) for n, v in variables.items()}
    param_specs = {n: value_specs[n] for n in model.parameters}

    def gradients_body(batch, params):
        _traced("gradients")
        feeds = dict(batch)
        feeds.update({VALUE_PREFIX + model.keys[n]: params[n] for n in model.parameters})
        return model.gradients(feeds)

    def apply_body(values, grads):
        _traced("apply")
        feeds = {VALUE_PREFIX + model.keys[n]: values[n] for n in model.names}
        feeds.update(grads)
        out = model.apply(feeds)
        new = {n: out[VALUE_PREFIX + model.keys[n]] for n in model.names}
        # The export's policy, read from what stateless_apply returns: a non-finite step after
        # which no counter moved (SKIP counts it in skipped_steps, PROPAGATE in every variable's
        # step count) is ERROR's "no variable was changed".
        counters = [n for n in model.names
                    if variables[n].dtype == tf.int64 and n != model.iterations]
        still = tf.reduce_all(tf.stack([tf.equal(new[n], values[n]) for n in counters] or [True]))
        stop = tf.logical_and(tf.logical_not(out[FINITE]), still)
        # Which parameters' gradients have a non-finite sum of squares (in the working dtype:
        # float64 for float64, else float32), to name the first one as Java does; computed only
        # for a non-finite step.
        def sums_finite():
            return tf.stack([tf.math.is_finite(tf.reduce_sum(tf.square(tf.cast(
                grads[GRADIENT_PREFIX + model.keys[n]],
                tf.float64 if variables[n].dtype == tf.float64 else tf.float32))))
                for n in model.parameters])

        named = tf.cond(out[FINITE], lambda: tf.ones([len(model.parameters)], tf.bool), sums_finite)
        return new, stop, named, {k: out[k] for k in TELEMETRY}

    gradients_fn = tf.function(gradients_body, jit_compile=True).get_concrete_function(
        batch_specs, param_specs)
    apply_fn = tf.function(apply_body, jit_compile=True).get_concrete_function(
        value_specs, {GRADIENT_PREFIX + model.keys[n]: param_specs[n] for n in model.parameters})

    def replica_step(batch):
        # The same Python for every replica: no replica id, no per-replica state.
        ctx = tf.distribute.get_replica_context()
        out = gradients_fn(batch, {n: variables[n].read_value() for n in model.parameters})
        # bfloat16 and float16 gradients are averaged in float32 and rounded once (the update's
        # working dtype is float32 for them anyway), not summed in 16 bits replica by replica.
        wide = {k: tf.cast(g, tf.float32) if g.dtype in (tf.bfloat16, tf.float16) else g
                for k, g in out.items()}
        mean = ctx.all_reduce(tf.distribute.ReduceOp.MEAN, wide)
        mean = {k: tf.cast(v, out[k].dtype) for k, v in mean.items()}
        loss = mean.pop(LOSS)
        new, stop, sums_finite, telemetry = apply_fn(
            {n: v.read_value() for n, v in variables.items()}, mean)
        for n, v in variables.items():
            v.assign(new[n])  # this replica's copy (aggregation NONE: no cross-replica traffic)
        return loss, stop, sums_finite, telemetry

    @tf.function
    def train_step(batch):
        _traced("step")
        loss, stop, sums_finite, telemetry = strategy.run(replica_step, args=(batch,))
        step_var.assign_add(1)
        first = strategy.experimental_local_results
        # every replica applies the same mean gradient to the same values: the same telemetry
        return (first(loss)[0], first(stop)[0], first(sums_finite)[0],
                {k: first(v)[0] for k, v in telemetry.items()})

    dataset = strategy.distribute_datasets_from_function(
        dataset_fn(files, specs, args.global_batch, replicas, start))
    data = iter(dataset)

    progress = Progress(args.progress or sys.stderr.isatty())
    pause_at = int(os.environ.get("FADAM_TRAIN_PAUSE_AT_STEP", "0"))  # crash tests only
    log({"event": "start", "strategy": args.strategy, "worker": worker, "workers": workers,
         "replicas": replicas, "global_batch": args.global_batch, "start_step": start,
         "steps": args.steps})

    def read(name):
        return None if name is None else int(variables[name].numpy())

    t0, timed = None, 0  # the clock starts after the first step (which also compiles)
    step = start
    while step < args.steps:
        try:
            batch = next(data)
            loss, stop, sums_finite, telemetry = train_step(batch)
            stop = bool(stop.numpy())
        except StopIteration:
            raise ValueError(f"--data ends after {step} global batches of {args.global_batch};"
                             f" --steps is {args.steps}") from None
        except tf.errors.InvalidArgumentError as e:
            text = _first_line(e)
            if "Key: " not in text:  # not a record that failed to parse
                raise ValueError(f"step {step + 1}: {text}") from None
            inputs = ", ".join(f"{k} {_describe(s)}" for k, s in sorted(specs.items()))
            raise ValueError(
                f"--data: a record of global batch {step + 1} (rows {step * args.global_batch} to"
                f" {(step + 1) * args.global_batch - 1}) does not match the train inputs"
                f" ({inputs}): {text[text.index('Key: '):]}") from None
        step += 1
        if stop:  # ERROR: nothing changed; stop before any checkpoint
            sums_finite = sums_finite.numpy()
            bad = [n for n, ok in zip(model.parameters, sums_finite) if not ok] or model.parameters
            raise NonFiniteGradient(non_finite_message(bad[0]))
        loss = float(loss.numpy())
        telemetry = {k: v.numpy().item() for k, v in telemetry.items()}
        if board is not None:
            with board.as_default(step=step):
                tf.summary.scalar(LOSS, loss)
                for k in TELEMETRY:
                    tf.summary.scalar(k, float(telemetry[k]))
        if t0 is None:
            t0 = time.perf_counter()
        else:
            timed += 1
        elapsed = time.perf_counter() - t0
        rate = timed * args.global_batch / elapsed if timed else None  # None: compiling
        if step % args.log_every == 0 or step == args.steps:
            progress.clear()
            log({"step": step, "model_step": read(model.iterations),
                 "loss": loss if math.isfinite(loss) else None,
                 "skipped_steps": read(model.skipped),
                 **{k: telemetry[k] if math.isfinite(telemetry[k]) else None for k in TELEMETRY},
                 "examples_per_s": None if rate is None else round(rate, 1)})
        if manager and chief and (step % args.checkpoint_every == 0 or step == args.steps):
            path = manager.save(checkpoint_number=step)
            log({"event": "checkpoint", "step": step, "path": path})
        progress.update(step, args.steps, loss, rate)
        if step == pause_at:
            log({"event": "paused", "step": step})
            time.sleep(3600)
    progress.end()
    if board is not None:
        board.close()  # flushes
    final = {n: v.numpy() for n, v in variables.items()}
    if args.export and chief:
        write_export(model, final, args.export)
        log({"event": "exported", "path": args.export, "step": step})
    if args.write_final:
        os.makedirs(args.write_final, exist_ok=True)
        np.savez(os.path.join(args.write_final, f"task-{worker}.npz"), **final)
    log({"event": "done", "step": step, "fingerprint": fingerprint(final).hex(),
         "traces": dict(TRACES)})


def open_tensorboard(tf, path):
    """tf.summary's writer of --tensorboard DIR; a directory that cannot be written is one line
    before any step (a ValueError naming it)."""
    try:
        tf.io.gfile.makedirs(path)
        probe = os.path.join(path, ".train-write-check")
        with tf.io.gfile.GFile(probe, "w") as f:
            f.write("")
        tf.io.gfile.remove(probe)
    except (OSError, tf.errors.OpError) as e:
        raise ValueError(f"--tensorboard {path}: cannot write there ({_first_line(e)})") from None
    return tf.summary.create_file_writer(path)


class NonFiniteGradient(RuntimeError):
    """A non-finite gradient under the export's ERROR policy."""


def check_same(strategy, digest, what, fix):
    """Fails on every worker unless all workers hold the same digest: four 16-bit pieces (exact in
    float32) gathered from every replica."""
    import tensorflow as tf

    pieces = [[int.from_bytes(digest[i:i + 2], "big") for i in range(0, 8, 2)]]
    mine = tf.constant(pieces, tf.float32)
    gather = tf.function(lambda: strategy.gather(strategy.run(lambda: tf.identity(mine)), axis=0))
    every = gather().numpy()
    if not (every == every[0]).all():
        raise RuntimeError(f"{what} (fingerprints"
                           f" {sorted({tuple(r) for r in every.astype(int).tolist()})}): {fix}")


def run_job(args):
    """The child's work: trains; returns the exit status."""
    try:
        train(args)
        return 0
    except UsageError as e:
        print(f"train.py: {e}", file=sys.stderr, flush=True)
        return 2
    except (ValueError, RuntimeError, OSError) as e:
        print(f"train.py: {e}", file=sys.stderr, flush=True)
        return 1
    except Exception as e:  # noqa: BLE001
        if hasattr(e, "error_code"):  # a TensorFlow error (tf.errors.OpError): its first line
            print(f"train.py: {type(e).__name__}: {_first_line(e)}", file=sys.stderr, flush=True)
        else:  # a bug: the whole traceback
            import traceback

            traceback.print_exc()
        return 1


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = parse_args(argv)
    except SystemExit as e:  # argparse: --help (0) or a usage error (2)
        return e.code
    if os.environ.get(CHILD_ENV):
        status = run_job(args)
        sys.stdout.flush()
        sys.stderr.flush()
        # Leave at once: TensorFlow's collective and coordination threads can hold a multi-worker
        # process for minutes after its work is done.
        os._exit(status)
    return supervise(args, argv)


if __name__ == "__main__":
    sys.exit(main())
