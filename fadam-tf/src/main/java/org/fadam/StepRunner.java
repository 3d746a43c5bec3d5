package org.fadam;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.tensorflow.Graph;
import org.tensorflow.Output;
import org.tensorflow.Session;
import org.tensorflow.Tensor;
import org.tensorflow.ndarray.Shape;
import org.tensorflow.op.Op;
import org.tensorflow.op.Ops;
import org.tensorflow.op.core.Placeholder;
import org.tensorflow.types.TBool;
import org.tensorflow.types.TFloat32;
import org.tensorflow.types.TFloat64;
import org.tensorflow.types.TInt64;

/**
 * Runs a {@link FisherTrainStep}'s calls in a session: feeds the inputs or gradients, fetches the
 * outputs, translates XLA's compile failures, and under ERROR throws naming the variable whose
 * gradient was not finite.
 */
final class StepRunner {

  private final StepFunctions functions;
  private final Map<String, Placeholder<?>> inputs;
  private final Map<String, String> gradientKeys;
  private final List<ResourceVariable<?>> parameters;
  private final FisherOptions options;
  /** Each run-time hyperparameter's value placeholder and assignment, by variable. */
  private final Map<ResourceVariable<?>, Assignment> assignments = new LinkedHashMap<>();

  /** A placeholder for a new value and the op that assigns it. */
  private record Assignment(Placeholder<?> value, Op assign) {}

  StepRunner(Graph graph, StepFunctions functions, TrainState state) {
    this.functions = functions;
    this.inputs = functions.inputs;
    this.gradientKeys = functions.keys;
    this.parameters = state.parameters();
    this.options = functions.spec.options();
    Ops tf = Ops.create(graph).withSubScope(functions.spec.name() + "_set");
    for (ResourceVariable<?> v : java.util.Arrays.asList(state.learningRateScale(), state.weightDecay())) {
      if (v != null) {
        Placeholder<?> value = tf.placeholder(v.type(), Placeholder.shape(Shape.scalar()));
        assignments.put(v, new Assignment(value, tf.assignVariableOp(v.handle(), value)));
      }
    }
  }

  /**
   * Assigns a run-time hyperparameter.
   *
   * @throws IllegalArgumentException naming the value if it is negative or not finite
   */
  void set(Session session, ResourceVariable<?> variable, String what, double value) {
    if (!Double.isFinite(value) || value < 0) {
      throw new IllegalArgumentException(what + " must be finite and ≥ 0; got " + value);
    }
    Assignment a = assignments.get(variable);
    try (Tensor t = variable.type() == TFloat64.class ? TFloat64.scalarOf(value) : TFloat32.scalarOf((float) value)) {
      session.runner().feed(a.value(), t).addTarget(a.assign()).run();
    }
  }

  /** The whole step: loss and step count. */
  FisherTrainStep.Result train(Session session, Map<String, ? extends Tensor> feeds) {
    Session.Runner r = session.runner();
    feedInputs(r, feeds);
    int n = StepFunctions.TRAIN_TELEMETRY + StepTelemetry.NAMES.size();
    for (int i = 0; i < n; i++) { // loss, step, finite, applied, the telemetry
      r.fetch(functions.trainOutput(i));
    }
    try (org.tensorflow.Result out = XlaErrors.run(r::run)) {
      TBool finite = (TBool) out.get(2);
      checkFinite(finite);
      return new FisherTrainStep.Result(((TFloat32) out.get(0)).getFloat(), ((TInt64) out.get(1)).getLong(),
          allTrue(finite), ((TBool) out.get(3)).getBoolean(),
          Updater.Telemetry.read(out, StepFunctions.TRAIN_TELEMETRY));
    }
  }

  /** The first half: loss and gradients, no variable changed. */
  StepGradients gradients(Session session, Map<String, ? extends Tensor> feeds) {
    Session.Runner r = session.runner();
    feedInputs(r, feeds);
    int n = functions.gradients.numOutputs();
    for (int i = 0; i < n; i++) {
      r.fetch(functions.gradients.output(i));
    }
    org.tensorflow.Result out = XlaErrors.run(r::run);
    Map<String, Tensor> byKey = new LinkedHashMap<>();
    int i = 1;
    for (String key : gradientKeys.values()) {
      byKey.put(key, out.get(i++));
    }
    return new StepGradients(((TFloat32) out.get(0)).getFloat(), byKey, out);
  }

  /** The second half: the update from the given gradients; the step count after it. */
  long applyGradients(Session session, Map<String, ? extends Tensor> gradientsByKey) {
    Map<String, Placeholder<?>> wanted = functions.gradientInputs;
    for (String key : gradientsByKey.keySet()) {
      if (!wanted.containsKey(key)) {
        throw new IllegalArgumentException("no parameter has the gradient key '" + key + "'; keys are "
            + wanted.keySet());
      }
    }
    Session.Runner r = session.runner();
    for (var e : wanted.entrySet()) {
      Tensor g = gradientsByKey.get(e.getKey());
      if (g == null) {
        throw new IllegalArgumentException("gradient '" + e.getKey() + "' is not given; keys are "
            + wanted.keySet());
      }
      r.feed(e.getValue(), g);
    }
    Output<?> step = functions.applyOutput(0);
    Output<?> finite = functions.applyOutput(1);
    try (org.tensorflow.Result out = XlaErrors.run(() -> r.fetch(step).fetch(finite).run())) {
      checkFinite((TBool) out.get(1));
      return ((TInt64) out.get(0)).getLong();
    }
  }

  private void feedInputs(Session.Runner r, Map<String, ? extends Tensor> feeds) {
    for (String n : feeds.keySet()) {
      if (!inputs.containsKey(n)) {
        throw new IllegalArgumentException("no input '" + n + "'; inputs are " + inputs.keySet());
      }
    }
    feeds.forEach((n, t) -> r.feed(inputs.get(n), t));
    for (String n : inputs.keySet()) {
      if (!feeds.containsKey(n)) {
        throw new IllegalArgumentException("input '" + n + "' is not fed; inputs are " + inputs.keySet());
      }
    }
  }

  private static boolean allTrue(TBool flags) {
    for (long i = 0; i < flags.shape().size(); i++) {
      if (!flags.getBoolean(i)) {
        return false;
      }
    }
    return true;
  }

  /** Under ERROR, throws naming the first parameter whose gradient was not finite. */
  private void checkFinite(TBool ok) {
    if (options.nonFinite() != FisherOptions.NonFinitePolicy.ERROR) {
      return;
    }
    for (int i = 0; i < parameters.size(); i++) {
      if (!ok.getBoolean(i)) {
        throw new IllegalStateException(
            Updater.nonFiniteMessage(parameters.get(i).name()) + "; no variable was changed");
      }
    }
  }
}
