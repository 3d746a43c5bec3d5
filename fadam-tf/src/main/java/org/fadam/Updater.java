package org.fadam;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.tensorflow.Operand;
import org.tensorflow.ndarray.Shape;
import org.tensorflow.op.Op;
import org.tensorflow.op.Ops;
import org.tensorflow.op.core.NoOp;
import org.tensorflow.types.TBool;
import org.tensorflow.types.TInt64;
import org.tensorflow.types.family.TFloating;
import org.tensorflow.types.family.TType;

/**
 * Builds one optimizer step over many variables from {@link Rule}: reads every variable and slot,
 * computes every new value, applies the non-finite policy, and only then writes, so that every
 * read (the step counters' included) happens before any write of the same run. Used as is by the
 * ref-variable optimizers and by the fused resource-variable train step.
 */
final class Updater {

  /** One variable to update: its gradient, how to reach it, and its slots. */
  record Target(
      String name,
      Shape shape,
      Class<? extends TType> paramType,
      Operand<? extends TType> gradient,
      StateVar param,
      Map<String, StateVar> slots,
      StateVar step) {

    Target {
      if (shape.isUnknown() || shape.hasUnknownDimension()) {
        throw new IllegalArgumentException(
            "variable '" + name + "' must have a fully defined shape; got " + shape);
      }
      Shape gs = gradient.shape();
      if (gs.numDimensions() >= 0 && !gs.isCompatibleWith(shape)) {
        throw new IllegalArgumentException(
            "gradient of variable '" + name + "' has shape " + gs + ", the variable " + shape);
      }
    }
  }

  private Updater() {}

  /** The built step: the op that runs it, and whether each target's gradient was finite. */
  record Step(Op op, List<Operand<TBool>> finite) {}

  /**
   * The step as one op named {@code name}. Under SKIP and ERROR a non-finite gradient leaves
   * every variable and slot as it was; ERROR also fails the run with an assertion naming the
   * variable (XLA drops assertions: the fused step reports {@link Step#finite} instead).
   *
   * @param skipped the {@code skipped_steps} counter (int64 scalar), incremented under SKIP
   * @param assertOnError under ERROR, fail the run with an assertion (false where the caller
   *     reports {@link Step#finite} itself, as the XLA step must)
   */
  static Step build(
      Ops tf,
      Rule rule,
      FisherOptions options,
      LearningRate lr,
      List<Target> targets,
      StateVar skipped,
      String name,
      boolean assertOnError) {
    List<Pending<?>> pending = new ArrayList<>();
    for (Target target : targets) {
      pending.add(compute(Kernels.forParameter(tf, target.paramType()), rule, options, lr, target));
    }

    List<Op> before = new ArrayList<>();
    Operand<TBool> allFinite = null;
    if (options.nonFinite() != FisherOptions.NonFinitePolicy.PROPAGATE) {
      for (Pending<?> p : pending) {
        allFinite = allFinite == null ? p.finite() : tf.math.logicalAnd(allFinite, p.finite());
        if (assertOnError && options.nonFinite() == FisherOptions.NonFinitePolicy.ERROR) {
          before.add(
              tf.assertThat(
                  p.finite(),
                  List.of(
                      tf.constant(
                          "non-finite gradient (NaN, Inf, or a sum of squares that overflows) for"
                              + " variable `"
                              + p.target.name()
                              + "`"))));
        }
      }
    }
    boolean keep = allFinite != null;

    // Every new value, chosen by the policy, before any write.
    List<Operand<?>> values = new ArrayList<>();
    List<StateVar> vars = new ArrayList<>();
    for (Pending<?> p : pending) {
      p.collect(tf, keep ? allFinite : null, values, vars);
    }
    if (skipped != null && options.nonFinite() == FisherOptions.NonFinitePolicy.SKIP) {
      Operand<TInt64> count = tf.dtypes.cast(skipped.read(tf), TInt64.class);
      Operand<TInt64> one = tf.select(allFinite, tf.constant(0L), tf.constant(1L));
      values.add(tf.math.add(count, one));
      vars.add(skipped);
    }
    for (Operand<?> v : values) {
      before.add(v::op);
    }
    Ops after = tf.withControlDependencies(before);
    List<Op> writes = new ArrayList<>();
    for (int i = 0; i < values.size(); i++) {
      writes.add(vars.get(i).write(after, values.get(i)));
    }
    List<Operand<TBool>> finite = new ArrayList<>();
    pending.forEach(p -> finite.add(p.finite()));
    return new Step(
        NoOp.create(tf.scope().env().baseScope().withName(name).withControlDependencies(writes)),
        finite);
  }

  /** Reads a target's state, runs the rule, and keeps the results with their old values. */
  private static <W extends TFloating> Pending<W> compute(
      Kernels<W> k, Rule rule, FisherOptions options, LearningRate lr, Target target) {
    Ops tf = k.tf;
    Operand<W> theta = k.cast(target.param().read(tf));
    Map<String, Operand<W>> slots = new LinkedHashMap<>();
    target.slots().forEach((slot, v) -> slots.put(slot, k.cast(v.read(tf))));
    Operand<TInt64> step = tf.dtypes.cast(target.step().read(tf), TInt64.class);
    Rule.Result<W> r =
        rule.step(k, options, lr.in(k), step, theta, k.cast(target.gradient()), slots, target.shape());
    Operand<TInt64> newStep = tf.math.add(step, tf.constant(1L)); // l.4: t ← t + 1
    return new Pending<>(target, theta, slots, step, r, newStep);
  }

  /** A computed but not yet written step of one variable. */
  private record Pending<W extends TFloating>(
      Target target,
      Operand<W> oldTheta,
      Map<String, Operand<W>> oldSlots,
      Operand<TInt64> oldStep,
      Rule.Result<W> result,
      Operand<TInt64> newStep) {

    Operand<TBool> finite() {
      return result.finite();
    }

    /** Adds (value, variable) pairs; with {@code keep} the old values are chosen when false. */
    void collect(Ops tf, Operand<TBool> keep, List<Operand<?>> values, List<StateVar> vars) {
      Operand<W> theta = choose(tf, keep, result.theta(), oldTheta);
      values.add(theta.type() == target.paramType() ? theta : tf.dtypes.cast(theta, target.paramType()));
      vars.add(target.param());
      result.slots().forEach((slot, v) -> {
        values.add(choose(tf, keep, v, oldSlots.get(slot)));
        vars.add(target.slots().get(slot));
      });
      values.add(choose(tf, keep, newStep, oldStep));
      vars.add(target.step());
    }

    private static <X extends TType> Operand<X> choose(
        Ops tf, Operand<TBool> keep, Operand<X> updated, Operand<X> old) {
      return keep == null ? updated : tf.select(keep, updated, old);
    }
  }
}
