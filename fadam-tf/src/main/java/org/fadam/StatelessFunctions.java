package org.fadam;

import java.util.ArrayList;
import java.util.IdentityHashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.tensorflow.ConcreteFunction;
import org.tensorflow.Graph;
import org.tensorflow.Operand;
import org.tensorflow.Operation;
import org.tensorflow.Output;
import org.tensorflow.Signature;
import org.tensorflow.op.Ops;
import org.tensorflow.op.core.Placeholder;
import org.tensorflow.types.TFloat32;
import org.tensorflow.types.family.TType;

/**
 * The step as pure functions of values, for jobs that own their variables (every {@code
 * tf.distribute} strategy, and the only shape a TPU replica function takes): {@value
 * FisherTrainStep#STATELESS_GRADIENTS} (the inputs and every parameter's value → loss and
 * gradients) and {@value FisherTrainStep#STATELESS_APPLY} (every state variable's value and the
 * gradients → every state variable's new value and {@code finite}). No variable op is inside: the
 * same {@link StepFunctions#forwardOf forward pass} and {@link Updater#plan plan} as the stateful
 * signatures, over values passed in as arguments.
 */
final class StatelessFunctions {

  private final TrainState state;
  private final StepFunctions functions;
  /** Every state variable's value key, by variable name. */
  final Map<String, String> valueKeys;
  /** Every state variable's value input in the outer graph, by key. */
  final Map<String, Placeholder<?>> valueInputs = new LinkedHashMap<>();
  /** Loss, then one gradient per parameter. */
  final Operation gradients;
  /** Every state variable's new value (in {@link TrainState#all} order), then finite, applied, the telemetry. */
  final Operation apply;

  /** Builds both functions and their calls, over the inputs and gradient placeholders of {@code functions}. */
  StatelessFunctions(Graph graph, TrainState state, StepFunctions functions) {
    String name = functions.spec.name();
    boolean jit = functions.spec.jit();
    Map<String, Placeholder<?>> outerInputs = functions.inputs;
    this.state = state;
    this.functions = functions;
    this.valueKeys = GradientKeys.of(FisherTrainStep.VARIABLE_PREFIX, state.all());
    Ops feed = Ops.create(graph).withSubScope(name + "_stateless");
    for (ResourceVariable<?> v : state.all()) {
      String key = valueKeys.get(v.name());
      valueInputs.put(key, feed.withName(key).placeholder(v.type(), Placeholder.shape(v.shape())));
    }
    List<Output<?>> gradArgs = new ArrayList<>();
    outerInputs.values().forEach(p -> gradArgs.add(p.asOutput()));
    state.parameters().forEach(p -> gradArgs.add(valueInputs.get(valueKeys.get(p.name())).asOutput()));
    this.gradients = FunctionCalls.call(graph.baseScope(), name + "_" + FisherTrainStep.STATELESS_GRADIENTS,
        ConcreteFunction.create(this::gradientsBody), gradArgs, jit);
    List<Output<?>> applyArgs = new ArrayList<>();
    valueInputs.values().forEach(p -> applyArgs.add(p.asOutput()));
    functions.gradientInputs.values().forEach(p -> applyArgs.add(p.asOutput()));
    this.apply = FunctionCalls.call(graph.baseScope(), name + "_" + FisherTrainStep.STATELESS_APPLY,
        ConcreteFunction.create(this::applyBody), applyArgs, jit);
  }

  /** Arguments and outputs inside a function, named so that their order is the order added. */
  private static final class Args {
    private final Ops fn;
    private final Signature.Builder sig;
    private int in;
    private int out;

    Args(Ops fn, String key) {
      this.fn = fn;
      this.sig = Signature.builder().key(key);
    }

    Placeholder<?> input(Class<? extends TType> type, org.tensorflow.ndarray.Shape shape) {
      String k = String.format("a%05d", in++);
      Placeholder<?> p = fn.withName(k).placeholder(type, Placeholder.shape(shape));
      sig.input(k, p);
      return p;
    }

    void output(Operand<?> value) {
      sig.output(String.format("o%05d", out++), value);
    }
  }

  /** The train inputs and each parameter's value → loss, then each parameter's gradient. */
  private Signature gradientsBody(Ops fn) {
    Args a = new Args(fn, "stateless_gradients");
    Map<String, Operand<?>> in = new LinkedHashMap<>();
    functions.inputs.forEach((n, p) -> in.put(n, a.input(p.type(), p.shape())));
    Map<ResourceVariable<?>, Operand<?>> values = new LinkedHashMap<>();
    state.parameters().forEach(p -> values.put(p, a.input(p.type(), p.shape())));
    StepFunctions.Forward forward = functions.forwardOf(fn, in, values);
    a.output(fn.dtypes.cast(forward.loss(), TFloat32.class));
    for (Output<?> g : forward.gradients()) {
      a.output(fn.identity(g));
    }
    return a.sig.build();
  }

  /** Every state variable's value and each gradient → every new value, then finite, applied. */
  private Signature applyBody(Ops fn) {
    Args a = new Args(fn, "stateless_apply");
    Map<ResourceVariable<?>, StateVar.Value> values = new IdentityHashMap<>();
    for (ResourceVariable<?> v : state.all()) {
      values.put(v, new StateVar.Value(a.input(v.type(), v.shape())));
    }
    List<Operand<?>> grads = new ArrayList<>();
    for (ResourceVariable<?> p : state.parameters()) {
      grads.add(a.input(p.type(), p.shape()));
    }
    StepFunctions.Next step = functions.next(fn, grads, values::get, null);
    Map<StateVar, Operand<?>> next = new IdentityHashMap<>();
    for (int i = 0; i < step.values().size(); i++) {
      next.put(step.vars().get(i), step.values().get(i));
    }
    for (ResourceVariable<?> v : state.all()) {
      StateVar.Value var = values.get(v);
      // A variable the step does not write (skipped_steps outside SKIP) leaves as it came in.
      a.output(fn.identity(next.getOrDefault(var, var.value())));
    }
    a.output(Updater.allTrue(fn, step.finite()));
    a.output(fn.identity(step.applied()));
    step.telemetry().outputs().forEach(t -> a.output(fn.identity(t)));
    return a.sig.build();
  }

  /** The {@value FisherTrainStep#STATELESS_GRADIENTS} signature. */
  Signature gradientsSignature() {
    Signature.Builder s = Signature.builder().key(FisherTrainStep.STATELESS_GRADIENTS);
    functions.inputs.forEach(s::input);
    state.parameters().forEach(p -> {
      String key = valueKeys.get(p.name());
      s.input(key, valueInputs.get(key));
    });
    s.output(FisherTrainStep.LOSS, gradients.output(0));
    int i = 1;
    for (String key : functions.keys.values()) {
      s.output(key, gradients.output(i++));
    }
    return s.build();
  }

  /** The {@value FisherTrainStep#STATELESS_APPLY} signature. */
  Signature applySignature() {
    Signature.Builder s = Signature.builder().key(FisherTrainStep.STATELESS_APPLY);
    valueInputs.forEach(s::input);
    functions.gradientInputs.forEach(s::input);
    int i = 0;
    for (String key : valueInputs.keySet()) {
      s.output(key, apply.output(i++));
    }
    s.output(FisherTrainStep.FINITE, apply.output(i)).output(FisherTrainStep.APPLIED, apply.output(i + 1));
    for (int t = 0; t < StepTelemetry.NAMES.size(); t++) {
      s.output(StepTelemetry.NAMES.get(t), apply.output(i + 2 + t));
    }
    return s.build();
  }
}
