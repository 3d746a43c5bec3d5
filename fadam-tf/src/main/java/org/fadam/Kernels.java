package org.fadam;

import java.util.List;
import org.tensorflow.Operand;
import org.tensorflow.ndarray.Shape;
import org.tensorflow.op.Ops;
import org.tensorflow.types.TBfloat16;
import org.tensorflow.types.TBool;
import org.tensorflow.types.TFloat16;
import org.tensorflow.types.TFloat32;
import org.tensorflow.types.TFloat64;
import org.tensorflow.types.TInt64;
import org.tensorflow.types.family.TFloating;
import org.tensorflow.types.family.TType;

/**
 * The paper's terms as graph functions, one small function per idea, in a working float type
 * {@code W} (float32, or float64 for float64 parameters). Every optimizer path (ref variables,
 * resource variables, the XLA step) builds its math from these and nothing else.
 *
 * @param <W> the working dtype
 */
final class Kernels<W extends TFloating> {

  final Ops tf;
  final Class<W> type;
  /** The step's sums (XLA's fused forms where the step is compiled). */
  final Reductions<W> reduce;
  /** Largest finite W: where {@link #clip} holds an overflowed element. */
  private final double maxValue;
  /** Squares below this may have underflowed: {@link #rms} then rescales. */
  private final double underflowMean;
  /** The rescaling factor 2^k of {@link #rms}. */
  private final double rescale;

  private Kernels(Ops tf, Class<W> type, boolean xla) {
    this.tf = tf;
    this.type = type;
    this.reduce = new Reductions<>(this, xla);
    boolean f64 = type == TFloat64.class;
    this.maxValue = f64 ? Double.MAX_VALUE : Float.MAX_VALUE;
    this.underflowMean = f64 ? Math.scalb(1.0, -500) : Math.scalb(1.0, -60);
    this.rescale = f64 ? Math.scalb(1.0, 500) : Math.scalb(1.0, 64);
  }

  /** Kernels in float64 for float64 parameters, float32 for every other float dtype (docs/design.md, "Dtypes"). */
  @SuppressWarnings("unchecked")
  static Kernels<? extends TFloating> forParameter(
      Ops tf, Class<? extends TType> paramType, boolean xla) {
    Class<? extends TFloating> w = workingType(paramType);
    return new Kernels<>(tf, (Class<TFloating>) w, xla);
  }

  /** float64 state for float64 parameters, float32 for float32, float16 and bfloat16. */
  static Class<? extends TFloating> workingType(Class<? extends TType> paramType) {
    return paramType == TFloat64.class ? TFloat64.class : TFloat32.class;
  }

  /** Rejects a variable the optimizers cannot update, naming it. */
  static void checkFloat(String variable, Class<? extends TType> type) {
    if (type != TFloat32.class && type != TFloat64.class && type != TFloat16.class
        && type != TBfloat16.class) {
      throw new IllegalArgumentException(
          "variable '" + variable + "' has dtype "
              + org.tensorflow.internal.types.registry.TensorTypeRegistry.find(type).dataType()
              + "; FAdam, FAdafactor, Adam and Adafactor update float32, float64, float16 and bfloat16"
              + " variables only");
    }
  }

  /** A scalar constant of W. */
  @SuppressWarnings("unchecked")
  Operand<W> c(double v) {
    return type == TFloat64.class
        ? (Operand<W>) tf.constant(v)
        : (Operand<W>) tf.constant((float) v);
  }

  /** Any operand as W (no op when it already is). */
  @SuppressWarnings("unchecked")
  Operand<W> cast(Operand<? extends TType> x) {
    return x.type() == type ? (Operand<W>) x : tf.dtypes.cast(x, type);
  }

  /**
   * The two sums every step starts from: Σg² and Σ(g·2^k)², the latter for {@link #rms} when the
   * squares may have underflowed. The step is finite exactly when Σg² is: NaN, ±Inf, a square the
   * dtype cannot hold and a sum that overflows all make it non-finite. (g·2^k is {@link #scaled}.)
   */
  Stats stats(Operand<W> g, Shape shape) {
    List<Operand<W>> s =
        reduce.sums(shape, List.of(tf.math.square(g), tf.math.square(scaled(g, rescale))));
    return new Stats(s.get(0), s.get(1), tf.math.isFinite(s.get(0)));
  }

  /** Σg², Σ(g·2^k)² and whether the first is finite. */
  record Stats(Operand<?> sumSq, Operand<?> scaledSumSq, Operand<TBool> finite) {}

  /**
   * RMS(g) for the adaptive ε (Alg. 1 l.8) from {@link #stats}. Where mean(g²) is so small that
   * squares may have underflowed (|g| ≲ 1e-23 in float32), it comes from the sum of (g·2^k)², so
   * that a tiny but non-zero gradient never gets ε̂ = 0.
   */
  @SuppressWarnings("unchecked")
  Operand<W> rms(Stats st, Shape shape) {
    Operand<W> n = c(shape.size());
    Operand<W> mean = tf.math.div((Operand<W>) st.sumSq(), n);
    Operand<W> scaled = tf.math.div((Operand<W>) st.scaledSumSq(), n);
    Operand<TBool> small = tf.math.less(mean, c(underflowMean));
    return tf.select(
        small, tf.math.div(tf.math.sqrt(scaled), c(rescale)), tf.math.sqrt(mean));
  }

  /** 1 − β^t, accurate in W: −expm1(t·log1p(β − 1)) (docs/design.md, "Bias correction": no naive β^t in float32). */
  Operand<W> oneMinusPow(double beta, Operand<W> t) {
    if (beta == 0) {
      return c(1); // t ≥ 1
    }
    return tf.math.neg(tf.math.expm1(tf.math.mul(t, c(Math.log1p(beta - 1)))));
  }

  /** β̂2 = β2 (1 − β2^(t−1)) / (1 − β2^t) (Alg. 1 l.6): exactly 0 at t = 1. */
  Operand<W> biasCorrectedBeta2(double beta2, Operand<W> t) {
    if (beta2 == 0) {
      return c(0);
    }
    Operand<W> log = c(Math.log1p(beta2 - 1));
    Operand<W> prev = tf.math.expm1(tf.math.mul(tf.math.sub(t, c(1)), log));
    return tf.math.mul(c(beta2), tf.math.div(prev, tf.math.expm1(tf.math.mul(t, log))));
  }

  /** 1 − β̂2 = (1 − β2) / (1 − β2^t), the same quantity without cancellation. */
  Operand<W> oneMinusBiasCorrectedBeta2(double beta2, Operand<W> t) {
    return tf.math.div(c(1 - beta2), oneMinusPow(beta2, t));
  }

  /** EMA: decay·old + (1 − decay)·x (Alg. 1 l.7, l.11). */
  Operand<W> ema(Operand<W> old, Operand<W> decay, Operand<W> oneMinusDecay, Operand<W> x) {
    return tf.math.add(tf.math.mul(decay, old), tf.math.mul(oneMinusDecay, x));
  }

  /** ε̂ = min(ε, ε2·RMS(g)) (Alg. 1 l.8). */
  Operand<W> adaptiveEpsilon(double eps, double eps2, Operand<W> rmsG) {
    return tf.math.minimum(c(eps), tf.math.mul(c(eps2), rmsG));
  }

  /** x^p, with the exact sqrt for p = 1/2 and the identity for p = 1. */
  Operand<W> pow(Operand<W> x, double p) {
    if (p == 1) {
      return x;
    }
    if (p == 0.5) {
      return tf.math.sqrt(x);
    }
    return tf.math.pow(x, c(p));
  }

  /**
   * y with an element beyond the dtype's range (x/d overflowed: a gradient RMS below ~1e-16 and a
   * large θ) held at ±max, so that the clip below stays finite; NaN stays NaN (the PROPAGATE
   * policy), which the clamp alone does not keep under XLA CPU's fast min/max. Four cheap ops per
   * element where the select of sign(y)·max took five, sign among them (docs/performance.md).
   */
  Operand<W> held(Operand<W> y) {
    return tf.select(tf.math.isNan(y), y, tf.clipByValue(y, c(-maxValue), c(maxValue)));
  }

  /**
   * y·a clamped to the dtype's range before it is squared: XLA rewrites (y·a)² as y²·a², and a² =
   * 2^∓128 is not a float32 normal number (it would flush a guard to 0, or overflow); the clamp
   * keeps the order. NaN need not survive here: {@link #rms} and {@link #clipScale} read these
   * scaled sums only where the plain sum is finite-but-tiny or +Inf, so without a NaN.
   */
  private Operand<W> scaled(Operand<W> y, double a) {
    return tf.clipByValue(tf.math.mul(y, c(a)), c(-maxValue), c(maxValue));
  }

  /** The terms {@link #clipScale} needs: y² and (y·2^-k)² of a {@link #held} y. */
  List<Operand<W>> clipTerms(Operand<W> heldY) {
    return List.of(tf.math.square(heldY), tf.math.square(scaled(heldY, 1 / rescale)));
  }

  /**
   * 1/max(1, RMS(y)/c), the factor of the RMS clip y/max(1, RMS(y)/c) (Alg. 1 l.10, l.13; Alg. 3
   * l.9), from the sums of {@link #clipTerms}: RMS(y) comes from the sum of (y·2^-k)² where that
   * of y² overflows, so the result stays finite.
   */
  Operand<W> clipScale(Operand<W> sumSq, Operand<W> scaledSumSq, double clip, Shape shape) {
    Operand<W> n = c(shape.size());
    Operand<W> mean = tf.math.div(sumSq, n);
    Operand<W> rmsY = tf.select(tf.math.isInf(mean),
        tf.math.mul(tf.math.sqrt(tf.math.div(scaledSumSq, n)), c(rescale)), tf.math.sqrt(mean));
    return tf.math.reciprocal(tf.math.maximum(c(1), tf.math.div(rmsY, c(clip))));
  }

  /**
   * Whether a clip factor of {@link #clipScale} cut its value: 1/max(1, RMS(y)/c) &lt; 1, that is
   * RMS(y) &gt; c (Alg. 1 l.10, l.13). A scalar comparison of the factor the clip already has.
   */
  Operand<TBool> cut(Operand<W> scale) {
    return tf.math.less(scale, c(1));
  }

  /**
   * Whether ε̂ = min(ε, ε2·RMS(g)) took ε2·RMS(g) (Alg. 1 l.8, the paper's C.1.1): ε2·RMS(g) &lt; ε.
   * A scalar comparison of the RMS(g) the step already has.
   */
  Operand<TBool> epsilonFloored(double eps, double eps2, Operand<W> rmsG) {
    return tf.math.less(tf.math.mul(c(eps2), rmsG), c(eps));
  }

  /**
   * 1/d, the one divide of the step (Alg. 1 l.9, l.12 multiply by it); 0 where d = 0, the zero rule of
   * docs/design.md, "Zero denominators" (there x/d would be 0/0): 1/0 = ∞ is replaced, so d has one reader (XLA writes an
   * expensive value with several readers out as a full-size array).
   */
  Operand<W> reciprocal(Operand<W> d) {
    Operand<W> r = tf.math.reciprocal(d);
    return tf.select(tf.math.isInf(r), tf.zerosLike(r), r);
  }

  /**
   * The clipped x/d: x·(1/d)·s with s = {@link #clipScale}, {@link #held} (Alg. 1 l.9–10,
   * l.12–13). Written apart from the {@link #clipTerms} of the sum pass, so that XLA recomputes
   * it in the final pass instead of writing a shared product out.
   */
  Operand<W> clipped(Operand<W> x, Operand<W> rcp, Operand<W> scale) {
    return held(tf.math.mul(x, tf.math.mul(rcp, scale)));
  }

  /**
   * f = R ⊗ C / 1ᵀR (Alg. 2 l.9) over the last two axes, leading axes as batch axes. Written as
   * R ⊗ (C / ΣR), since C_j ≤ ΣR while R_i·C_j could overflow; 0 where ΣR = 0.
   */
  Operand<W> factoredFisher(Operand<W> row, Operand<W> col) {
    Operand<W> rowSum = tf.sum(row, tf.constant(-1), org.tensorflow.op.core.Sum.keepDims(true));
    Operand<W> colShare = tf.math.divNoNan(col, rowSum);
    return tf.math.mul(tf.expandDims(row, tf.constant(-1)), tf.expandDims(colShare, tf.constant(-2)));
  }

  /** t as W (Alg. 1 l.4: t ← t + 1 is taken once, in int64, by the caller); exact up to 2^24 in float32. */
  Operand<W> stepNumber(Operand<TInt64> t) {
    return cast(t);
  }
}
