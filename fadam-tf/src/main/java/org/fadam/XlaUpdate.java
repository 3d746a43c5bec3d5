package org.fadam;

import java.util.ArrayList;
import java.util.List;
import org.tensorflow.ConcreteFunction;
import org.tensorflow.Operand;
import org.tensorflow.Operation;
import org.tensorflow.Output;
import org.tensorflow.Signature;
import org.tensorflow.ndarray.Shape;
import org.tensorflow.op.Op;
import org.tensorflow.op.Ops;
import org.tensorflow.op.core.Placeholder;
import org.tensorflow.types.TBool;
import org.tensorflow.types.TInt64;
import org.tensorflow.types.family.TNumber;
import org.tensorflow.types.family.TType;

/**
 * The drop-in optimizers' step on ref variables, computed by one XLA-compiled function of
 * {@link Rule}: the variables, slots, counters and gradients are read in the graph and passed in,
 * {@link Updater#plan} computes every new value inside the function, and the values coming out
 * are assigned to the ref variables (XLA cannot touch ref variables itself: docs/design.md, "TF Java 1.1.0 facts"). Under ERROR
 * the assertions run outside the function, before any assignment (XLA drops assertions).
 */
final class XlaUpdate {

  private XlaUpdate() {}

  /**
   * The step as one op named {@code name}.
   *
   * @param iterations the optimizer's step counter (int64 scalar) whose read {@link
   *     LearningRate#steps()} the spec's schedule takes η_t from, advanced by one with the step's
   *     writes; null where η is not a schedule
   * @param telemetry receives the step's telemetry outputs by {@link StepTelemetry#NAMES} name
   *     (outputs of the same call: fetched with the step, they come from that step)
   */
  static Op build(Ops tf, Updater.Spec spec, List<Updater.Target> targets, StateVar skipped,
      StateVar iterations, String name, java.util.Map<String, Output<?>> telemetry) {
    LearningRate lr = spec.learningRate();
    if ((iterations == null) != (lr.schedule() == null)) {
      throw new IllegalStateException("a step counter goes with a schedule: " + iterations + ", " + lr);
    }
    List<Output<?>> args = new ArrayList<>();
    List<StateVar> vars = new ArrayList<>();
    int[] planned = new int[2];
    ConcreteFunction fn = ConcreteFunction.create(f -> {
      Signature.Builder sig = Signature.builder().key(name);
      Inputs in = new Inputs(f, sig, args);
      List<Updater.Target> inner = new ArrayList<>();
      for (Updater.Target t : targets) {
        java.util.Map<String, StateVar> slots = new java.util.LinkedHashMap<>();
        t.slots().forEach((slot, v) -> slots.put(slot, in.state(tf, v)));
        Operand<?> g = in.value(t.gradient().asOutput(), t.shape());
        inner.add(new Updater.Target(t.name(), t.shape(), t.paramType(), g,
            in.state(tf, t.param()), slots, in.state(tf, t.step()), t.decayed()));
      }
      LearningRate innerLr = lr.schedule() != null
          // t passed in, η_t computed inside, in each parameter's working dtype
          ? LearningRate.of(lr.schedule(), int64(in.value(lr.steps().asOutput(), Shape.scalar())))
          : lr.operand() == null
          ? lr
          : LearningRate.of(numeric(in.value(lr.operand().asOutput(), Shape.scalar())));
      StateVar innerSkipped = skipped == null ? null : in.state(tf, skipped);
      Operand<? extends TNumber> innerDecay = spec.weightDecay() == null
          ? null
          : numeric(in.value(spec.weightDecay().asOutput(), Shape.scalar()));
      Updater inside = new Updater(
          new Updater.Spec(spec.algorithm(), spec.options(), innerLr, innerDecay), true);
      Updater.Plan plan = inside.plan(f, inner, innerSkipped);
      List<Operand<?>> outputs = new ArrayList<>(plan.values());
      if (spec.options().nonFinite() == FisherOptions.NonFinitePolicy.ERROR) {
        outputs.addAll(plan.finite()); // only ERROR's checks read them
      }
      planned[1] = outputs.size();
      outputs.addAll(plan.telemetry().outputs()); // scalars; read only where fetched
      for (int k = 0; k < outputs.size(); k++) {
        sig.output(String.format("o%05d", k), outputs.get(k)); // names sort in output order
      }
      plan.vars().forEach(v -> vars.add(in.outer.get(v)));
      planned[0] = plan.values().size();
      return sig.build();
    });
    Operation call = FunctionCalls.call(tf.scope(), name + "_xla", fn, args, true);
    List<Output<?>> values = new ArrayList<>();
    List<Operand<TBool>> finite = new ArrayList<>();
    for (int i = 0; i < call.numOutputs(); i++) {
      if (i < planned[0]) {
        values.add(call.output(i));
      } else if (i < planned[1]) {
        finite.add(call.output(i));
      } else {
        telemetry.put(StepTelemetry.NAMES.get(i - planned[1]), call.output(i));
      }
    }
    if (iterations != null) {
      values.add(tf.math.add(lr.steps(), tf.constant(1L)).asOutput()); // t ← t + 1, written after every read
      vars.add(iterations);
    }
    List<Op> checks = new Updater(spec, false).checks(tf, targets, finite);
    return Updater.write(tf, values, vars, checks, name);
  }

  @SuppressWarnings("unchecked")
  private static Operand<TInt64> int64(Operand<?> x) {
    return (Operand<TInt64>) x;
  }

  @SuppressWarnings("unchecked")
  private static Operand<? extends TNumber> numeric(Operand<?> x) {
    return (Operand<? extends TNumber>) x;
  }

  /** The function's arguments: one placeholder per outer value, in the order of {@code args}. */
  private static final class Inputs {
    final Ops f;
    final Signature.Builder sig;
    final List<Output<?>> args;
    /** Inner read-only state → the outer variable it stands for. */
    final java.util.Map<StateVar, StateVar> outer = new java.util.IdentityHashMap<>();

    Inputs(Ops f, Signature.Builder sig, List<Output<?>> args) {
      this.f = f;
      this.sig = sig;
      this.args = args;
    }

    /** A placeholder inside the function for {@code value} of the outer graph. */
    Operand<?> value(Output<?> value, Shape shape) {
      String key = String.format("a%05d", args.size()); // names sort in argument order
      Placeholder<?> p = f.withName(key).placeholder(value.type(), Placeholder.shape(shape));
      sig.input(key, p);
      args.add(value);
      return p;
    }

    /** A variable read in the outer graph, passed in; its new value leaves as an output. */
    StateVar state(Ops outerOps, StateVar v) {
      Output<?> read = v.read(outerOps).asOutput();
      Operand<?> inside = value(read, read.shape());
      StateVar arg = new StateVar.Value(inside);
      outer.put(arg, v);
      return arg;
    }
  }

}
