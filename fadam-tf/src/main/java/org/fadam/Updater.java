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
import org.tensorflow.types.TFloat32;
import org.tensorflow.types.TInt64;
import org.tensorflow.types.family.TFloating;
import org.tensorflow.types.family.TNumber;
import org.tensorflow.types.family.TType;

/**
 * Builds one optimizer step over many variables from {@link Rule}: reads every variable and slot,
 * computes every new value, folds the non-finite policy into each tensor's {@link StepScalars},
 * and only then writes, so that every read (the step counters' included) happens before any write
 * of the same run. Used as is by the ref-variable optimizers and by the fused resource-variable
 * train step.
 */
final class Updater {

  /**
   * What every step of one optimizer computes.
   *
   * @param algorithm the algorithm
   * @param options its options
   * @param learningRate η_t
   * @param weightDecay λ as a graph scalar (a run-time hyperparameter), or null for the options'
   *     constant λ
   */
  record Spec(
      Algorithm algorithm, FisherOptions options, LearningRate learningRate,
      Operand<? extends TNumber> weightDecay) {

    /** A spec whose λ is the options' constant. */
    Spec(Algorithm algorithm, FisherOptions options, LearningRate learningRate) {
      this(algorithm, options, learningRate, null);
    }

    /** λ of a decayed tensor in W, or null where the tensor has no decay term. */
    <W extends TFloating> Operand<W> lambda(Kernels<W> k, boolean decayed) {
      if (!decayed || (weightDecay == null && options.weightDecay() == 0)) {
        return null;
      }
      return weightDecay == null ? k.c(options.weightDecay()) : k.cast(weightDecay);
    }
  }

  /**
   * One variable to update: its gradient, how to reach it, and its slots.
   *
   * @param name the variable's name (in errors)
   * @param shape its static shape
   * @param paramType its dtype
   * @param gradient its gradient
   * @param param the variable
   * @param slots its float slots by name
   * @param step its step counter (int64)
   * @param decayed whether the weight decay applies to it (a weight-decay mask's verdict)
   * @param gradientSquared the g² that feeds the Fisher EMA, or null for the gradient's square
   *     (see {@link Rule.Input#gSquared})
   */
  record Target(
      String name,
      Shape shape,
      Class<? extends TType> paramType,
      Operand<? extends TType> gradient,
      StateVar param,
      Map<String, StateVar> slots,
      StateVar step,
      boolean decayed,
      Operand<? extends TType> gradientSquared) {

    /** A target whose Fisher EMA takes the square of its gradient. */
    Target(String name, Shape shape, Class<? extends TType> paramType, Operand<? extends TType> gradient,
        StateVar param, Map<String, StateVar> slots, StateVar step, boolean decayed) {
      this(name, shape, paramType, gradient, param, slots, step, decayed, null);
    }

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

  /**
   * Every new value and the variable it goes to, computed from reads only.
   *
   * @param values the new values
   * @param vars the variable each value goes to
   * @param finite whether each target's gradient was finite
   * @param telemetry what the step reports about itself
   */
  record Plan(List<Operand<?>> values, List<StateVar> vars, List<Operand<TBool>> finite,
      Telemetry telemetry) {

    /** Whether every target's gradient was finite. */
    Operand<TBool> allFinite(Ops tf) {
      return allTrue(tf, finite);
    }
  }

  /**
   * The graph form of {@link StepTelemetry}: float32 scalars (the counter int64), every one from
   * scalars the step already has (docs/design.md, "Step telemetry").
   *
   * @param gradRms RMS of all gradients together
   * @param clippedNatural fraction of parameters whose ḡ was clipped
   * @param clippedDecay fraction of parameters whose ḡw was clipped
   * @param epsFloor fraction of parameters whose ε̂ took ε2·RMS(g)
   * @param skipped the skipped-steps counter after the step
   * @param learningRate η_t
   */
  record Telemetry(Operand<TFloat32> gradRms, Operand<TFloat32> clippedNatural,
      Operand<TFloat32> clippedDecay, Operand<TFloat32> epsFloor, Operand<TInt64> skipped,
      Operand<TFloat32> learningRate) {

    /** The values in {@link StepTelemetry#NAMES} order. */
    List<Operand<?>> outputs() {
      return List.of(gradRms, clippedNatural, clippedDecay, epsFloor, skipped, learningRate);
    }

    /** The values of {@link #outputs} fetched, in that order, starting at {@code first}. */
    static StepTelemetry read(org.tensorflow.Result out, int first) {
      return new StepTelemetry(
          ((TFloat32) out.get(first)).getFloat(), ((TFloat32) out.get(first + 1)).getFloat(),
          ((TFloat32) out.get(first + 2)).getFloat(), ((TFloat32) out.get(first + 3)).getFloat(),
          ((TInt64) out.get(first + 4)).getLong(), ((TFloat32) out.get(first + 5)).getFloat());
    }
  }

  /**
   * One tensor's share of the telemetry, all scalars.
   *
   * @param size the element count
   * @param sumSq Σg², in float32
   * @param clippedNatural whether ḡ was clipped
   * @param clippedDecay whether ḡw was clipped, or null where there is no clipped decay term
   * @param epsFloor whether ε̂ took ε2·RMS(g), or null without an adaptive ε
   * @param eta η_t in float32
   */
  private record Share(long size, Operand<TFloat32> sumSq, Operand<TBool> clippedNatural,
      Operand<TBool> clippedDecay, Operand<TBool> epsFloor, Operand<TFloat32> eta) {}

  private final Spec spec;
  /** Whether the step will be XLA-compiled (the sums take XLA's fused forms). */
  private final boolean xla;

  Updater(Spec spec, boolean xla) {
    this.spec = spec;
    this.xla = xla;
  }

  /** Whether every flag is true (true for none). */
  static Operand<TBool> allTrue(Ops tf, List<Operand<TBool>> flags) {
    Operand<TBool> all = null;
    for (Operand<TBool> f : flags) {
      all = all == null ? f : tf.math.logicalAnd(all, f);
    }
    return all == null ? tf.constant(true) : all;
  }

  /** The error of a non-finite gradient under ERROR, naming the variable. */
  static String nonFiniteMessage(String variable) {
    return "non-finite gradient (NaN, Inf, or a sum of squares that overflows) for variable `"
        + variable + "`";
  }

  /**
   * The step as one op named {@code name}; under SKIP and ERROR a non-finite gradient leaves every
   * variable and slot as it was, and under ERROR an assertion fails the run naming the variable
   * (the graph path: XLA drops assertions, so a compiled step reports {@link Plan#finite} instead).
   *
   * @param skipped the {@code skipped_steps} counter (int64 scalar), incremented under SKIP
   */
  Op buildAsserting(Ops tf, List<Target> targets, StateVar skipped, String name) {
    Plan plan = plan(tf, targets, skipped);
    return write(tf, plan.values(), plan.vars(), checks(tf, targets, plan.finite()), name);
  }

  /** The step's new values, with the policy folded in, before any write. */
  Plan plan(Ops tf, List<Target> targets, StateVar skipped) {
    return plan(tf, targets, skipped, null);
  }

  /**
   * The step's new values, with the policy folded in, before any write; where {@code gate} is
   * false the step leaves every variable as it was, as a skipped step does, without counting a
   * skip (gradient accumulation between its applied steps).
   *
   * @param gate whether the step is taken, or null for always
   */
  Plan plan(Ops tf, List<Target> targets, StateVar skipped, Operand<TBool> gate) {
    FisherOptions options = spec.options();
    boolean policy = options.nonFinite() != FisherOptions.NonFinitePolicy.PROPAGATE;
    List<Pending<?>> pending = new ArrayList<>();
    for (Target target : targets) {
      pending.add(read(Kernels.forParameter(tf, target.paramType(), xla), target));
    }
    List<Operand<TBool>> finite = new ArrayList<>();
    pending.forEach(p -> finite.add(p.finite()));
    Operand<TBool> allFinite = policy ? allTrue(tf, finite) : null;
    Operand<TBool> keep = gate == null ? allFinite
        : allFinite == null ? gate : tf.math.logicalAnd(gate, allFinite);
    List<Operand<?>> values = new ArrayList<>();
    List<StateVar> vars = new ArrayList<>();
    List<Share> shares = new ArrayList<>();
    for (Pending<?> p : pending) {
      shares.add(p.collect(spec, keep, values, vars));
    }
    Operand<TInt64> skippedAfter = tf.constant(0L);
    if (skipped != null) {
      skippedAfter = tf.dtypes.cast(skipped.read(tf), TInt64.class);
    }
    if (skipped != null && options.nonFinite() == FisherOptions.NonFinitePolicy.SKIP) {
      Operand<TBool> skip = tf.math.logicalNot(allFinite);
      if (gate != null) {
        skip = tf.math.logicalAnd(gate, skip);
      }
      skippedAfter = tf.math.add(skippedAfter, tf.select(skip, tf.constant(1L), tf.constant(0L)));
      values.add(skippedAfter);
      vars.add(skipped);
    }
    return new Plan(values, vars, finite, telemetry(tf, shares, keep, skippedAfter));
  }

  /**
   * The step's telemetry from every tensor's scalars: a handful of ops on vectors of one scalar per
   * tensor, however many tensors there are (docs/design.md, "Step telemetry").
   */
  private static Telemetry telemetry(
      Ops tf, List<Share> shares, Operand<TBool> keep, Operand<TInt64> skipped) {
    long total = 0;
    List<Operand<TFloat32>> sumSq = new ArrayList<>();
    for (Share s : shares) {
      total += s.size();
      sumSq.add(s.sumSq());
    }
    double n = Math.max(total, 1);
    // sqrt(Σ_tensors Σg² / Σ_tensors n)
    Operand<TFloat32> gradRms = tf.math.sqrt(tf.math.div(
        tf.sum(tf.stack(sumSq), tf.constant(0)), tf.constant((float) n)));
    Operand<TFloat32> eta = shares.isEmpty() ? tf.constant(0f) : shares.get(0).eta();
    return new Telemetry(gradRms,
        fraction(tf, shares, Share::clippedNatural, keep, n),
        fraction(tf, shares, Share::clippedDecay, keep, n),
        fraction(tf, shares, Share::epsFloor, keep, n),
        skipped, eta);
  }

  /**
   * Σ size·[flag] / n over the tensors that have the flag (a tensor without it counts as false),
   * and 0 where the step is not applied ({@code keep} false).
   */
  private static Operand<TFloat32> fraction(Ops tf, List<Share> shares,
      java.util.function.Function<Share, Operand<TBool>> flagOf, Operand<TBool> keep, double n) {
    List<Operand<TBool>> flags = new ArrayList<>();
    List<Float> weights = new ArrayList<>();
    for (Share s : shares) {
      Operand<TBool> flag = flagOf.apply(s);
      if (flag != null) {
        flags.add(flag);
        weights.add((float) (s.size() / n));
      }
    }
    if (flags.isEmpty()) {
      return tf.constant(0f);
    }
    float[] w = new float[weights.size()];
    for (int i = 0; i < w.length; i++) {
      w[i] = weights.get(i);
    }
    Operand<TFloat32> on = tf.dtypes.cast(tf.stack(flags), TFloat32.class);
    Operand<TFloat32> f = tf.sum(tf.math.mul(on, tf.constant(w)), tf.constant(0));
    return keep == null ? f : tf.select(keep, f, tf.constant(0f));
  }

  /** Under ERROR, an assertion per target that fails the run naming the variable. */
  List<Op> checks(Ops tf, List<Target> targets, List<Operand<TBool>> finite) {
    List<Op> out = new ArrayList<>();
    if (spec.options().nonFinite() == FisherOptions.NonFinitePolicy.ERROR) {
      for (int i = 0; i < targets.size(); i++) {
        out.add(tf.assertThat(finite.get(i),
            List.of(tf.constant(nonFiniteMessage(targets.get(i).name())))));
      }
    }
    return out;
  }

  /** Writes every value after every value (and check) is computed, as one op named {@code name}. */
  static Op write(
      Ops tf, List<? extends Operand<?>> values, List<StateVar> vars, List<Op> checks, String name) {
    List<Op> before = new ArrayList<>(checks);
    for (Operand<?> v : values) {
      before.add(v::op);
    }
    Ops after = tf.withControlDependencies(before);
    List<Op> writes = new ArrayList<>();
    for (int i = 0; i < values.size(); i++) {
      writes.add(vars.get(i).write(after, values.get(i)));
    }
    return NoOp.create(tf.scope().env().baseScope().withName(name).withControlDependencies(writes));
  }

  /** Reads a target's state and gradient, and the gradient's sums where needed. */
  private <W extends TFloating> Pending<W> read(Kernels<W> k, Target target) {
    Ops tf = k.tf;
    Operand<W> theta = k.cast(target.param().read(tf));
    Map<String, Operand<W>> slots = new LinkedHashMap<>();
    Map<String, Class<? extends TType>> slotTypes = new LinkedHashMap<>();
    target.slots().forEach((slot, v) -> {
      Operand<? extends TType> stored = v.read(tf);
      slotTypes.put(slot, stored.type());
      slots.put(slot, k.cast(stored));
    });
    Operand<TInt64> step = tf.dtypes.cast(target.step().read(tf), TInt64.class);
    Operand<W> g = k.cast(target.gradient());
    Operand<W> sq = target.gradientSquared() == null ? null : k.cast(target.gradientSquared());
    // Σg² always: the policy and the adaptive ε read it, and every step reports finiteness
    Kernels.Stats stats = k.stats(g, target.shape());
    // with Eq. 20's g² the step is finite only where that is too (a square can overflow alone)
    Operand<TBool> finite = sq == null ? stats.finite()
        : tf.math.logicalAnd(stats.finite(), tf.reduceAll(tf.math.isFinite(sq), allAxes(tf, target.shape())));
    return new Pending<>(k, target, theta, slots, slotTypes, step, g, sq, stats, finite);
  }

  /** Every axis of a tensor of this shape (a scalar has none). */
  private static Operand<org.tensorflow.types.TInt32> allAxes(Ops tf, Shape shape) {
    int[] axes = new int[shape.numDimensions()];
    for (int i = 0; i < axes.length; i++) {
      axes[i] = i;
    }
    return tf.constant(axes);
  }

  /** A read but not yet computed step of one variable. */
  private record Pending<W extends TFloating>(
      Kernels<W> k,
      Target target,
      Operand<W> theta,
      Map<String, Operand<W>> slots,
      Map<String, Class<? extends TType>> slotTypes,
      Operand<TInt64> step,
      Operand<W> gradient,
      Operand<W> gradientSquared,
      Kernels.Stats stats,
      Operand<TBool> finite) {

    /**
     * Runs the rule and adds (value, variable) pairs; {@code keep} is null where every step is
     * taken. Returns the tensor's share of the telemetry.
     */
    Share collect(Spec spec, Operand<TBool> keep, List<Operand<?>> values, List<StateVar> vars) {
      Ops tf = k.tf;
      Shape shape = target.shape();
      Operand<TInt64> next = tf.math.add(step, tf.constant(1L)); // l.4: t ← t + 1
      Operand<W> rmsG = spec.algorithm().needsGradientStats() ? k.rms(stats, shape) : null;
      Operand<W> eta = spec.learningRate().in(k);
      StepScalars<W> s = StepScalars.of(k, spec.options(), eta,
          k.stepNumber(next), rmsG, keep, spec.lambda(k, target.decayed()));
      // g, or zeros where the policy skips the step (a scalar-predicated select, fused)
      Operand<W> g = keep == null ? gradient : tf.select(keep, gradient, tf.zerosLike(gradient));
      Operand<W> sq = gradientSquared == null || keep == null ? gradientSquared
          : tf.select(keep, gradientSquared, tf.zerosLike(gradientSquared)); // as g
      Rule.Result<W> r = Rule.step(spec.algorithm(),
          new Rule.Input<>(k, spec.options(), shape, theta, g, slots, s, sq));
      Operand<W> newTheta = r.theta();
      values.add(newTheta.type() == target.paramType()
          ? newTheta : tf.dtypes.cast(newTheta, target.paramType()));
      vars.add(target.param());
      r.slots().forEach((slot, v) -> {
        Class<? extends TType> stored = slotTypes.get(slot);
        values.add(v.type() == stored ? v : tf.dtypes.cast(v, stored)); // m in bfloat16: rounded to nearest even
        vars.add(target.slots().get(slot));
      });
      values.add(keep == null ? next : tf.select(keep, next, step));
      vars.add(target.step());
      FisherOptions o = spec.options();
      Operand<TBool> floored = rmsG == null ? null : k.epsilonFloored(o.epsilon(), o.epsilon2(), rmsG);
      return new Share(shape.size(), f32(tf, (Operand<?>) stats.sumSq()), r.clippedNatural(),
          r.clippedDecay(), floored, f32(tf, eta));
    }

    @SuppressWarnings("unchecked")
    private static Operand<TFloat32> f32(Ops tf, Operand<?> x) {
      return x.type() == TFloat32.class ? (Operand<TFloat32>) x : tf.dtypes.cast(x, TFloat32.class);
    }
  }
}
