"""TPU-readiness check of a SavedModel's train step (scripts/tpu-check runs it in .venv).

It loads the SavedModel as a TPU job's Python driver would (tf.saved_model.load), takes the step
signatures (train, and gradients / apply_gradients where the export has them, and
stateless_gradients / stateless_apply, which the launcher tpu-configs/train.py runs: an export
without them fails) and checks, in the signature function and every function it calls:

  variables   the export lists its variables (the `variables` collection), so the loader lifts
              every VarHandleOp out of the step; no reference variables (VariableV2)
  kernels     every op type has an XLA kernel (TensorFlow's XLA_CPU_JIT registry: the TPU backend
              registers the same tf2xla kernels, for the types below)
  dtypes      every tensor is float32, bfloat16, int32, int64 or bool (resource handles aside):
              no float64, float16 or string
  host/random no host-only op (PrintV2, StringFormat, py_func, file I/O, ...) and no stateful
              random op (use the stateless ones with a seed input)
  shapes      the step's inputs are static except their first (batch) dimension; every variable
              is fully defined
  compiles    XLA compiles the step for a batch of --batch-size rows (experimental_get_compiler_ir;
              nothing runs, no variable changes)

Prints PASS or FAIL per signature with each offending op type and its nodes; exit status 0 when
every signature passes, 1 when one fails, 2 for a usage error (no SavedModel, an unreadable one,
no step signature), with one line on stderr that names the file and the cause.
"""

import argparse
import collections
import os
import re
import sys

STEP_SIGNATURES = ("train", "gradients", "apply_gradients", "stateless_gradients", "stateless_apply")
# The launcher (tpu-configs/train.py) runs these two: an export without them fails the check.
REQUIRED_SIGNATURES = ("stateless_gradients", "stateless_apply")
TPU_DTYPES = {"float32", "bfloat16", "int32", "int64", "bool", "resource"}
# Stateful ops a TPU step may hold: resource-variable reads and writes, function calls. (XLA
# compiles Assert to nothing; it is allowed, and checks nothing on the device.)
STATEFUL_OK = {
    "ReadVariableOp", "AssignVariableOp", "AssignAddVariableOp", "AssignSubVariableOp",
    "ResourceGather", "ResourceScatterAdd", "ResourceScatterSub", "ResourceScatterUpdate",
    "StatefulPartitionedCall", "Assert", "NoOp",
}
HOST_ONLY = {
    "PrintV2", "Print", "StringFormat", "PyFunc", "PyFuncStateless", "EagerPyFunc", "ReadFile",
    "WriteFile", "SaveV2", "RestoreV2", "MergeV2Checkpoints", "ShardedFilename", "StringJoin",
    "AsString", "HistogramSummary", "ScalarSummary", "WriteScalarSummary", "WriteHistogramSummary",
}
REF_VARIABLES = {"VariableV2", "Variable", "TemporaryVariable"}
SHOWN_NODES = 5


def project_version():
    """fadam-tf's version from the parent POM, when this file sits in the project (on a TPU VM it
    may have been copied alone)."""
    pom = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "pom.xml")
    if not os.path.isfile(pom):
        return "unknown"
    with open(pom, encoding="utf-8") as f:
        match = re.search(r"<artifactId>fadam-tf-parent</artifactId>\s*<version>([^<]+)</version>", f.read())
    return match.group(1) if match else "unknown"


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="tpu-check",
        usage="%(prog)s [-h] [-V] [--batch-size N] [--signature NAME] SAVEDMODEL",
        description="Check that a SavedModel's train step (train, gradients, apply_gradients, "
                    "stateless_gradients, stateless_apply signatures) can run on a Cloud TPU: "
                    "variables, XLA kernels, dtypes, "
                    "host-only and stateful random ops, static shapes, and that XLA compiles it.",
        epilog="Exit status: 0 every step signature passes, 1 one fails, 2 usage error (no SavedModel,"
               " a truncated or corrupt one, no step signature).")
    parser.add_argument("-V", "--version", action="version",
                        version=f"tpu-check (fadam-tf {project_version()})")
    parser.add_argument("savedmodel", metavar="SAVEDMODEL", nargs="?", help="the SavedModel directory")
    parser.add_argument("--batch-size", type=int, default=8, metavar="N",
                        help="rows of the batch XLA compiles the step for (default 8)")
    parser.add_argument("--signature", action="append", metavar="NAME",
                        help="check only this signature (repeatable; default: every one of "
                             + ", ".join(STEP_SIGNATURES) + " the export has)")
    # Unknown flags first: argparse would report a missing SAVEDMODEL and stop there.
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}"
                     + ("" if args.savedmodel else " (and SAVEDMODEL is missing)"))
    if not args.savedmodel:
        parser.error("the following arguments are required: SAVEDMODEL")
    if args.batch_size < 1:
        parser.error(f"--batch-size must be >= 1; got {args.batch_size}")
    if not os.path.isfile(os.path.join(args.savedmodel, "saved_model.pb")):
        print(f"tpu-check: no SavedModel at {args.savedmodel} (saved_model.pb is missing)", file=sys.stderr)
        return 2

    import tensorflow as tf  # after argument parsing: --help and usage errors stay fast

    _register_xla_kernels(tf)
    try:
        loaded = load_savedmodel(tf, args.savedmodel)
    except ExportError as e:
        print(f"tpu-check: {e}", file=sys.stderr)
        return 2
    names = args.signature or [s for s in STEP_SIGNATURES if s in loaded.signatures]
    missing = [s for s in names if s not in loaded.signatures]
    if not names or missing:
        print(f"tpu-check: {args.savedmodel} has no signature {', '.join(missing or STEP_SIGNATURES)}; "
              f"it has {', '.join(sorted(loaded.signatures)) or 'none'}", file=sys.stderr)
        return 2

    failed = False
    for name in names:
        problems = check_signature(tf, loaded, loaded.signatures[name], args.batch_size)
        failed = failed or bool(problems)
        print(f"{'FAIL' if problems else 'PASS'} {name}")
        for line in problems:
            print(f"  {line}")
    for name in [] if args.signature else [s for s in REQUIRED_SIGNATURES if s not in loaded.signatures]:
        failed = True
        print(f"FAIL {name}")
        print(f"  missing: the export has no {name} signature, which tpu-configs/train.py runs "
              "(exported by an older fadam-tf): re-export it")
    return 1 if failed else 0


class ExportError(Exception):
    """A SavedModel that cannot be read: one line naming the file and the cause."""


def load_savedmodel(tf, path):
    """tf.saved_model.load(path), with an unreadable, truncated or corrupt export as an ExportError
    (one line naming the file and the cause) instead of TensorFlow's traceback. Shared, as a copy,
    with train.py: each file may be copied alone onto a TPU VM."""
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
                          f"(TensorFlow: {_op_error_reason(e)})") from None
    except Exception as e:
        raise ExportError(f"cannot load the SavedModel at {path}: {_first_line(e)}") from None


def _first_line(e):
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _op_error_reason(e):
    """The cause in a TensorFlow op error's text: the last paragraph's first line (the paragraphs
    before it say where the op was defined)."""
    text = (e.message if hasattr(e, "message") else str(e)).strip()
    last = text.split("\n\n")[-1].strip()
    return last.splitlines()[0] if last else type(e).__name__


def _damaged_variables_file(path, e):
    """The checkpoint file a restore error points at: the index when it is not a table, else the
    data (its one shard, or the shards' pattern)."""
    variables = os.path.join(path, "variables")
    if "sstable" in _op_error_reason(e):
        return os.path.join(variables, "variables.index")
    shards = sorted(f for f in os.listdir(variables) if f.startswith("variables.data-")) \
        if os.path.isdir(variables) else []
    return os.path.join(variables, shards[0] if len(shards) == 1 else "variables.data-*")


def _register_xla_kernels(tf):
    """TensorFlow registers its XLA_CPU_JIT kernels when it first compiles: compile something."""
    tf.function(lambda x: x + 1, jit_compile=True)(tf.constant(1.0))


def check_signature(tf, loaded, fn, batch_size):
    """The problems of one signature function, one line each (empty if it can run on a TPU)."""
    problems = []
    variables = list(loaded.variables)
    if not variables:
        problems.append("variables: the export lists no variables (no `variables` collection of "
                        "resource variables): Python sees none and the step keeps its variable ops "
                        "inside; export with FisherTrainStep of a fadam-tf that writes the collection")
    for v in variables:
        if v.dtype.name not in TPU_DTYPES:
            problems.append(f"dtypes: variable {v.name} is {v.dtype.name}")
        if not v.shape.is_fully_defined():
            problems.append(f"shapes: variable {v.name} has shape {v.shape}, not fully defined")

    found = collections.defaultdict(lambda: collections.defaultdict(list))  # reason -> op -> nodes
    for where, graph in _graphs(tf, fn):
        for op in graph.get_operations():
            for reason in _op_problems(tf, op):
                found[reason][op.type].append(f"{where}/{op.name}")
    for reason in sorted(found):
        problems.append(f"{reason}:")
        for op_type in sorted(found[reason]):
            nodes = sorted(found[reason][op_type])
            more = f", and {len(nodes) - SHOWN_NODES} more" if len(nodes) > SHOWN_NODES else ""
            problems.append(f"  {op_type} ({len(nodes)}): {', '.join(nodes[:SHOWN_NODES])}{more}")

    spec = fn.structured_input_signature[1]
    for key, s in sorted(spec.items()):
        if s.shape.rank is None or any(d is None for d in s.shape.as_list()[1:]):
            problems.append(f"shapes: input {key} has shape {s.shape}; only the first (batch) "
                            "dimension may be unknown")
    if not problems:
        problems.extend(_compile_problems(tf, fn, spec, batch_size))
    return problems


def _graphs(tf, fn):
    """(name, graph) of the signature function and of every function it calls, transitively."""
    from tensorflow.python.framework import function_def_to_graph

    library = {f.signature.name: f for f in fn.graph.as_graph_def().library.function}
    yield str(fn.name.decode() if isinstance(fn.name, bytes) else fn.name), fn.graph
    seen, todo = set(), _called(fn.graph)
    while todo:
        name = todo.pop()
        if name in seen or name not in library:
            continue
        seen.add(name)
        graph = function_def_to_graph.function_def_to_graph(library[name])
        yield name, graph
        todo.extend(_called(graph))


def _called(graph):
    """Names of the functions the ops of `graph` call (function-valued attributes)."""
    names = []
    for op in graph.get_operations():
        for value in op.node_def.attr.values():
            if value.HasField("func"):
                names.append(value.func.name)
            names.extend(f.name for f in value.list.func)
    return names


def _op_problems(tf, op):
    from tensorflow.python.framework import kernels, op_def_registry

    reasons = []
    if op.type in ("Placeholder", "Const", "Identity", "NoOp"):
        pass  # arguments, constants and pass-through: no kernel question
    elif op.type in REF_VARIABLES or any(t.dtype._is_ref_dtype for t in op.outputs):
        reasons.append("reference variable (VariableV2): use resource variables")
    elif op.type == "VarHandleOp":
        reasons.append("variable handle inside the step (the export has no `variables` collection)")
    elif op.type in HOST_ONLY:
        reasons.append("host-only op (no TPU kernel)")
    elif "Random" in op.type and not op.type.startswith("Stateless") or op.type.startswith("StatefulUniform") \
            or op.type.startswith("StatefulStandardNormal") or op.type.startswith("StatefulTruncatedNormal") \
            or op.type in ("Multinomial", "RngSkip", "RngReadAndSkip"):
        reasons.append("stateful random op: use a stateless one with a seed input")
    else:
        op_def = op_def_registry.get(op.type)
        if op_def is not None and op_def.is_stateful and op.type not in STATEFUL_OK:
            reasons.append("stateful op that is not a resource-variable read or write")
        if op.type not in ("StatefulPartitionedCall", "PartitionedCall") and not any(
                k.device_type == "XLA_CPU_JIT" for k in kernels.get_registered_kernels_for_op(op.type).kernel):
            reasons.append("no XLA kernel")
    bad = sorted({t.dtype.name for t in list(op.inputs) + list(op.outputs)
                  if t.dtype.base_dtype.name not in TPU_DTYPES})
    if bad:
        reasons.append(f"dtype {'/'.join(bad)} (a TPU step holds float32, bfloat16, int32, int64, bool)")
    return reasons


def _compile_problems(tf, fn, spec, batch_size):
    """Compiles the step with XLA for a zero batch of batch_size rows; nothing runs."""
    inputs = {}
    for key, s in spec.items():
        shape = [batch_size if d is None else d for d in s.shape.as_list()]
        inputs[key] = tf.zeros(shape, s.dtype)
    step = tf.function(lambda **kw: fn(**kw), jit_compile=True)
    try:
        hlo = step.experimental_get_compiler_ir(**inputs)(stage="hlo")
    except Exception as e:  # XLA's errors come as several TensorFlow exception types
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return [f"compiles: XLA cannot compile the step: {first}"]
    if not hlo.startswith("HloModule"):
        return ["compiles: XLA returned no HLO module"]
    return []


if __name__ == "__main__":
    sys.exit(main())
