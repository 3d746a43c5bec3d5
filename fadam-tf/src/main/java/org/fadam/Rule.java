package org.fadam;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.tensorflow.Operand;
import org.tensorflow.ndarray.Shape;
import org.tensorflow.types.TBool;
import org.tensorflow.types.TInt64;
import org.tensorflow.types.family.TFloating;

/**
 * One optimizer step of one tensor, as a pure function of graph values: the single copy of
 * Algorithms 1, 2, 3 and 4 that every path (ref variables, resource variables, XLA) uses.
 * FAdam and FAdafactor differ only in their Fisher estimator; Adafactor factors f exactly where
 * FAdafactor does, through the same estimator.
 */
enum Rule {
  /** Algorithm 1: full diagonal empirical Fisher. */
  FADAM,
  /** Algorithm 2: factored Fisher for large matrices, full diagonal for the rest. */
  FADAFACTOR,
  /** Algorithm 3, the paper's Adam, read as Kingma &amp; Ba (DESIGN). */
  ADAM,
  /** Algorithm 4, the paper's Adafactor: factored like FAdafactor, f0 = 0, ε inside the EMAs. */
  ADAFACTOR;

  /** Slot name of m. */
  static final String M = "m";
  /** Slot name of the full diagonal Fisher f. */
  static final String FIM = "fim";
  /** Slot name of FAdafactor's R. */
  static final String FIM_ROW = "fim_row";
  /** Slot name of FAdafactor's C. */
  static final String FIM_COL = "fim_col";
  /** Slot name of the per-variable step counter t. */
  static final String STEP = "step";

  /** A slot: its name, shape and initial value (the dtype is the working dtype). */
  record SlotSpec(String name, Shape shape, double init) {}

  /** What one step computes for one tensor. */
  record Result<W extends TFloating>(
      Operand<W> theta, Map<String, Operand<W>> slots, Operand<TBool> finite) {}

  /**
   * Whether FAdafactor or Adafactor factors a tensor of this shape (DESIGN: rank ≥ 2, last two ≥
   * min).
   */
  boolean factored(Shape shape, FisherOptions o) {
    int r = shape.numDimensions();
    return (this == FADAFACTOR || this == ADAFACTOR)
        && r >= 2
        && shape.get(r - 1) >= o.factoredMinDim()
        && shape.get(r - 2) >= o.factoredMinDim();
  }

  /** The float slots of a variable (the int64 step counter comes on top). */
  List<SlotSpec> slots(Shape shape, FisherOptions o) {
    if (this == ADAM) {
      return List.of(new SlotSpec(M, shape, 0), new SlotSpec(FIM, shape, 0)); // Alg. 3 l.2
    }
    double f0 = this == ADAFACTOR ? 0 : 1; // Alg. 4 l.2: R0 = C0 = 0; Alg. 1, 2 l.2: f0 = 1
    if (factored(shape, o)) {
      int r = shape.numDimensions();
      long[] dims = shape.asArray();
      long[] row = java.util.Arrays.copyOf(dims, r - 1); // R reduces the last axis
      long[] col = dims.clone();
      col[r - 2] = dims[r - 1];
      col = java.util.Arrays.copyOf(col, r - 1); // C reduces the second-last axis
      return List.of(
          new SlotSpec(M, shape, 0), // Alg. 2, 4 l.2: m0 = 0
          new SlotSpec(FIM_ROW, Shape.of(row), f0), // Alg. 2 l.2: R0 = 1; Alg. 4 l.2: R0 = 0
          new SlotSpec(FIM_COL, Shape.of(col), f0)); // Alg. 2 l.2: C0 = 1; Alg. 4 l.2: C0 = 0
    }
    return List.of(new SlotSpec(M, shape, 0), new SlotSpec(FIM, shape, f0)); // Alg. 1, 4 l.2
  }

  /**
   * One step. {@code step} is the count before this step; theta, g and slots are in W.
   * {@code finite} is false when g holds NaN or ±Inf, or a value whose square the dtype cannot
   * hold (|g| > ~1.8e19 in float32), or, for a factored tensor, when the sum of g² overflows (R
   * and C could not hold it).
   */
  <W extends TFloating> Result<W> step(
      Kernels<W> k,
      FisherOptions o,
      Operand<W> lr,
      Operand<TInt64> step,
      Operand<W> theta,
      Operand<W> g,
      Map<String, Operand<W>> slots,
      Shape shape) {
    Operand<W> t = k.nextStep(step); // l.4: t ← t + 1
    Operand<W> gSq = k.tf.math.square(g);
    Operand<W> gSqSum = k.sumAll(gSq, shape);
    Operand<TBool> finite = k.representable(g, shape);
    if (factored(shape, o)) {
      finite = k.tf.math.logicalAnd(finite, k.tf.math.isFinite(gSqSum));
    }
    return switch (this) {
      case ADAM -> adam(k, o, lr, t, theta, g, gSq, slots, shape, finite);
      case ADAFACTOR -> adafactor(k, o, lr, t, theta, g, gSq, slots, shape, finite);
      default -> fisher(k, o, lr, t, theta, g, gSq, gSqSum, slots, shape, finite);
    };
  }

  /**
   * The EMA of the diagonal empirical Fisher of {@code sq} (g², or Adafactor's g² + ε), full or
   * factored by this rule's factoring rule; puts the new slot values into {@code out} and returns
   * the full f. Alg. 1 l.7; Alg. 2 l.7–9; Alg. 4 l.7–9.
   */
  private <W extends TFloating> Operand<W> fisherEma(
      Kernels<W> k,
      FisherOptions o,
      Operand<W> t,
      Operand<W> sq,
      Map<String, Operand<W>> slots,
      Shape shape,
      Map<String, Operand<W>> out) {
    var tf = k.tf;
    Operand<W> beta2Hat = k.biasCorrectedBeta2(o.beta2(), t); // Alg. 1, 2, 4 l.6: β̂2
    Operand<W> oneMinusBeta2Hat = k.oneMinusBiasCorrectedBeta2(o.beta2(), t);
    if (factored(shape, o)) {
      int r = shape.numDimensions();
      Operand<W> rowSq = tf.sum(sq, tf.constant(r - 1)); // sq 1_m
      Operand<W> colSq = tf.sum(sq, tf.constant(r - 2)); // 1ᵀ_n sq
      Operand<W> row = k.ema(slots.get(FIM_ROW), beta2Hat, oneMinusBeta2Hat, rowSq); // Alg.2,4 l.7
      Operand<W> col = k.ema(slots.get(FIM_COL), beta2Hat, oneMinusBeta2Hat, colSq); // Alg.2,4 l.8
      out.put(FIM_ROW, row);
      out.put(FIM_COL, col);
      return k.factoredFisher(row, col); // Alg.2,4 l.9: f = R C / 1ᵀR
    }
    Operand<W> f = k.ema(slots.get(FIM), beta2Hat, oneMinusBeta2Hat, sq); // Alg.1 l.7: EMA of sq
    out.put(FIM, f);
    return f;
  }

  /** Algorithm 1 (FAdam) and Algorithm 2 (FAdafactor), lines 6–14 (Alg. 2: 6–16). */
  private <W extends TFloating> Result<W> fisher(
      Kernels<W> k,
      FisherOptions o,
      Operand<W> lr,
      Operand<W> t,
      Operand<W> theta,
      Operand<W> g,
      Operand<W> gSq,
      Operand<W> gSqSum,
      Map<String, Operand<W>> slots,
      Shape shape,
      Operand<TBool> finite) {
    var tf = k.tf;
    Map<String, Operand<W>> out = new LinkedHashMap<>();
    Operand<W> f = fisherEma(k, o, t, gSq, slots, shape, out); // l.6–7 (Alg. 2: l.6–9), g²
    Operand<W> epsHat = k.adaptiveEpsilon(o.epsilon(), o.epsilon2(), k.rms(g, gSqSum, shape)); // l.8
    Operand<W> e = k.pow(epsHat, 2 * o.rho()); // ε̂^(2ρ)
    Operand<W> d = tf.math.add(k.pow(f, o.rho()), e); // f^ρ + ε̂^(2ρ), the denominator of l.9, l.12
    Operand<W> gBar = k.clip(k.naturalGradient(g, d), o.clipThreshold(), shape); // l.9–10
    Operand<W> m = k.ema(slots.get(M), k.c(o.beta1()), k.c(1 - o.beta1()), gBar); // l.11
    out.put(M, m);
    Operand<W> direction = m;
    if (o.weightDecay() != 0) {
      Operand<W> gw = k.clip(k.naturalGradient(theta, d), o.clipThreshold(), shape); // l.12–13
      direction = tf.math.add(m, tf.math.mul(k.c(o.weightDecay()), gw)); // m + λ ḡw
    }
    Operand<W> newTheta = tf.math.sub(theta, tf.math.mul(lr, direction)); // l.14
    return new Result<>(newTheta, out, finite);
  }

  /** Algorithm 3 (Adam): EMAs stored uncorrected, corrected where used (DESIGN). */
  private <W extends TFloating> Result<W> adam(
      Kernels<W> k,
      FisherOptions o,
      Operand<W> lr,
      Operand<W> t,
      Operand<W> theta,
      Operand<W> g,
      Operand<W> gSq,
      Map<String, Operand<W>> slots,
      Shape shape,
      Operand<TBool> finite) {
    var tf = k.tf;
    Operand<W> f = k.ema(slots.get(FIM), k.c(o.beta2()), k.c(1 - o.beta2()), gSq); // l.6 EMA
    Operand<W> m = k.ema(slots.get(M), k.c(o.beta1()), k.c(1 - o.beta1()), g); // l.7 EMA
    Operand<W> fHat = tf.math.div(f, k.oneMinusPow(o.beta2(), t)); // l.6: /(1 − β2^t)
    Operand<W> mHat = tf.math.div(m, k.oneMinusPow(o.beta1(), t)); // l.7: /(1 − β1^t)
    Operand<W> gBar =
        tf.math.divNoNan(mHat, tf.math.add(tf.math.sqrt(fHat), k.c(o.epsilon()))); // l.8 (0/0 → 0)
    gBar = k.clip(gBar, o.clipThreshold(), shape); // l.9
    Operand<W> direction =
        o.weightDecay() == 0
            ? gBar
            : tf.math.add(gBar, tf.math.mul(k.c(o.weightDecay()), theta)); // l.10: ḡ + λθ
    Operand<W> newTheta = tf.math.sub(theta, tf.math.mul(lr, direction)); // l.10
    Map<String, Operand<W>> out = new LinkedHashMap<>();
    out.put(M, m);
    out.put(FIM, f);
    return new Result<>(newTheta, out, finite);
  }

  /**
   * Algorithm 4 (the paper's Adafactor), lines 6–13: ε inside the EMAs, no adaptive ε, no ρ (√f),
   * the learning rate inside the momentum, weight decay λθ without the learning rate.
   */
  private <W extends TFloating> Result<W> adafactor(
      Kernels<W> k,
      FisherOptions o,
      Operand<W> lr,
      Operand<W> t,
      Operand<W> theta,
      Operand<W> g,
      Operand<W> gSq,
      Map<String, Operand<W>> slots,
      Shape shape,
      Operand<TBool> finite) {
    var tf = k.tf;
    Map<String, Operand<W>> out = new LinkedHashMap<>();
    Operand<W> sq = tf.math.add(gSq, k.c(o.adafactorEpsilon())); // l.7–8: g² + ε 1_n 1ᵀ_m
    Operand<W> f = fisherEma(k, o, t, sq, slots, shape, out); // l.6–9: β̂2, R, C, f = R C / 1ᵀR
    Operand<W> gBar = k.naturalGradient(g, tf.math.sqrt(f)); // l.10: ḡ = g/√f (0 where f = 0)
    gBar = k.clip(gBar, o.clipThreshold(), shape); // l.11: ḡ / max(1, RMS(ḡ)/c)
    Operand<W> m =
        k.ema(slots.get(M), k.c(o.beta1()), k.c(1 - o.beta1()), tf.math.mul(lr, gBar)); // l.12
    out.put(M, m);
    Operand<W> step =
        o.weightDecay() == 0
            ? m
            : tf.math.add(m, tf.math.mul(k.c(o.weightDecay()), theta)); // l.13: m + λθ
    return new Result<>(tf.math.sub(theta, step), out, finite); // l.13: θ ← θ − (m + λθ)
  }
}
