"""Python TensorFlow runs the Java export's signatures with Java's numbers."""

import numpy as np
import pytest
import tensorflow as tf

TRAINED = ["demo", "bf16"]


def assert_javas_losses(losses, java):
    """Java's losses: bit for bit where the two TensorFlow builds' XLA CPU code agrees, else within
    1e-6 relative. Measured here: the bf16 model bit for bit; the demo model 5 of 6 losses bit for
    bit, one 1 ulp (1.1e-7 relative) apart, with the following losses bit for bit again."""
    np.testing.assert_allclose(np.asarray(losses, np.float32), java, rtol=1e-6, atol=0)


def bits(x):
    """float32 values as their bit patterns, so that equality is bit for bit."""
    return np.asarray(x, np.float32).view(np.int32)


@pytest.mark.parametrize("name", TRAINED)
def test_train_signature_continues_with_javas_losses(exports, name):
    e = exports[name]
    loaded = tf.saved_model.load(e.model_dir)  # the signatures need the loaded object alive
    train = loaded.signatures["train"]
    losses = [train(**e.batch(k))["loss"].numpy() for k in e.steps]
    assert_javas_losses(losses, e.losses)


@pytest.mark.parametrize("name", TRAINED)
def test_serve_default_equals_javas_predictions(exports, name):
    e = exports[name]
    loaded = tf.saved_model.load(e.model_dir)
    serve = loaded.signatures["serve_default"]
    predictions = serve(**e.predict_inputs())["predictions"].numpy()
    np.testing.assert_array_equal(bits(predictions), bits(e.predictions))
