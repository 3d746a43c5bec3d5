#!/usr/bin/env python3
"""Data-parallel training of a fadam-tf SavedModel on TensorFlow's distribution runtime.

One program for every scale. The SavedModel (exported from Java by FisherTrainStep) carries the
optimizer step in two halves: `gradients` (the train inputs -> loss and grad_<variable> for every
parameter) and `apply_gradients` (those gradients -> the FAdam / FAdafactor / Adam update of every
parameter, slot and counter). Each step, every replica computes the gradients of its share of the
global batch, the gradients are averaged over all replicas (an all-reduce across workers), and
every worker applies the average to its copy of the variables, so all copies stay identical.

  --strategy one          one process, one device: the plain trainer (gradients, then apply).
  --strategy mirrored     one process, several local devices (GPUs; or --cpu-replicas N CPUs).
  --strategy multiworker  MultiWorkerMirroredStrategy: one process per host, the cluster in the
                          TF_CONFIG environment variable, collective all-reduce over gRPC.
  --strategy tpu          TPUStrategy on a Cloud TPU (--tpu NAME, or local on a TPU VM).

Data: --data TFRecord files of tf.train.Example, one example per row, features named after the
train inputs (int64 features for integer inputs, float features for float ones), read in order;
`scripts/demo --tfrecord FILE` writes the demo's training stream so. Global batch k is examples
k*G ... k*G+G-1; replica r of R takes rows k*G + r*G/R ... of it, so each worker parses only its
own rows, and the average of the replicas' mean gradients is the gradient of the whole batch.

Local --data files are counted before anything else (record headers only): data that cannot
cover --steps global batches, or a truncated file, fails at once instead of after training.

Checkpoints: the chief alone writes them (tf.train.CheckpointManager, the last --keep kept) into
--checkpoint-dir every --checkpoint-every steps and after the last step; every worker resumes
from the latest one by itself on start (the directory must be shared by all workers, as
TensorFlow requires: NFS, GCS). A checkpoint holds every variable of the model and the launcher's
step count, which also says where in the data to continue.

A multiworker worker waits for the others of TF_CONFIG's cluster (TensorFlow blocks until all
have joined): it logs a "waiting" event naming the peers every 30 s, and gives up after
--connect-timeout with one line (exit status 1). TensorFlow blocks in C++ holding Python's lock,
and its coordination service takes SIGTERM over (as a preemption notice), so a multiworker
worker runs as two processes: this one, which only watches, and the trainer it starts; SIGINT
or SIGTERM to the watcher ends the trainer (SIGKILL) with one line saying where it stood (exit
status 128 + the signal's number), and the trainer dies with the watcher (PR_SET_PDEATHSIG).

Prints one log line per --log-every steps (step, loss, examples/s) and, on a terminal, a progress
line. Exit status 0 on success, 1 on an error (an unreadable export or data among them: one line
naming the file), 2 on a usage error.
"""

import argparse
import glob
import hashlib
import json
import mmap
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time

# Written before TensorFlow is imported (its C++ logging reads it at load time).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

GRADIENTS = "gradients"
APPLY_GRADIENTS = "apply_gradients"
GRADIENT_PREFIX = "grad_"
STRATEGIES = ("one", "mirrored", "multiworker", "tpu")


class UsageError(Exception):
    """A command-line mistake: exit status 2."""


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="train.py",
        description=__doc__.split("\n\n")[0] + " See the top of this file and"
        " docs/scaling-out.md for the details.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Exit status: 0 done; 1 an error, in one line (an unreadable export or --data names\n"
        "the file; data that cannot cover --steps, and a multiworker worker whose peers did not\n"
        "join within --connect-timeout, fail before training); 2 a usage error; 128 + N when\n"
        "stopped by signal N (SIGINT 130, SIGTERM 143).",
    )
    p.add_argument("--strategy", choices=STRATEGIES, default="one",
                   help="how to distribute (default: one)")
    p.add_argument("--savedmodel", required=True, help="the SavedModel directory exported from Java")
    p.add_argument("--data", required=True, nargs="+",
                   help="TFRecord files (or glob patterns) of tf.train.Example, read in order")
    p.add_argument("--global-batch", type=int, required=True,
                   help="rows per step over all replicas (a multiple of the number of replicas)")
    p.add_argument("--steps", type=int, required=True,
                   help="steps to reach, counting those of a resumed checkpoint")
    p.add_argument("--checkpoint-dir", default="none",
                   help="where the chief writes checkpoints and every worker resumes from (shared"
                   " by all workers; default none: no checkpoints; a folder named none: ./none)")
    p.add_argument("--checkpoint-every", type=int, default=100,
                   help="steps between checkpoints (default 100; one is also written at the end)")
    p.add_argument("--keep", type=int, default=3, help="checkpoints kept (default 3)")
    p.add_argument("--log-every", type=int, default=10, help="steps between log lines (default 10)")
    p.add_argument("--cpu-replicas", type=int, default=0,
                   help="mirrored only: split the CPU into N logical devices, one replica each"
                   " (to try data parallelism without GPUs)")
    p.add_argument("--tpu", default="", help="tpu only: the TPU name or address (default: local)")
    p.add_argument("--write-final", metavar="DIR",
                   help="after the last step, write every variable to DIR/task-<i>.npz (checks)")
    p.add_argument("--progress", action="store_true",
                   help="show the progress line even when stderr is not a terminal")
    p.add_argument("--connect-timeout", type=float, default=600.0, metavar="SECONDS",
                   help="multiworker only: give up when the other workers of TF_CONFIG have not"
                   " all joined within this many seconds (default 600)")
    args = parse_reporting_unknown_first(p, argv)
    if args.checkpoint_dir == "none":
        args.checkpoint_dir = None
    if not args.connect_timeout > 0:
        p.error(f"--connect-timeout must be > 0; got {args.connect_timeout:g}")
    for name in ("global_batch", "steps", "checkpoint_every", "keep", "log_every"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1; got {getattr(args, name)}")
    if args.cpu_replicas and args.strategy != "mirrored":
        p.error("--cpu-replicas is for --strategy mirrored")
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


# -------------------------------------------------------------------------------------------------
# A multiworker worker: a watcher process and the trainer it starts. TensorFlow waits for the other
# workers (in the strategy's creation, in every collective) in C++ without releasing Python's
# lock, so no thread of the trainer can log, time out or take a signal meanwhile; the watcher can.

TRAINER_ENV = "FADAM_TRAIN_STATUS_FD"  # set in the trainer: the pipe it reports its progress on
WAIT_LOG_SECONDS = 30.0


def cluster_peers():
    """This worker's description and the addresses of the other workers in TF_CONFIG."""
    try:
        config = json.loads(os.environ["TF_CONFIG"])
        cluster, task = config["cluster"], config["task"]
        me = cluster[task["type"]][task["index"]]
    except (ValueError, KeyError, IndexError, TypeError) as e:
        raise UsageError(f"TF_CONFIG is not a cluster with this task in it ({type(e).__name__}: {e});"
                         " see README.md, Scaling out") from None
    peers = [a for kind in ("chief", "worker") for a in cluster.get(kind, []) if a != me]
    return f"{task['type']} {task['index']} ({me})", peers


def answers(address, timeout=1.0):
    """Whether something accepts a TCP connection at host:port (a worker's server is up)."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def watch(argv, args):
    """The watcher of a multiworker worker: starts the trainer (this program again) and waits for
    it, logging while it waits for its peers, giving up after --connect-timeout, and ending it on
    SIGINT or SIGTERM. Returns the exit status."""
    me, peers = cluster_peers()
    read, write = os.pipe()
    env = {**os.environ, TRAINER_ENV: str(write), "FADAM_TRAIN_WATCHER_PID": str(os.getpid())}
    trainer = subprocess.Popen([sys.executable, os.path.abspath(__file__), *argv], env=env,
                               pass_fds=(write,))
    os.close(write)
    os.set_blocking(read, False)
    caught = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda number, frame: caught.append(number))
    where = f"while {me} waited for the other workers ({', '.join(peers)})"
    joined = not peers
    waiting_since = None  # when the trainer started connecting
    next_log = None
    pending = b""

    def end(status, message):
        trainer.kill()
        trainer.wait()
        sys.stdout.flush()
        print(f"train.py: {message}", file=sys.stderr, flush=True)
        return status

    try:
        while True:
            try:
                chunk = os.read(read, 65536)
            except BlockingIOError:
                chunk = None
            if chunk:
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    kind, _, text = line.decode().partition(" ")
                    if kind == "connecting":
                        waiting_since = time.monotonic()
                        next_log = waiting_since + min(WAIT_LOG_SECONDS, args.connect_timeout / 3)
                    elif kind == "joined":
                        joined = True
                    elif kind == "at":
                        where = "at " + text
            if caught:
                name = signal.Signals(caught[0]).name
                return end(128 + caught[0], f"stopped by {name} {where}")
            status = trainer.poll()
            if status is not None:
                return status if status >= 0 else 128 - status
            if not joined and waiting_since is not None:
                now = time.monotonic()
                if now - waiting_since >= args.connect_timeout:
                    silent = [p for p in peers if not answers(p)]
                    who = (f"{', '.join(silent)} not answering" if silent
                           else f"{', '.join(peers)} answering but not joining")
                    return end(1, f"gave up after {args.connect_timeout:g} s waiting for the other"
                               f" workers of {me}: {who}; start every worker of TF_CONFIG's"
                               " cluster, or raise --connect-timeout")
                if now >= next_log:
                    next_log += min(WAIT_LOG_SECONDS, args.connect_timeout / 3)
                    log(json.dumps({"event": "waiting", "worker": me, "for": peers,
                                    "not_answering": [p for p in peers if not answers(p)],
                                    "waited_s": round(now - waiting_since),
                                    "timeout_s": args.connect_timeout}))
            time.sleep(0.05)
    finally:
        if trainer.poll() is None:
            trainer.kill()
            trainer.wait()


class Status:
    """The trainer's reports to its watcher (nothing when there is no watcher)."""

    def __init__(self):
        fd = os.environ.get(TRAINER_ENV)
        self.out = os.fdopen(int(fd), "w", buffering=1) if fd else None
        if fd:
            die_with_the_watcher()

    def say(self, line):
        if self.out:
            try:
                self.out.write(line + "\n")
            except OSError:
                pass  # the watcher is gone: so will this process be


def die_with_the_watcher():
    """Asks Linux to SIGKILL this process when the watcher ends (a kill -9 of the watcher must
    not leave a trainer holding its port and its place in the cluster); Ctrl-C is the watcher's."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the trainer may outlive a killed watcher
    if str(os.getppid()) != os.environ.get("FADAM_TRAIN_WATCHER_PID"):
        os._exit(1)  # the watcher ended before the request


# -------------------------------------------------------------------------------------------------
# The strategy comes first: MultiWorkerMirroredStrategy must be created before any other TF work.


def make_strategy(args):
    """The tf.distribute strategy (None for --strategy one): the first TensorFlow work done."""
    import tensorflow as tf

    if args.strategy == "one":
        return None
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
        return tf.distribute.MultiWorkerMirroredStrategy()
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=args.tpu)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def task_info(strategy):
    """(this worker's index, number of workers, whether it is the chief)."""
    if strategy is None:
        return 0, 1, True
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
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
# The model: the two signatures and every variable, by name.


def variable_name(variable):
    """A loaded variable's name as Java named it: 'w1', 'train_step/w1-m', ..."""
    name = variable.name
    name = re.sub(r":\d+$", "", name)
    return re.sub(r"/handle$", "", name)


def load_model(path):
    """(loaded, gradients fn, apply_gradients fn, {name: variable}), checked."""
    import tensorflow as tf

    try:
        loaded = load_savedmodel(tf, path)
    except ExportError as e:
        raise ValueError(str(e)) from None
    missing = [s for s in (GRADIENTS, APPLY_GRADIENTS) if s not in loaded.signatures]
    if missing:
        raise ValueError(f"{path}: the SavedModel has no {' or '.join(missing)} signature; export"
                         " it with fadam-tf's FisherTrainStep.export (signatures: "
                         f"{', '.join(sorted(loaded.signatures))})")
    variables = {variable_name(v): v for v in loaded.variables}
    if not variables:
        raise ValueError(f"{path}: Python sees no variables in the SavedModel (no 'variables'"
                         " collection): export it with a fadam-tf version that writes them")
    grads_fn = loaded.signatures[GRADIENTS]
    apply_fn = loaded.signatures[APPLY_GRADIENTS]
    grad_keys = sorted(k for k in grads_fn.structured_outputs if k.startswith(GRADIENT_PREFIX))
    apply_keys = sorted(apply_fn.structured_input_signature[1])
    if grad_keys != apply_keys:
        raise ValueError(f"{path}: gradients outputs {grad_keys} do not match apply_gradients"
                         f" inputs {apply_keys}")
    return loaded, grads_fn, apply_fn, variables


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


def _first_line(e):
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


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


def fingerprint(variables):
    """SHA-256 over every variable's name and bytes: equal iff the states are bit-identical."""
    h = hashlib.sha256()
    for name in sorted(variables):
        h.update(name.encode())
        h.update(variables[name].numpy().tobytes())
    return h.digest()


# -------------------------------------------------------------------------------------------------
# Data: TFRecord files of tf.train.Example, global batches, each replica its own rows.


def input_specs(grads_fn):
    """{input name: tf.TensorSpec} of the train inputs (the gradients signature's inputs)."""
    return dict(grads_fn.structured_input_signature[1])


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


def count_records(path):
    """The records of an uncompressed TFRecord file, from their headers (8-byte length, 4-byte
    CRC, data, 4-byte CRC; nothing is parsed); a record cut short is an error naming the file."""
    size = os.path.getsize(path)
    if size == 0:
        return 0
    count, offset = 0, 0
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        while offset < size:
            if offset + 12 > size:
                break
            (length,) = struct.unpack_from("<Q", m, offset)
            if offset + 16 + length > size:
                break
            offset += 16 + length
            count += 1
    if offset != size:
        raise ValueError(f"{path} is truncated or corrupt: a TFRecord after record {count}"
                         f" (byte {offset}) runs past the end of the file ({size} bytes)")
    return count


def local_records(patterns):
    """The records of --data when every pattern is a local path (None if one is remote: gs://
    ..., not counted); a pattern matching nothing is an error."""
    if any("://" in p for p in patterns):
        return None
    total = 0
    for p in patterns:
        matched = sorted(glob.glob(p))
        if not matched:
            raise ValueError(f"--data {p}: no such file")
        for f in matched:
            try:
                total += count_records(f)
            except OSError as e:
                raise ValueError(f"cannot read {f}: {e.strerror or e}") from None
    return total


def check_data_covers_steps(args):
    """Fails before any TensorFlow work when local --data holds fewer than --steps global batches.
    Returns the number of records (None: remote data, not counted)."""
    records = local_records(args.data)
    if records is not None and records // args.global_batch < args.steps:
        raise ValueError(f"--data holds {records} rows: {records // args.global_batch} global batches"
                         f" of {args.global_batch}, fewer than --steps {args.steps}; give more data,"
                         " fewer --steps or a smaller --global-batch")
    return records


def worker_batches(files, specs, global_batch, worker, workers, skip):
    """This worker's rows of every global batch from step `skip` on, parsed, as a tf.data.Dataset."""
    import tensorflow as tf

    share = global_batch // workers
    features = {}
    for name, spec in specs.items():
        kind = tf.float32 if spec.dtype.is_floating else tf.int64
        features[name] = tf.io.FixedLenFeature(spec.shape[1:], kind)

    def parse(rows):
        mine = rows[worker * share:(worker + 1) * share]
        parsed = tf.io.parse_example(mine, features)
        return {n: tf.cast(parsed[n], specs[n].dtype) for n in specs}

    ds = tf.data.TFRecordDataset(files).batch(global_batch, drop_remainder=True)
    return ds.skip(skip).map(parse).prefetch(2)


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


def log(msg):
    print(msg, flush=True)


def train(args):
    records = check_data_covers_steps(args)  # before importing TensorFlow: fails in a moment
    import tensorflow as tf

    status = Status()
    status.say("connecting")
    strategy = make_strategy(args)  # before any other TF work

    worker, workers, chief = task_info(strategy)
    replicas = 1 if strategy is None else strategy.num_replicas_in_sync
    if args.global_batch % replicas:
        raise UsageError(f"--global-batch {args.global_batch} is not a multiple of the"
                         f" {replicas} replicas")
    local = replicas // workers
    per_replica = args.global_batch // replicas

    # Every local replica gets its own copy of the model, on its device (XLA reads a variable only
    # on its own device; MWMS does not synchronise loaded variables): the same mean gradients,
    # applied on every replica, keep all copies identical.
    devices = [None] if strategy is None else list(strategy.extended.worker_devices)
    copies = []
    for device in devices:
        if device is None:
            copies.append(load_model(args.savedmodel))
        else:
            with tf.device(device):
                copies.append(load_model(args.savedmodel))
    _, grads_fn, _, variables = copies[0]
    specs = input_specs(grads_fn)
    files = data_files(args.data)

    step_var = tf.Variable(0, dtype=tf.int64, name="launcher_step", trainable=False)
    checkpoints = [tf.train.Checkpoint(step=step_var, variables=c[3]) for c in copies]
    manager = None
    if args.checkpoint_dir:
        manager = tf.train.CheckpointManager(checkpoints[0], args.checkpoint_dir, max_to_keep=args.keep)
        if manager.latest_checkpoint:
            for c in checkpoints:
                c.restore(manager.latest_checkpoint).assert_consumed()
            log(json.dumps({"event": "resumed", "path": manager.latest_checkpoint,
                            "step": int(step_var.numpy())}))
    start = int(step_var.numpy())
    check_identical(strategy, [c[3] for c in copies], workers)  # the first collective
    status.say("joined")
    status.say(f"at step {start}")

    @tf.function
    def one_step(batch):
        _, grads, apply, _ = copies[0]
        out = grads(**batch)
        loss = out.pop("loss")
        return loss, apply(**out)["step"]

    first = worker * local  # this worker's first replica, in the global numbering

    def replica_step(batch):
        # The loss and gradients of this replica's rows, their mean over all replicas of all
        # workers (one all-reduce of the whole structure), applied to this replica's copy.
        ctx = tf.distribute.get_replica_context()
        rid = tf.get_static_value(ctx.replica_id_in_sync_group)
        _, grads, apply, _ = copies[0 if rid is None else rid - first]
        mean = ctx.all_reduce(tf.distribute.ReduceOp.MEAN, grads(**batch))
        loss = mean.pop("loss")
        return loss, apply(**mean)["step"]

    @tf.function
    def replicated_step(batch):
        loss, model_step = strategy.run(replica_step, args=(batch,))
        # Every replica's outputs, so that no replica's update is left out of the function.
        return (tf.stack(strategy.experimental_local_results(loss)),
                tf.stack(strategy.experimental_local_results(model_step)))

    def distribute(batch):
        def shard(ctx):
            r = ctx.replica_id_in_sync_group - first
            return {n: v[r * per_replica:(r + 1) * per_replica] for n, v in batch.items()}

        return strategy.experimental_distribute_values_from_function(shard)

    progress = Progress(args.progress or sys.stderr.isatty())
    pause_at = int(os.environ.get("FADAM_TRAIN_PAUSE_AT_STEP", "0"))  # crash tests only
    log(json.dumps({"event": "start", "strategy": args.strategy, "worker": worker,
                    "workers": workers, "replicas": replicas, "global_batch": args.global_batch,
                    "start_step": start, "steps": args.steps, "data_rows": records}))
    data = iter(worker_batches(files, specs, args.global_batch, worker, workers, start))
    t0, timed = None, 0  # the clock starts after the first step (which also compiles)
    step = start
    while step < args.steps:
        try:
            batch = next(data)
        except StopIteration:
            raise ValueError(f"--data ends after {step} global batches of {args.global_batch};"
                             f" --steps is {args.steps}") from None
        if strategy is None:
            loss, model_step = one_step(batch)
        else:
            losses, steps = replicated_step(distribute(batch))
            loss, model_step = losses[0], steps[0]
            if len(set(steps.numpy().tolist())) != 1:
                raise RuntimeError(f"the replicas' copies count different steps: {steps.numpy()}")
        step += 1
        step_var.assign(step)
        status.say(f"at step {step}" + (f" (last checkpoint {manager.latest_checkpoint})"
                                         if manager and manager.latest_checkpoint else ""))
        loss = float(loss.numpy())
        if t0 is None:
            t0 = time.perf_counter()
        else:
            timed += 1
        elapsed = time.perf_counter() - t0
        rate = timed * args.global_batch / elapsed if timed else None  # None: compiling
        if step % args.log_every == 0 or step == args.steps:
            progress.clear()
            log(json.dumps({"step": step, "model_step": int(model_step.numpy()), "loss": loss,
                            "examples_per_s": None if rate is None else round(rate, 1)}))
        if manager and chief and (step % args.checkpoint_every == 0 or step == args.steps):
            path = manager.save(checkpoint_number=step)  # the copies are identical: the first
            log(json.dumps({"event": "checkpoint", "step": step, "path": path}))
        progress.update(step, args.steps, loss, rate)
        if step == pause_at:
            log(json.dumps({"event": "paused", "step": step}))
            time.sleep(3600)
    progress.end()
    if args.write_final:
        os.makedirs(args.write_final, exist_ok=True)
        import numpy as np

        np.savez(os.path.join(args.write_final, f"task-{worker}.npz"),
                 **{n: v.numpy() for n, v in variables.items()})
    log(json.dumps({"event": "done", "step": step, "fingerprint": fingerprint(variables).hex()}))


def check_identical(strategy, copies, workers):
    """Fails on every worker unless all copies of the model on all workers hold bit-identical
    variables (MWMS does not synchronise variables loaded from a SavedModel: workers loaded from
    different exports or checkpoints would otherwise train on, silently apart)."""
    import tensorflow as tf

    digests = {fingerprint(c) for c in copies}
    if len(digests) != 1:
        raise RuntimeError("the model's copies on this worker differ after loading")
    if workers == 1:
        return
    digest = digests.pop()
    # Four 16-bit pieces of the digest (exact in float32), gathered from every replica.
    mine = tf.constant([[int.from_bytes(digest[i:i + 2], "big") for i in range(0, 8, 2)]],
                       tf.float32)
    every = strategy.gather(strategy.run(lambda: tf.identity(mine)), axis=0).numpy()
    if not (every == every[0]).all():
        raise RuntimeError("the workers start from different variables (fingerprints "
                           f"{sorted({tuple(r) for r in every.astype(int).tolist()})}): give"
                           " every worker the same --savedmodel and --checkpoint-dir")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = parse_args(argv)
        if args.strategy == "multiworker" and TRAINER_ENV not in os.environ:
            if "TF_CONFIG" not in os.environ:
                raise UsageError("--strategy multiworker needs the TF_CONFIG environment variable"
                                 " (see README.md, Scaling out)")
            return watch(argv, args)
        train(args)
        return 0
    except UsageError as e:
        print(f"train.py: {e}", file=sys.stderr)
        return 2
    except (ValueError, RuntimeError, OSError) as e:
        print(f"train.py: {_first_line(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("train.py: stopped by SIGINT", file=sys.stderr)
        return 130
    except Exception as e:
        tf = sys.modules.get("tensorflow")
        if tf is not None and isinstance(e, tf.errors.OpError):  # one line, not TF's op trace
            print(f"train.py: {type(e).__name__}: {op_error_reason(e)}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
