"""Run-time hyperparameters and the `finite` output, driven from Python on Java's exports.

The exports carry `<step>/hparams/learning_rate_scale` (η_t's multiplier) and
`<step>/hparams/weight_decay` (λ) as variables; a Python job changes them with `.assign`. The
`train` and `apply_gradients` signatures return `finite`; under ERROR a refused call changes no
variable, `iterations` included.
"""

import numpy as np
import tensorflow as tf

from conftest import bits, variable_name


def by_name(loaded):
    return {variable_name(v): v for v in loaded.variables}


def one(variables, suffix):
    [name] = [n for n in variables if n.endswith(suffix)]
    return variables[name]


def test_learning_rate_scale_zero_freezes_every_parameter_then_one_resumes(exports):
    demo = exports["demo"]
    loaded = tf.saved_model.load(demo.model_dir)
    variables = by_name(loaded)
    params = {n: v for n, v in variables.items() if v.trainable}
    iterations = one(variables, "-iterations")
    scale = one(variables, "hparams/learning_rate_scale")
    assert scale.numpy() == 1.0 and not scale.trainable
    before = {n: v.numpy() for n, v in params.items()}
    count = iterations.numpy()
    scale.assign(0.0)
    train = loaded.signatures["train"]
    for k in list(demo.steps)[:2]:
        out = train(**demo.batch(k))
        assert bool(out["finite"].numpy())
    for n, v in params.items():
        np.testing.assert_array_equal(bits(v.numpy()), bits(before[n]), err_msg=f"{n} moved at scale 0")
    assert iterations.numpy() == count + 2, "frozen steps are still counted"
    scale.assign(1.0)
    train(**demo.batch(demo.first))
    assert any(not np.array_equal(v.numpy(), before[n]) for n, v in params.items()), "scale 1 moves them"


def test_weight_decay_assigned_in_python_changes_the_step_and_assigning_it_back_restores_it(exports):
    demo = exports["demo"]
    runs = []
    for lam in (None, 0.0, "back"):
        loaded = tf.saved_model.load(demo.model_dir)
        variables = by_name(loaded)
        decay = one(variables, "hparams/weight_decay")
        original = float(decay.numpy())
        assert original > 0
        if lam == 0.0:
            decay.assign(0.0)
        elif lam == "back":
            decay.assign(0.5)
            decay.assign(original)
        loaded.signatures["train"](**demo.batch(demo.first))
        runs.append({n: v.numpy() for n, v in variables.items() if v.trainable})
    untouched, zero, back = runs
    for n in untouched:
        np.testing.assert_array_equal(bits(back[n]), bits(untouched[n]), err_msg=n)
    assert any(not np.array_equal(zero[n], untouched[n]) for n in untouched), "λ = 0 is another step"


def test_finite_under_error_refuses_the_call_and_changes_nothing(exports):
    loaded = tf.saved_model.load(exports["error"].model_dir)
    variables = by_name(loaded)
    train = loaded.signatures["train"]
    assert "finite" in train.structured_outputs
    assert "finite" in loaded.signatures["apply_gradients"].structured_outputs
    rng = np.random.default_rng(3)
    x = rng.normal(size=(8, 4)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 8)]
    out = train(x=tf.constant(x), y=tf.constant(y))
    assert bool(out["finite"].numpy()) and int(out["step"].numpy()) == 1
    before = {n: v.numpy() for n, v in variables.items()}
    x[2, 1] = np.nan
    out = train(x=tf.constant(x), y=tf.constant(y))
    assert not bool(out["finite"].numpy())
    assert int(out["step"].numpy()) == 1, "the refused call is not counted"
    for n, v in variables.items():
        np.testing.assert_array_equal(v.numpy(), before[n], err_msg=f"{n} changed under ERROR")
