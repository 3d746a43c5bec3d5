"""Python TensorFlow loads the Java export as a model of its own: variables, train, serve."""

import numpy as np
import pytest
import tensorflow as tf

from conftest import TRAINED, assert_javas_losses, bits, variable_name


@pytest.mark.parametrize("name", TRAINED)
def test_variables_hold_every_parameter_slot_and_counter_and_only_parameters_train(exports, python_runs, name):
    e = exports[name]
    loaded = python_runs[name].loaded
    seen = {variable_name(v): v for v in loaded.variables}
    assert sorted(seen) == sorted(v["name"] for v in e.variables)
    for v in e.variables:
        assert seen[v["name"]].dtype.name == v["dtype"], v["name"]
        assert seen[v["name"]].shape.as_list() == v["shape"], v["name"]
    trainable = sorted(variable_name(v) for v in loaded.variables if v.trainable)
    assert trainable == sorted(v["name"] for v in e.variables if v["trainable"])
    assert len(trainable) == {"demo": 9, "bf16": 4}[name]
    # Each parameter's first moment and step counter is there, under the parameter's name.
    for p in trainable:
        assert f"train_step/{p}-m" in seen and f"train_step/{p}-step" in seen
    assert "train_step/train_step-iterations" in seen and "train_step/train_step-skipped_steps" in seen
    assert int(python_runs[name].at_export["train_step/train_step-iterations"]) == e.first


@pytest.mark.parametrize("name", TRAINED)
def test_train_continues_with_javas_losses_and_state(exports, python_runs, name):
    e = exports[name]
    run = python_runs[name]
    assert_javas_losses(run.losses, e.losses)
    for v in e.variables:
        python = np.asarray(run.final[v["name"]])
        java = np.asarray(e.final_value(v))
        if v["dtype"] == "int64":  # step counters, iterations, skipped_steps
            expected = 0 if v["name"].endswith("skipped_steps") else e.first + len(e.steps)
            assert python == java == expected, v["name"]
            continue
        # float32 round-off of the two builds' XLA code (worst measured: 1.3e-6 of the tensor's
        # largest value, a first moment after 6 steps)
        p, j = python.astype(np.float64), java.astype(np.float64)
        assert np.max(np.abs(p - j)) <= 1e-5 * np.max(np.abs(j)), v["name"]
        if not v["trainable"] and "/hparams/" not in v["name"]:  # slots moved (hyperparameters stay)
            assert not np.array_equal(python, run.at_export[v["name"]]), v["name"]


@pytest.mark.parametrize("name", TRAINED)
def test_serve_default_equals_javas_predictions_bit_for_bit(exports, name):
    e = exports[name]
    loaded = tf.saved_model.load(e.model_dir)
    predictions = loaded.signatures["serve_default"](**e.predict_inputs())["predictions"].numpy()
    np.testing.assert_array_equal(bits(predictions), bits(e.predictions))


def test_a_drop_in_export_runs_but_tensorflow_2_sees_no_variables_and_xla_cannot_compile_it(exports):
    """The VariableV2 (drop-in optimizer) path, exported with TF Java's exporter: TensorFlow 2
    makes variables of resource variables only (a VariableDef collection would not change that),
    so Python, TPU and GPU jobs need FisherTrainStep's export."""
    loaded = tf.saved_model.load(exports["dropin"].model_dir)
    assert list(loaded.variables) == []
    train = loaded.signatures["train"]
    x = tf.constant([1.0, 2.0, 3.0])
    losses = [float(train(x=x)["loss"]) for _ in range(3)]
    assert losses[0] > losses[1] > losses[2]  # FAdam's steps do run, on the hidden variables
    step = tf.function(lambda **batch: train(**batch), jit_compile=True)
    with pytest.raises(tf.errors.InvalidArgumentError, match="VariableV2"):
        step(x=x)
