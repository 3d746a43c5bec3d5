package org.fadam;

import static org.fadam.Algorithm.FIM;
import static org.fadam.Algorithm.FIM_COL;
import static org.fadam.Algorithm.FIM_ROW;
import static org.fadam.Algorithm.M;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.tensorflow.Operand;
import org.tensorflow.ndarray.Shape;
import org.tensorflow.types.TBool;
import org.tensorflow.types.family.TFloating;

/**
 * One optimizer step of one tensor, as a pure function of graph values: the single copy of
 * Algorithms 1, 2, 3 and 4 that every path (ref variables, resource variables, XLA) uses.
 * FAdam and FAdafactor differ only in their Fisher estimator; Adafactor factors f exactly where
 * FAdafactor does, through the same estimator. The non-finite policy arrives folded into the
 * {@link StepScalars} and the gradient: no branch here sees it.
 */
final class Rule {

  private Rule() {}

  /**
   * What one tensor's step reads.
   *
   * @param k the kernels of the working dtype W
   * @param o the options
   * @param shape the tensor's static shape
   * @param theta θ, in W
   * @param g the gradient in W (zeros where the policy skips the step)
   * @param slots each slot's current value by name
   * @param s the step's scalars, policy folded in
   * @param gSquared the g² that feeds the Fisher EMA, or null for the square of {@code g}: with
   *     {@link FisherTrainStep.Builder#microBatchFisher} the mean of the micro-batches' squared
   *     gradients (paper Eq. 20 instead of Eq. 21; zeros where the policy skips the step)
   * @param <W> the working dtype
   */
  record Input<W extends TFloating>(
      Kernels<W> k,
      FisherOptions o,
      Shape shape,
      Operand<W> theta,
      Operand<W> g,
      Map<String, Operand<W>> slots,
      StepScalars<W> s,
      Operand<W> gSquared) {

    /** An input whose Fisher EMA takes the square of {@code g} (Eq. 21, the paper's algorithms). */
    Input(Kernels<W> k, FisherOptions o, Shape shape, Operand<W> theta, Operand<W> g,
        Map<String, Operand<W>> slots, StepScalars<W> s) {
      this(k, o, shape, theta, g, slots, s, null);
    }

    /** g² of the Fisher EMA: Eq. 21's square of the batch gradient, or Eq. 20's mean of squares. */
    Operand<W> squared() {
      return gSquared != null ? gSquared : k.tf.math.square(g); // Eq. 20 (given) or Eq. 21: g²
    }
  }

  /**
   * What one step computes for one tensor.
   *
   * @param theta the new θ
   * @param slots each slot's new value by name
   * @param clippedNatural whether the RMS clip of ḡ cut it (clip factor &lt; 1: Alg. 1 l.10, Alg. 3
   *     l.9, Alg. 4 l.11), a scalar the clip already computes (docs/design.md, "Step telemetry")
   * @param clippedDecay whether the RMS clip of ḡw cut it (Alg. 1 l.13); null where the tensor has
   *     no clipped decay term (not decayed, or Adam/Adafactor, whose λθ is not clipped)
   * @param <W> the working dtype
   */
  record Result<W extends TFloating>(
      Operand<W> theta, Map<String, Operand<W>> slots, Operand<TBool> clippedNatural,
      Operand<TBool> clippedDecay) {}

  /** One step of {@code algorithm}. */
  static <W extends TFloating> Result<W> step(Algorithm algorithm, Input<W> in) {
    return switch (algorithm) {
      case FADAM, FADAFACTOR -> fisher(algorithm, in);
      case ADAM -> adam(in);
      case ADAFACTOR -> adafactor(in);
    };
  }

  /**
   * The diagonal Fisher estimate a step would divide by, from a tensor's stored slots: what
   * {@link FisherTrainStep#fisher} and {@link FisherOptimizer#fisher} return
   * (docs/design.md, "The Fisher as a product"). FAdam and FAdafactor store it bias-corrected already (β̂2 of
   * Alg. 1, 2 l.6), so it is f itself, or R C / 1ᵀR where the tensor is factored (Alg. 2 l.9);
   * Adam stores the raw EMA, corrected here as its l.6 does (f / (1 − β2^t); 0 before its first
   * step); Adafactor's is its l.9 f, ε inside.
   *
   * @param a the algorithm
   * @param o the options
   * @param shape the tensor's shape
   * @param paramType the variable's dtype (the estimate is in its working dtype)
   * @param slotsAndStep the slots' current values and the step counter ({@link Algorithm#STEP}) by name
   * @param tf ops to read and compute in
   */
  static Operand<? extends TFloating> fisherEstimate(Algorithm a, FisherOptions o, Shape shape, Class<? extends org.tensorflow.types.family.TType> paramType,
      Map<String, ? extends Operand<?>> slotsAndStep, org.tensorflow.op.Ops tf) {
    Kernels<? extends TFloating> k = Kernels.forParameter(tf, paramType, false);
    return fisherEstimateIn(k, a, o, shape, slotsAndStep);
  }

  /** {@link #fisherEstimate} with its kernels' type captured. */
  private static <W extends TFloating> Operand<W> fisherEstimateIn(Kernels<W> k, Algorithm a,
      FisherOptions o, Shape shape, Map<String, ? extends Operand<?>> slotsAndStep) {
    Map<String, Operand<W>> slots = new LinkedHashMap<>();
    slotsAndStep.forEach((n, v) -> {
      if (!n.equals(Algorithm.STEP)) {
        slots.put(n, k.cast(v));
      }
    });
    Operand<W> t = k.stepNumber(k.tf.dtypes.cast(slotsAndStep.get(Algorithm.STEP), org.tensorflow.types.TInt64.class));
    return fisherEstimate(a, k, o, shape, slots, t);
  }

  /** The estimate from slots in W and the step counter t as W. */
  static <W extends TFloating> Operand<W> fisherEstimate(
      Algorithm a, Kernels<W> k, FisherOptions o, Shape shape, Map<String, Operand<W>> slots,
      Operand<W> t) {
    if (a.factors(shape, o)) {
      return k.factoredFisher(slots.get(FIM_ROW), slots.get(FIM_COL)); // Alg.2,4 l.9: f = R C / 1ᵀR
    }
    Operand<W> f = slots.get(FIM);
    if (a == Algorithm.ADAM) {
      return k.tf.math.divNoNan(f, k.oneMinusPow(o.beta2(), t)); // Alg.3 l.6: f̂ = f/(1 − β2^t)
    }
    return f; // Alg.1 l.7: f_t, bias-corrected through β̂2 (l.6)
  }

  /**
   * The EMA of the diagonal empirical Fisher of {@code sq} (g², or Adafactor's g² + ε), full or
   * factored by the algorithm's factoring rule; puts the new slot values into {@code out} and
   * returns the full f. Alg. 1 l.7; Alg. 2 l.7–9; Alg. 4 l.7–9.
   */
  private static <W extends TFloating> Operand<W> fisherEma(
      Algorithm a, Input<W> in, Operand<W> sq, Map<String, Operand<W>> out) {
    Kernels<W> k = in.k();
    StepScalars<W> s = in.s();
    if (a.factors(in.shape(), in.o())) {
      int r = in.shape().numDimensions();
      Operand<W> rowSq = k.reduce.axisSum(sq, in.shape(), r - 1); // sq 1_m
      Operand<W> colSq = k.reduce.axisSum(sq, in.shape(), r - 2); // 1ᵀ_n sq
      Operand<W> row = k.ema(in.slots().get(FIM_ROW), s.beta2Hat(), s.oneMinusBeta2Hat(), rowSq); // Alg.2,4 l.7
      Operand<W> col = k.ema(in.slots().get(FIM_COL), s.beta2Hat(), s.oneMinusBeta2Hat(), colSq); // Alg.2,4 l.8
      out.put(FIM_ROW, row);
      out.put(FIM_COL, col);
      return k.factoredFisher(row, col); // Alg.2,4 l.9: f = R C / 1ᵀR
    }
    Operand<W> f = k.ema(in.slots().get(FIM), s.beta2Hat(), s.oneMinusBeta2Hat(), sq); // Alg.1 l.7
    out.put(FIM, f);
    return f;
  }

  /** Algorithm 1 (FAdam) and Algorithm 2 (FAdafactor), lines 6–14 (Alg. 2: 6–16). */
  private static <W extends TFloating> Result<W> fisher(Algorithm a, Input<W> in) {
    Kernels<W> k = in.k();
    var tf = k.tf;
    FisherOptions o = in.o();
    StepScalars<W> s = in.s();
    Operand<W> g = in.g();
    Operand<W> theta = in.theta();
    Map<String, Operand<W>> out = new LinkedHashMap<>();
    Operand<W> f = fisherEma(a, in, in.squared(), out); // l.6–7 (Alg. 2: l.6–9)
    Operand<W> e = k.pow(s.epsHat(), 2 * o.rho()); // ε̂^(2ρ), ε̂ of l.8
    // 1/(f^ρ + ε̂^(2ρ)), the denominator of l.9 and l.12, inverted once
    Operand<W> rcp = k.reciprocal(tf.math.add(k.pow(f, o.rho()), e));
    // RMS(ḡ) and RMS(ḡw) in one pass over ḡ = g/(f^ρ + ε̂^(2ρ)) (l.9) and ḡw = θ/(…) (l.12)
    ClipSums<W> clip = new ClipSums<>(k, in.shape());
    clip.add("g", tf.math.mul(g, rcp));
    if (s.lambda() != null) {
      clip.add("w", tf.math.mul(theta, rcp));
    }
    clip.sum();
    Operand<W> gScale = clip.scale("g", o.clipThreshold());
    Operand<W> gBar = k.clipped(g, rcp, gScale); // l.9–10
    Operand<W> m = momentum(in, gBar, out); // l.11
    Operand<W> direction = m;
    Operand<TBool> decayClipped = null;
    if (s.lambda() != null) {
      Operand<W> wScale = clip.scale("w", o.clipThreshold());
      Operand<W> gw = k.clipped(theta, rcp, wScale); // l.12–13
      direction = tf.math.add(m, tf.math.mul(s.lambda(), gw)); // m + λ ḡw
      decayClipped = k.cut(wScale); // l.13: max(1, RMS(ḡw)/c) > 1
    }
    Operand<W> newTheta = tf.math.sub(theta, tf.math.mul(s.eta(), direction)); // l.14
    return new Result<>(newTheta, out, k.cut(gScale), decayClipped); // l.10: max(1, RMS(ḡ)/c) > 1
  }

  /** Algorithm 3 (Adam): EMAs stored uncorrected, corrected where used (docs/design.md, "Adam and Adafactor (Algorithms 3 and 4)"). */
  private static <W extends TFloating> Result<W> adam(Input<W> in) {
    Kernels<W> k = in.k();
    var tf = k.tf;
    FisherOptions o = in.o();
    StepScalars<W> s = in.s();
    Operand<W> g = in.g();
    Map<String, Operand<W>> out = new LinkedHashMap<>();
    Operand<W> f = k.ema(in.slots().get(FIM), s.beta2(), s.oneMinusBeta2(), in.squared()); // l.6 EMA
    Operand<W> m = momentum(in, g, out); // l.7 EMA
    Operand<W> fHat = tf.math.mul(f, tf.math.reciprocal(k.oneMinusPow(o.beta2(), s.t()))); // l.6: /(1 − β2^t)
    Operand<W> mHat = tf.math.mul(m, tf.math.reciprocal(k.oneMinusPow(o.beta1(), s.t()))); // l.7: /(1 − β1^t)
    // l.8: m̂/(sqrt(f̂) + ε), 0 where the denominator is 0 (then m̂ = 0)
    Operand<W> rcp = k.reciprocal(tf.math.add(tf.math.sqrt(fHat), k.c(o.epsilon())));
    ClipSums<W> clip = new ClipSums<>(k, in.shape());
    clip.add("g", tf.math.mul(mHat, rcp));
    clip.sum();
    Operand<W> scale = clip.scale("g", o.clipThreshold());
    Operand<W> gBar = k.clipped(mHat, rcp, scale); // l.9
    Operand<W> direction =
        s.lambda() == null
            ? gBar
            : tf.math.add(gBar, tf.math.mul(s.lambda(), in.theta())); // l.10: ḡ + λθ
    Operand<W> newTheta = tf.math.sub(in.theta(), tf.math.mul(s.eta(), direction)); // l.10
    out.put(FIM, f);
    return new Result<>(newTheta, out, k.cut(scale), null); // l.9: max(1, RMS/c) > 1; λθ unclipped
  }

  /**
   * Algorithm 4 (the paper's Adafactor), lines 6–13: ε inside the EMAs, no adaptive ε, no ρ (√f),
   * the learning rate inside the momentum, weight decay λθ without the learning rate (so a skipped
   * step scales the whole update by {@link StepScalars#applied} = 0).
   */
  private static <W extends TFloating> Result<W> adafactor(Input<W> in) {
    Kernels<W> k = in.k();
    var tf = k.tf;
    FisherOptions o = in.o();
    StepScalars<W> s = in.s();
    Operand<W> g = in.g();
    Map<String, Operand<W>> out = new LinkedHashMap<>();
    Operand<W> sq = tf.math.add(in.squared(), k.c(o.adafactorEpsilon())); // l.7–8: g² + ε 1_n 1ᵀ_m
    Operand<W> f = fisherEma(Algorithm.ADAFACTOR, in, sq, out); // l.6–9: β̂2, R, C, f = R C / 1ᵀR
    Operand<W> rcp = k.reciprocal(tf.math.sqrt(f)); // l.10: ḡ = g/√f (0 where f = 0)
    ClipSums<W> clip = new ClipSums<>(k, in.shape());
    clip.add("g", tf.math.mul(g, rcp));
    clip.sum();
    Operand<W> scale = clip.scale("g", o.clipThreshold());
    Operand<W> gBar = k.clipped(g, rcp, scale); // l.11
    Operand<W> m = momentum(in, tf.math.mul(s.eta(), gBar), out); // l.12
    Operand<W> update =
        s.lambda() == null
            ? m
            : tf.math.add(m, tf.math.mul(s.lambda(), in.theta())); // l.13: m + λθ
    Operand<W> newTheta = tf.math.sub(in.theta(), tf.math.mul(s.applied(), update)); // l.13
    return new Result<>(newTheta, out, k.cut(scale), null); // l.11: max(1, RMS/c) > 1; λθ unclipped
  }

  /**
   * The momentum m = β1 m + (1 − β1) x (Alg. 1 l.11, Alg. 3 l.7, Alg. 4 l.12), put into {@code out};
   * with β1 = 0 there is no m slot and m = x exactly (a skipped step has x = 0 there: g → 0, η → 0).
   */
  private static <W extends TFloating> Operand<W> momentum(Input<W> in, Operand<W> x, Map<String, Operand<W>> out) {
    Operand<W> m = in.slots().get(M);
    if (m == null) {
      return x; // β1 = 0: m = x
    }
    Operand<W> next = in.k().ema(m, in.s().beta1(), in.s().oneMinusBeta1(), x);
    out.put(M, next);
    return next;
  }

  /**
   * The sums of the RMS clips (Alg. 1 l.10, l.13; Alg. 3 l.9; Alg. 4 l.11) of several same-shaped
   * values, taken in one pass and read back by name.
   */
  private static final class ClipSums<W extends TFloating> {
    private final Kernels<W> k;
    private final Shape shape;
    private final List<String> names = new ArrayList<>();
    private final List<Operand<W>> terms = new ArrayList<>();
    private List<Operand<W>> sums;

    ClipSums(Kernels<W> k, Shape shape) {
      this.k = k;
      this.shape = shape;
    }

    /** Adds y (x/d before its clip) under {@code name}. */
    void add(String name, Operand<W> y) {
      names.add(name);
      terms.addAll(k.clipTerms(k.held(y)));
    }

    /** Takes every added value's sums in one pass. */
    void sum() {
      sums = k.reduce.sums(shape, terms);
    }

    /** The clip factor 1/max(1, RMS(y)/c) of the value added under {@code name}. */
    Operand<W> scale(String name, double clip) {
      int i = 2 * names.indexOf(name);
      return k.clipScale(sums.get(i), sums.get(i + 1), clip, shape);
    }
  }
}
