package org.fadam;

import java.util.stream.IntStream;
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
  /** Largest finite W: where {@link #clip} holds an overflowed element. */
  private final double maxValue;
  /** Squares below this may have underflowed: {@link #rms} then rescales. */
  private final double underflowMean;
  /** The rescaling factor 2^k of {@link #rms}. */
  private final double rescale;

  private Kernels(Ops tf, Class<W> type) {
    this.tf = tf;
    this.type = type;
    boolean f64 = type == TFloat64.class;
    this.maxValue = f64 ? Double.MAX_VALUE : Float.MAX_VALUE;
    this.underflowMean = f64 ? Math.scalb(1.0, -500) : Math.scalb(1.0, -60);
    this.rescale = f64 ? Math.scalb(1.0, 500) : Math.scalb(1.0, 64);
  }

  /** Kernels in float64 for float64 parameters, float32 for every other float dtype (DESIGN). */
  @SuppressWarnings("unchecked")
  static Kernels<? extends TFloating> forParameter(Ops tf, Class<? extends TType> paramType) {
    Class<? extends TFloating> w = workingType(paramType);
    return new Kernels<>(tf, (Class<TFloating>) w);
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

  /** Sum over all axes of a tensor of the given static shape (a scalar stays itself). */
  Operand<W> sumAll(Operand<W> x, Shape shape) {
    int[] axes = IntStream.range(0, shape.numDimensions()).toArray();
    return tf.sum(x, tf.constant(axes));
  }

  /**
   * RMS(g) for the adaptive ε (Alg. 1 l.8). Where mean(g²) is so small that squares may have
   * underflowed (|g| ≲ 1e-23 in float32), it is recomputed from g·2^k, so that a tiny but non-zero
   * gradient never gets ε̂ = 0. Both sums read g once (XLA fuses them into one pass).
   */
  Operand<W> rms(Operand<W> x, Operand<W> sumSq, Shape shape) {
    Operand<W> n = c(shape.size());
    Operand<W> mean = tf.math.div(sumSq, n);
    Operand<W> scaled = tf.math.div(sumAll(tf.math.square(tf.math.mul(x, c(rescale))), shape), n);
    Operand<TBool> small = tf.math.less(mean, c(underflowMean));
    return tf.select(
        small, tf.math.div(tf.math.sqrt(scaled), c(rescale)), tf.math.sqrt(mean));
  }

  /**
   * Whether every element of x is finite and its square is too (max|x|² finite); x − x is NaN
   * exactly where x is NaN or ±Inf, so its sum catches those whatever max does with NaN.
   */
  Operand<TBool> representable(Operand<W> x, Shape shape) {
    if (shape.size() == 0) {
      return tf.constant(true);
    }
    Operand<W> maxAbs = tf.max(tf.math.abs(x), tf.constant(IntStream.range(0, shape.numDimensions()).toArray()));
    return tf.math.logicalAnd(
        tf.math.isFinite(tf.math.square(maxAbs)), tf.math.isFinite(sumAll(tf.math.sub(x, x), shape)));
  }

  /** 1 − β^t, accurate in W: −expm1(t·log1p(β − 1)) (DESIGN: no naive β^t in float32). */
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

  /** ḡ = x/d (Alg. 1 l.9 with x = g, l.12 with x = θ); 0 where d = 0 (DESIGN zero rule). */
  Operand<W> naturalGradient(Operand<W> x, Operand<W> d) {
    return tf.math.divNoNan(x, d);
  }

  /**
   * y/max(1, RMS(y)/c) (Alg. 1 l.10, l.13; Alg. 3 l.9). An element of y beyond the dtype's range
   * (x/d overflowed: a gradient RMS below ~1e-16 and a large θ) is held at ±max, and RMS(y) is
   * computed from y·2^-k where y² overflows, so the result stays finite.
   */
  Operand<W> clip(Operand<W> y, double clip, Shape shape) {
    Operand<W> held = tf.select(tf.math.isInf(y), tf.math.mul(tf.math.sign(y), c(maxValue)), y);
    Operand<W> n = c(shape.size());
    Operand<W> mean = tf.math.div(sumAll(tf.math.square(held), shape), n);
    Operand<W> scaled = tf.math.div(sumAll(tf.math.square(tf.math.div(held, c(rescale))), shape), n);
    Operand<W> rmsY = tf.select(tf.math.isFinite(mean), tf.math.sqrt(mean),
        tf.math.mul(tf.math.sqrt(scaled), c(rescale)));
    return tf.math.div(held, tf.math.maximum(c(1), tf.math.div(rmsY, c(clip))));
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

  /** t = step + 1 as W (Alg. 1 l.4); exact up to 2^24 steps in float32. */
  Operand<W> nextStep(Operand<TInt64> step) {
    return cast(tf.math.add(step, tf.constant(1L)));
  }
}
