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
import org.tensorflow.op.Op;
import org.tensorflow.op.Ops;
import org.tensorflow.op.core.Placeholder;
import org.tensorflow.types.TFloat32;

/**
 * The XLA step as Java's {@code train} (and {@code applyGradients}) runs it: the session graph reads every state variable,
 * passes the values to one compiled function (the same {@link StepFunctions#forwardOf forward
 * pass} and {@link StepFunctions#next plan} as every other signature), and assigns the new values
 * it returns (docs/design.md, "The in-session XLA step").
 *
 * <p>Why not the {@code train} function over handles, which the export keeps: XLA updates a
 * handle's variable in place, so a fused pass reads and writes the same buffer; TF 2.18's XLA CPU
 * runtime passes the two as separate pointers, LLVM's overlap check fails and the pass runs its
 * scalar loop. Over values, every output is a fresh buffer and the passes run vectorised; TF's
 * {@code AssignVariableOp} then takes the buffer over without a copy. The cost is that the old and
 * the new state are both alive while the step runs.
 */
final class ValueStep {

  /**
   * Loss (the whole step only), step, finite (per parameter), applied, then the telemetry, each
   * available only once every new value is assigned (so fetching any of them runs the step).
   */
  final List<Output<?>> outputs;
  /** The compiled function's name (its HLO module in an XLA dump carries it). */
  final String functionName;

  /**
   * Builds the function, its call and the assignments in {@code graph}.
   *
   * @param whole the whole step (inputs → loss, step, finite, applied, the telemetry), or else its
   *     second half (each parameter's gradient → step, finite, applied, the telemetry)
   */
  ValueStep(Graph graph, TrainState state, StepFunctions functions, boolean whole) {
    String name = functions.spec.name() + (whole ? "_values" : "_apply_values");
    Map<String, Placeholder<?>> feeds = whole ? functions.inputs : functions.gradientInputs;
    List<ResourceVariable<?>> all = state.all();
    List<StateVar> written = new ArrayList<>();
    ConcreteFunction core = ConcreteFunction.create(fn -> body(fn, name, feeds, whole, state, functions, written));
    Ops tf = Ops.create(graph).withSubScope(name);
    List<Output<?>> args = new ArrayList<>();
    feeds.values().forEach(p -> args.add(p.asOutput()));
    all.forEach(v -> args.add(v.read(tf).asOutput()));
    Operation call = FunctionCalls.call(graph.baseScope(), name, core, args, true);
    int results = (whole ? StepFunctions.TRAIN_TELEMETRY : StepFunctions.APPLY_TELEMETRY)
        + StepTelemetry.NAMES.size();
    Map<StateVar, ResourceVariable<?>> byArg = new IdentityHashMap<>();
    for (int i = 0; i < all.size(); i++) {
      byArg.put(arguments.get(i), all.get(i));
    }
    List<Op> assigns = new ArrayList<>();
    for (int i = 0; i < written.size(); i++) {
      assigns.add(byArg.get(written.get(i)).assign(tf, call.output(results + i)));
    }
    Ops done = tf.withControlDependencies(assigns);
    List<Output<?>> out = new ArrayList<>();
    for (int i = 0; i < results; i++) {
      out.add(done.identity(call.output(i)).asOutput());
    }
    this.outputs = List.copyOf(out);
    this.functionName = core.getDefinedName();
  }

  /** The state variables' value arguments, in {@link TrainState#all} order (set by {@link #body}). */
  private final List<StateVar> arguments = new ArrayList<>();

  /**
   * The feeds (inputs, or gradients) and every state variable's value → the results (see {@link
   * #outputs}), then the new value of each variable the step writes (their variables, in order, go
   * to {@code written}).
   */
  private Signature body(Ops fn, String name, Map<String, Placeholder<?>> feeds, boolean whole,
      TrainState state, StepFunctions functions, List<StateVar> written) {
    Signature.Builder sig = Signature.builder().key(name);
    Map<String, Operand<?>> in = new LinkedHashMap<>();
    feeds.forEach((key, p) -> {
      Placeholder<?> a = fn.withName(key).placeholder(p.type(), Placeholder.shape(p.shape()));
      sig.input(key, a);
      in.put(key, a);
    });
    Map<ResourceVariable<?>, StateVar.Value> values = new IdentityHashMap<>();
    int n = 0;
    for (ResourceVariable<?> v : state.all()) {
      String key = String.format("v%05d", n++);
      Placeholder<?> a = fn.withName(key).placeholder(v.type(), Placeholder.shape(v.shape()));
      sig.input(key, a);
      StateVar.Value value = new StateVar.Value(a);
      values.put(v, value);
      arguments.add(value);
    }
    List<Output<?>> out = new ArrayList<>();
    StepFunctions.Next next;
    if (whole) {
      Map<ResourceVariable<?>, Operand<?>> params = new LinkedHashMap<>();
      state.parameters().forEach(p -> params.put(p, values.get(p).value()));
      StepFunctions.Forward forward = functions.forwardOf(fn, in, params);
      // the loss tie (StepFunctions.updater) pays here too: without it the probe measured 2.28–2.37×
      // framework Adam against 2.01–2.09× with it (4096², 2026-12-03), XLA then scheduling the loss late
      next = functions.next(fn, List.of(forward.gradients()), values::get, forward.loss());
      out.add(fn.dtypes.cast(forward.loss(), TFloat32.class).asOutput());
    } else {
      next = functions.next(fn, List.copyOf(in.values()), values::get, null);
    }
    out.add(next.iterations().asOutput());
    out.add(fn.stack(next.finite()).asOutput());
    out.add(next.applied().asOutput());
    next.telemetry().outputs().forEach(t -> out.add(t.asOutput()));
    for (int i = 0; i < next.values().size(); i++) {
      out.add(next.values().get(i).asOutput());
      written.add(next.vars().get(i));
    }
    for (int i = 0; i < out.size(); i++) {
      sig.output(String.format("o%05d", i), fn.identity(out.get(i)));
    }
    return sig.build();
  }
}
