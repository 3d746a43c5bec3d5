package org.fadam;

import java.util.ArrayList;
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

  /** What one step computes for one tensor: the new θ and slots. */
  record Result<W extends TFloating>(Operand<W> theta, Map<String, Operand<W>> slots) {}

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

  /** Whether the step needs {@link Kernels#stats} of g even without a non-finite policy. */
  boolean needsStats() {
    return this != ADAM; // RMS(g) of the adaptive ε (Alg. 1 l.8)
  }

  /**
   * One step. {@code step} is the count before this step; theta, g and slots are in W;
   * {@code stats} are g's {@link Kernels#stats} (null only where {@link #needsStats} is false and
   * no policy reads them). {@code keep} is null without a non-finite policy; otherwise, where it is
   * false, the step is folded into scalars that leave θ and every slot exactly as they were
   * (η → 0, β → 1, 1 − β → 0, g → 0, ε̂ → 1), so no full-size select or copy is needed.
   */
  <W extends TFloating> Result<W> step(
      Kernels<W> k,
      FisherOptions o,
      Operand<W> lr,
      Operand<TInt64> step,
      Operand<W> theta,
      Operand<W> g,
      Kernels.Stats stats,
      Map<String, Operand<W>> slots,
      Shape shape,
      Operand<TBool> keep) {
    Operand<W> t = k.nextStep(step); // l.4: t ← t + 1
    Operand<W> gk = k.gradientIfKept(keep, g);
    Operand<W> eta = k.ifKept(keep, lr, 0);
    Operand<W> beta1 = k.ifKept(keep, k.c(o.beta1()), 1);
    Operand<W> oneMinusBeta1 = k.ifKept(keep, k.c(1 - o.beta1()), 0);
    return switch (this) {
      case ADAM -> adam(k, o, eta, beta1, oneMinusBeta1, t, theta, gk, slots, shape, keep);
      case ADAFACTOR -> adafactor(k, o, eta, beta1, oneMinusBeta1, t, theta, gk, slots, shape, keep);
      default -> fisher(k, o, eta, beta1, oneMinusBeta1, t, theta, gk, stats, slots, shape, keep);
    };
  }

  /**
   * The EMA of the diagonal empirical Fisher of {@code sq} (g², or Adafactor's g² + ε), full or
   * factored by this rule's factoring rule; puts the new slot values into {@code out} and returns
   * the full f. Alg. 1 l.7; Alg. 2 l.7–9; Alg. 4 l.7–9. Where {@code keep} is false, β̂2 → 1 and
   * 1 − β̂2 → 0 leave the slots exactly as they were.
   */
  private <W extends TFloating> Operand<W> fisherEma(
      Kernels<W> k,
      FisherOptions o,
      Operand<W> t,
      Operand<W> sq,
      Map<String, Operand<W>> slots,
      Shape shape,
      Map<String, Operand<W>> out,
      Operand<TBool> keep) {
    var tf = k.tf;
    Operand<W> beta2Hat = k.ifKept(keep, k.biasCorrectedBeta2(o.beta2(), t), 1); // Alg. 1, 2, 4 l.6: β̂2
    Operand<W> oneMinusBeta2Hat = k.ifKept(keep, k.oneMinusBiasCorrectedBeta2(o.beta2(), t), 0);
    if (factored(shape, o)) {
      int r = shape.numDimensions();
      Operand<W> rowSq = k.axisSum(sq, shape, r - 1); // sq 1_m
      Operand<W> colSq = k.axisSum(sq, shape, r - 2); // 1ᵀ_n sq
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
      Operand<W> eta,
      Operand<W> beta1,
      Operand<W> oneMinusBeta1,
      Operand<W> t,
      Operand<W> theta,
      Operand<W> g,
      Kernels.Stats stats,
      Map<String, Operand<W>> slots,
      Shape shape,
      Operand<TBool> keep) {
    var tf = k.tf;
    Map<String, Operand<W>> out = new LinkedHashMap<>();
    Operand<W> f = fisherEma(k, o, t, tf.math.square(g), slots, shape, out, keep); // l.6–7 (Alg. 2: l.6–9)
    Operand<W> epsHat =
        k.ifKept(keep, k.adaptiveEpsilon(o.epsilon(), o.epsilon2(), k.rms(stats, shape)), 1); // l.8
    Operand<W> e = k.pow(epsHat, 2 * o.rho()); // ε̂^(2ρ)
    // 1/(f^ρ + ε̂^(2ρ)), the denominator of l.9 and l.12, inverted once
    Operand<W> rcp = k.reciprocal(tf.math.add(k.pow(f, o.rho()), e));
    // RMS(ḡ) and RMS(ḡw) in one pass over ḡ = g/(f^ρ + ε̂^(2ρ)) (l.9) and ḡw = θ/(…) (l.12)
    List<Operand<W>> terms = new ArrayList<>(k.clipTerms(k.held(tf.math.mul(g, rcp))));
    if (o.weightDecay() != 0) {
      terms.addAll(k.clipTerms(k.held(tf.math.mul(theta, rcp))));
    }
    List<Operand<W>> sums = k.sums(shape, terms);
    Operand<W> gBar = k.clipped(g, rcp, k.clipScale(sums.get(0), sums.get(1), o.clipThreshold(), shape)); // l.9–10
    Operand<W> m = k.ema(slots.get(M), beta1, oneMinusBeta1, gBar); // l.11
    out.put(M, m);
    Operand<W> direction = m;
    if (o.weightDecay() != 0) {
      Operand<W> gw = k.clipped(theta, rcp, k.clipScale(sums.get(2), sums.get(3), o.clipThreshold(), shape)); // l.12–13
      direction = tf.math.add(m, tf.math.mul(k.c(o.weightDecay()), gw)); // m + λ ḡw
    }
    Operand<W> newTheta = tf.math.sub(theta, tf.math.mul(eta, direction)); // l.14
    return new Result<>(newTheta, out);
  }

  /** Algorithm 3 (Adam): EMAs stored uncorrected, corrected where used (DESIGN). */
  private <W extends TFloating> Result<W> adam(
      Kernels<W> k,
      FisherOptions o,
      Operand<W> eta,
      Operand<W> beta1,
      Operand<W> oneMinusBeta1,
      Operand<W> t,
      Operand<W> theta,
      Operand<W> g,
      Map<String, Operand<W>> slots,
      Shape shape,
      Operand<TBool> keep) {
    var tf = k.tf;
    Operand<W> beta2 = k.ifKept(keep, k.c(o.beta2()), 1);
    Operand<W> oneMinusBeta2 = k.ifKept(keep, k.c(1 - o.beta2()), 0);
    Operand<W> f = k.ema(slots.get(FIM), beta2, oneMinusBeta2, tf.math.square(g)); // l.6 EMA
    Operand<W> m = k.ema(slots.get(M), beta1, oneMinusBeta1, g); // l.7 EMA
    Operand<W> fHat = tf.math.mul(f, tf.math.reciprocal(k.oneMinusPow(o.beta2(), t))); // l.6: /(1 − β2^t)
    Operand<W> mHat = tf.math.mul(m, tf.math.reciprocal(k.oneMinusPow(o.beta1(), t))); // l.7: /(1 − β1^t)
    // l.8: m̂/(sqrt(f̂) + ε), 0 where the denominator is 0 (then m̂ = 0)
    Operand<W> rcp = k.reciprocal(tf.math.add(tf.math.sqrt(fHat), k.c(o.epsilon())));
    List<Operand<W>> sums = k.sums(shape, k.clipTerms(k.held(tf.math.mul(mHat, rcp))));
    Operand<W> gBar = k.clipped(mHat, rcp, k.clipScale(sums.get(0), sums.get(1), o.clipThreshold(), shape)); // l.9
    Operand<W> direction =
        o.weightDecay() == 0
            ? gBar
            : tf.math.add(gBar, tf.math.mul(k.c(o.weightDecay()), theta)); // l.10: ḡ + λθ
    Operand<W> newTheta = tf.math.sub(theta, tf.math.mul(eta, direction)); // l.10
    Map<String, Operand<W>> out = new LinkedHashMap<>();
    out.put(M, m);
    out.put(FIM, f);
    return new Result<>(newTheta, out);
  }

  /**
   * Algorithm 4 (the paper's Adafactor), lines 6–13: ε inside the EMAs, no adaptive ε, no ρ (√f),
   * the learning rate inside the momentum, weight decay λθ without the learning rate (so where
   * {@code keep} is false the whole update is scaled by 0).
   */
  private <W extends TFloating> Result<W> adafactor(
      Kernels<W> k,
      FisherOptions o,
      Operand<W> eta,
      Operand<W> beta1,
      Operand<W> oneMinusBeta1,
      Operand<W> t,
      Operand<W> theta,
      Operand<W> g,
      Map<String, Operand<W>> slots,
      Shape shape,
      Operand<TBool> keep) {
    var tf = k.tf;
    Map<String, Operand<W>> out = new LinkedHashMap<>();
    Operand<W> sq = tf.math.add(tf.math.square(g), k.c(o.adafactorEpsilon())); // l.7–8: g² + ε 1_n 1ᵀ_m
    Operand<W> f = fisherEma(k, o, t, sq, slots, shape, out, keep); // l.6–9: β̂2, R, C, f = R C / 1ᵀR
    Operand<W> rcp = k.reciprocal(tf.math.sqrt(f)); // l.10: ḡ = g/√f (0 where f = 0)
    List<Operand<W>> sums = k.sums(shape, k.clipTerms(k.held(tf.math.mul(g, rcp))));
    Operand<W> gBar = k.clipped(g, rcp, k.clipScale(sums.get(0), sums.get(1), o.clipThreshold(), shape)); // l.11
    Operand<W> m = k.ema(slots.get(M), beta1, oneMinusBeta1, tf.math.mul(eta, gBar)); // l.12
    out.put(M, m);
    Operand<W> step =
        o.weightDecay() == 0
            ? m
            : tf.math.add(m, tf.math.mul(k.c(o.weightDecay()), theta)); // l.13: m + λθ
    Operand<W> newTheta = tf.math.sub(theta, tf.math.mul(k.ifKept(keep, k.c(1), 0), step)); // l.13
    return new Result<>(newTheta, out);
  }
}
