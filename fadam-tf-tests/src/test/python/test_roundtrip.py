"""What a Python user does next with the loaded export: checkpoint it, save it again, compile it
with XLA, and hand the re-export back to Java. Each used to fail, two of them silently."""

import os

import numpy as np
import pytest
import tensorflow as tf

from conftest import TRAINED, assert_javas_losses, bits, train, variable_name


@pytest.mark.parametrize("name", TRAINED)
def test_checkpoint_round_trip_continues_the_run(exports, python_runs, name, tmp_path):
    e = exports[name]
    k = list(e.steps)
    first = tf.saved_model.load(e.model_dir)
    before = train(first, e, k[:2])
    path = tf.train.Checkpoint(model=first).save(str(tmp_path / "ckpt"))
    saved = {n for n, _ in tf.train.list_variables(path)}
    assert sum(n.startswith("model/variables/") for n in saved) == len(e.variables)

    second = tf.saved_model.load(e.model_dir)  # at the exported state again
    tf.train.Checkpoint(model=second).restore(path).assert_consumed()
    assert int(next(v for v in second.variables if variable_name(v).endswith("-iterations")).numpy()) == e.first + 2
    after = train(second, e, k[2:4])
    np.testing.assert_array_equal(bits(np.concatenate([before, after])), bits(python_runs[name].losses[:4]))
    assert_javas_losses(np.concatenate([before, after]), e.losses[:4])


@pytest.mark.parametrize("name", TRAINED)
def test_saved_model_save_round_trip_continues_in_python_and_in_java(exports, python_runs, name, tmp_path, java):
    e = exports[name]
    k = list(e.steps)
    loaded = tf.saved_model.load(e.model_dir)
    before = train(loaded, e, k[:2])
    again = str(tmp_path / "python-export")
    tf.saved_model.save(loaded, again, signatures=loaded.signatures)

    reloaded = tf.saved_model.load(again)
    assert sorted(variable_name(v) for v in reloaded.variables) == sorted(v["name"] for v in e.variables)
    after = train(reloaded, e, k[2:4])
    np.testing.assert_array_equal(bits(np.concatenate([before, after])), bits(python_runs[name].losses[:4]))

    # And back: Java loads Python's re-export (FisherTrainStep.loadSavedModel) and its train
    # signature continues the same trajectory from batch k[2] to the last.
    out = tmp_path / "java-losses.npy"
    java("org.fadam.tools.PythonInterop", "continue", "--model", name, "--from", again,
         "--first", k[2], "--steps", len(k) - 2, "--out", out)
    assert_javas_losses(np.load(out), e.losses[2:])


@pytest.mark.parametrize("name", TRAINED)
def test_jit_compiled_train_equals_the_signature_and_gives_hlo(exports, python_runs, name):
    e = exports[name]
    loaded = tf.saved_model.load(e.model_dir)
    signature = loaded.signatures["train"]
    step = tf.function(lambda **batch: signature(**batch), jit_compile=True)
    hlo = step.experimental_get_compiler_ir(**e.batch(e.first))(stage="hlo")
    assert hlo.startswith("HloModule ")
    assert "sqrt(" in hlo and "exponential-minus-one(" in hlo  # the optimizer is in the module
    losses = np.array([step(**e.batch(k))["loss"].numpy() for k in e.steps], np.float32)
    np.testing.assert_array_equal(bits(losses), bits(python_runs[name].losses))
    assert_javas_losses(losses, e.losses)
