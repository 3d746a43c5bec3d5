"""The transformer handed from Java to a multi-worker Python job and back, as a user runs it.

A short version of docs/demo.md's "Java to Python and back" (a 2-layer, width-32 transformer):
  1. Java trains one step of scripts/demo --model transformer and saves it (--save);
  2. Java resumes it for STEPS steps, writing their batches as TFRecords (--tfrecord) and saving
     its own end state;
  3. tpu-check passes the export (every signature: ops with TPU kernels, TPU dtypes);
  4. tpu-configs/train.py continues the export on two MultiWorkerMirroredStrategy workers on
     127.0.0.1 from those TFRecords, half of every batch each, and exports (--export);
  5. Java loads the launcher's export (scripts/demo --evaluate) and evaluates it.
The launcher's variables equal Java's own run within float32 round-off (but for a few elements
whose gradient is near 0, below), and so do the losses Java measures on both.
"""

import re
import sys

import numpy as np
import pytest

from conftest import LAUNCHER, ROOT, events, finish, start_workers

sys.path.insert(0, str(ROOT / "tpu-configs"))
import tpu_check  # noqa: E402
import train  # noqa: E402

BATCH = 8  # windows per global batch: 4 per worker
STEPS = 6
ROUND_OFF = 1e-5  # relative to a tensor's largest value
AMPLIFIED = 1e-2  # of a tensor's elements (scripts/gpu-replay's AMPLIFIED_FRACTION)
SMALL = ["--model", "transformer", "--layers", 2, "--width", 32, "--heads", 2, "--context", 8,
         "--batch", BATCH, "--lr", "3e-3"]
EVALUATED = re.compile(r"FAdam at step (\d+): train loss ([0-9.]+), held-out loss ([0-9.]+)")


@pytest.fixture(scope="module")
def handoff(java, tmp_path_factory):
    d = tmp_path_factory.mktemp("transformer")
    java("org.fadam.demo.Demo", "--optimizers", "fadam", "--steps", 1, "--eval-every", 1, *SMALL,
         "--schedule", "constant", "--out", d / "out1", "--save", d / "start")
    java("org.fadam.demo.Demo", "--resume", d / "start", "--steps", STEPS, "--eval-every", STEPS,
         "--tfrecord", d / "train.tfrecord", "--out", d / "out2", "--save", d / "java-end")
    return d


def evaluate(java, model):
    line = java("org.fadam.demo.Demo", "--evaluate", model).strip().splitlines()[-1]
    m = EVALUATED.search(line)
    assert m, line
    return int(m.group(1)), float(m.group(2)), float(m.group(3))


def test_tpu_check_passes_the_transformer(handoff, capsys):
    status = tpu_check.main([str(handoff / "start")])
    out = capsys.readouterr().out
    assert (status, out) == (0, "PASS train\nPASS gradients\nPASS apply_gradients\n"
                                "PASS stateless_gradients\nPASS stateless_apply\n")


def test_two_workers_continue_it_and_java_evaluates_their_export(handoff, java):
    import tensorflow as tf

    d = handoff
    args = [sys.executable, str(LAUNCHER), "--savedmodel", str(d / "start"),
            "--data", str(d / "train.tfrecord"), "--global-batch", str(BATCH), "--steps", str(STEPS),
            "--log-every", "2", "--checkpoint-dir", str(d / "ckpt"), "--write-final", str(d / "final"),
            "--export", str(d / "launcher-export")]  # the same command line on both: the chief exports
    outs = finish(start_workers([args, args]))
    starts = [[e for e in events(o) if e.get("event") == "start"][0] for o, _ in outs]
    assert [(s["worker"], s["workers"]) for s in starts] == [(0, 2), (1, 2)]

    # The launcher's variables against Java's own run on the same batches. Two workers sum their
    # half-batch gradients in another order than Java sums the whole batch: float32 round-off.
    # FAdam's first steps divide a gradient by about its own size (ḡ = g/√f̂, √f̂ = |g| at step 1),
    # so where an element's gradient is near 0 (attention's query and key weights at
    # initialization) that round-off can flip its ±η move: a few elements per tensor may differ
    # by more (scripts/gpu-replay allows the same for the demo steps). At most AMPLIFIED of any
    # tensor's elements may, and the losses Java measures on both agree (below).
    java_end = {train.variable_name(v): v.numpy() for v in tf.saved_model.load(str(d / "java-end")).variables}
    mine = dict(np.load(d / "final" / "task-0.npz"))
    assert sorted(java_end) == sorted(mine)
    beyond, elements, worst_share = 0, 0, 0.0
    for n in java_end:
        if java_end[n].dtype.kind == "f" and java_end[n].size:
            want = java_end[n].astype(np.float64)
            scale = max(float(np.abs(want).max()), 1e-30)
            err = np.abs(want - mine[n])
            bad = int(np.sum(err > ROUND_OFF * scale))
            assert bad <= AMPLIFIED * want.size, f"{n}: {bad} of {want.size} elements beyond round-off"
            beyond, elements = beyond + bad, elements + want.size
            worst_share = max(worst_share, bad / want.size)
        else:
            assert np.array_equal(java_end[n], mine[n]), n
    print(f"transformer, 2 MWMS workers vs Java, {STEPS} steps: {beyond} of {elements} elements beyond"
          f" float32 round-off (at most {worst_share:.2%} of a tensor)")

    # Java loads the launcher's export and evaluates it: Java's own losses at the same step.
    step, train_loss, held = evaluate(java, d / "launcher-export")
    java_step, java_train, java_held = evaluate(java, d / "java-end")
    assert step == java_step == 1 + STEPS
    print(f"Java evaluates the launcher's export: held-out {held:.6f} (Java's own run {java_held:.6f})")
    assert held == pytest.approx(java_held, rel=1e-4)
    assert train_loss == pytest.approx(java_train, rel=1e-4)
