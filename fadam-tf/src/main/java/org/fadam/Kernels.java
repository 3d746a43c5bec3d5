package org.fadam;

import java.util.ArrayList;
import java.util.List;
import java.util.stream.IntStream;
import org.tensorflow.Operand;
import org.tensorflow.Output;
import org.tensorflow.ndarray.Shape;
import org.tensorflow.op.Ops;
import org.tensorflow.proto.DataType;
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
  /** Whether the step is built for XLA (see {@link #sums}). */
  private final boolean xla;
  /** Largest finite W: where {@link #clip} holds an overflowed element. */
  private final double maxValue;
  /** Squares below this may have underflowed: {@link #rms} then rescales. */
  private final double underflowMean;
  /** The rescaling factor 2^k of {@link #rms}. */
  private final double rescale;

  private Kernels(Ops tf, Class<W> type, boolean xla) {
    this.tf = tf;
    this.type = type;
    this.xla = xla;
    boolean f64 = type == TFloat64.class;
    this.maxValue = f64 ? Double.MAX_VALUE : Float.MAX_VALUE;
    this.underflowMean = f64 ? Math.scalb(1.0, -500) : Math.scalb(1.0, -60);
    this.rescale = f64 ? Math.scalb(1.0, 500) : Math.scalb(1.0, 64);
  }

  /** Kernels in float64 for float64 parameters, float32 for every other float dtype (DESIGN). */
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

  /** Sum over all axes of a tensor of the given static shape (a scalar stays itself). */
  Operand<W> sumAll(Operand<W> x, Shape shape) {
    int[] axes = IntStream.range(0, shape.numDimensions()).toArray();
    return tf.sum(x, tf.constant(axes));
  }

  /** Smallest tensor summed in the XLA forms below (smaller ones: one plain reduction). */
  static final long MIN_SPLIT_SIZE = 1 << 14;

  /** The largest divisor of d in [lo, hi], or 0. */
  private static int divisorIn(long d, int lo, int hi) {
    for (int r = hi; r >= lo; r--) {
      if (d % r == 0) {
        return r;
      }
    }
    return 0;
  }

  /**
   * The row length for summing over the last axis of this shape under XLA: the largest divisor of
   * the last dimension in [8, 32], or 0 where a plain reduction is used (not XLA, a small tensor,
   * no such divisor).
   */
  private int rowLength(Shape shape) {
    int r = shape.numDimensions();
    if (!xla || r == 0 || shape.size() < MIN_SPLIT_SIZE) {
      return 0;
    }
    return divisorIn(shape.get(r - 1), 8, 32);
  }

  /** d with axis cut into [parts, d[axis] / parts]. */
  private static long[] cut(long[] d, int axis, long parts) {
    long[] v = new long[d.length + 1];
    System.arraycopy(d, 0, v, 0, axis);
    v[axis] = parts;
    v[axis + 1] = d[axis] / parts;
    System.arraycopy(d, axis + 1, v, axis + 2, d.length - axis - 1);
    return v;
  }

  /** Slices {@link #halvedSum} folds the first axis into. */
  private static final int HALVES = 32;
  /**
   * Below this size (in elements) {@link #sums} folds in halves, above it sums in rows: the rows'
   * 32-long add chains are scalar and latency-bound, which costs more than the folds' half-size
   * writes while the tensor is in cache (measured: a 100-variable model's step 124 → 66 ms), and
   * less once it streams from memory (4096×4096: 58 against 80 ms).
   */
  static final long HALVING_MAX_SIZE = 1 << 22;

  /**
   * The sum of x's {@value #HALVES} slices along its first axis ([32, d0/32, …] → [d0/32, …]),
   * folded in halves: first half + second half, five times. Every add is element-wise, so XLA
   * emits it vectorised; no add takes another add as input, so grappler's arithmetic optimizer does
   * not collapse them into an AddN (which its memory optimizer may turn into a TemporaryVariable
   * XLA cannot compile). XLA writes the first fold (half of x) out: it fuses a producer into at
   * most 15 reads.
   */
  private Operand<W> halvedSum(Operand<W> x, long[] d) {
    long[] view = cut(d, 0, HALVES);
    Operand<W> v = tf.reshape(x, tf.constant(view));
    for (long half = HALVES / 2; half >= 1; half /= 2) {
      view[0] = half;
      v = tf.math.add(slab(v, view, 0, 0), slab(v, view, 0, half));
    }
    long[] partial = d.clone();
    partial[0] = d[0] / HALVES;
    return tf.reshape(v, tf.constant(partial));
  }

  /** The slab of v that starts at {@code from} along {@code axis}, of the shape {@code size}. */
  private Operand<W> slab(Operand<W> v, long[] size, int axis, long from) {
    long[] begin = new long[size.length];
    begin[axis] = from;
    return tf.slice(v, tf.constant(begin), tf.constant(size));
  }

  /**
   * The sums over all elements of several same-shaped element-wise terms. Under XLA, from {@value
   * #MIN_SPLIT_SIZE} elements: either, below {@value #HALVING_MAX_SIZE} elements and with a first
   * axis divisible by 32, each term's first axis is folded in halves ({@link #halvedSum}), or (see
   * {@link #rowLength}) the last axis is cut into rows of r ≤ 32, the terms laid side by side
   * ([…, d/r, terms, r]) and each row summed (one pass); then the partial sums, behind an {@code XlaOptimizationBarrier}, are summed again. XLA
   * CPU rewrites a plain large reduction into reduce-windows that never fuse with their producer,
   * so every term would first be written out as a full-size array (DESIGN); these forms fuse the
   * terms with their producer. Axes are only cut, never merged: XLA then computes each element's
   * source index with multiplies and adds, not a division per element.
   */
  List<Operand<W>> sums(Shape shape, List<Operand<W>> terms) {
    int row = rowLength(shape);
    List<Operand<W>> out = new ArrayList<>();
    long[] d = shape.asArray();
    Operand<W> total;
    if (xla && shape.size() >= MIN_SPLIT_SIZE && shape.size() < HALVING_MAX_SIZE
        && d[0] % HALVES == 0) {
      List<Operand<W>> partials = new ArrayList<>();
      for (Operand<W> x : terms) {
        partials.add(halvedSum(x, d));
      }
      Operand<W> side = tf.stack(partials, org.tensorflow.op.core.Stack.axis(1L)); // [d0/32, terms, …]
      int[] rest = IntStream.range(0, d.length + 1).filter(a -> a != 1).toArray();
      total = tf.sum(barrier(side), tf.constant(rest)); // [terms]
    } else if (row != 0) {
      int last = d.length - 1;
      long[] view = cut(d, last, d[last] / row); // […, d/r, r]
      List<Operand<W>> rows = new ArrayList<>();
      for (Operand<W> x : terms) {
        rows.add(tf.reshape(x, tf.constant(view)));
      }
      Operand<W> side = tf.stack(rows, org.tensorflow.op.core.Stack.axis((long) d.length)); // […, d/r, terms, r]
      Operand<W> rowSums = tf.sum(side, tf.constant(d.length + 1)); // […, d/r, terms]
      int[] rest = IntStream.range(0, d.length + 1).filter(a -> a != d.length).toArray();
      total = tf.sum(barrier(rowSums), tf.constant(rest)); // [terms]
    } else {
      terms.forEach(x -> out.add(sumAll(x, shape)));
      return out;
    }
    for (int i = 0; i < terms.size(); i++) {
      out.add(tf.reshape(tf.slice(total, tf.constant(new int[] {i}), tf.constant(new int[] {1})),
          tf.constant(new long[0])));
    }
    return out;
  }

  /**
   * The sum of x over one axis (≥ 0): FAdafactor's row and column sums (Alg. 2 l.7–8). Under XLA,
   * the last axis is summed in rows as in {@link #sums}; any other axis is cut into k ≤ 8 slices
   * that are added element-wise (one vectorised pass: XLA CPU emits a fused reduction over a
   * non-minor axis as a scalar, strided loop, and fuses a producer into at most 15 reads), and the
   * partial sum, behind a barrier, summed over the rest of the axis.
   */
  Operand<W> axisSum(Operand<W> x, Shape shape, int axis) {
    long[] d = shape.asArray();
    if (axis == d.length - 1) {
      int row = rowLength(shape);
      if (row == 0) {
        return tf.sum(x, tf.constant(axis));
      }
      Operand<W> rowSums = tf.sum(tf.reshape(x, tf.constant(cut(d, axis, d[axis] / row))), tf.constant(axis + 1));
      return tf.sum(barrier(rowSums), tf.constant(axis));
    }
    int k = xla && shape.size() >= MIN_SPLIT_SIZE ? divisorIn(d[axis], 2, 8) : 0;
    if (k == 0) {
      return tf.sum(x, tf.constant(axis));
    }
    long[] view = cut(d, axis, k); // […, k, d/k, …]
    Operand<W> v = tf.reshape(x, tf.constant(view));
    long[] size = view.clone();
    size[axis] = 1;
    long[] partialShape = d.clone();
    partialShape[axis] = d[axis] / k;
    Operand<W> partial = null;
    for (int i = 0; i < k; i++) {
      Operand<W> slice = tf.reshape(slab(v, size, axis, i), tf.constant(partialShape));
      partial = partial == null ? slice : tf.math.add(partial, slice);
    }
    return tf.sum(barrier(partial), tf.constant(axis));
  }

  /** XLA's optimization barrier: keeps XLA from merging the two stages of {@link #sums}. */
  @SuppressWarnings("unchecked")
  private Operand<W> barrier(Operand<W> x) {
    Output<?> out = tf.scope().opBuilder("XlaOptimizationBarrier", "barrier")
        .addInputList(new Output<?>[] {x.asOutput()})
        .setAttr("T", new DataType[] {x.asOutput().dataType()})
        .build()
        .output(0);
    return (Operand<W>) out;
  }

  /**
   * The two sums every step starts from: Σg² and Σ(g·2^k)², the latter for {@link #rms} when the
   * squares may have underflowed. The step is finite exactly when Σg² is: NaN, ±Inf, a square the
   * dtype cannot hold and a sum that overflows all make it non-finite. (g·2^k goes through
   * {@link #held} for the reason given at {@link #clipTerms}.)
   */
  Stats stats(Operand<W> g, Shape shape) {
    List<Operand<W>> s =
        sums(shape, List.of(tf.math.square(g), tf.math.square(held(tf.math.mul(g, c(rescale))))));
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

  /**
   * y with an element beyond the dtype's range (x/d overflowed: a gradient RMS below ~1e-16 and a
   * large θ) held at ±max, so that the clip below stays finite.
   */
  Operand<W> held(Operand<W> y) {
    return tf.select(tf.math.isInf(y), tf.math.mul(tf.math.sign(y), c(maxValue)), y);
  }

  /**
   * The terms {@link #clipScale} needs: y² and (y·2^-k)² of a {@link #held} y. Each scaled value
   * goes through {@link #held} too: XLA rewrites (y·a)² as y²·a², and a² = 2^∓128 is not a float32
   * normal number (it would flush the guard to 0, or overflow); the select keeps the order.
   */
  List<Operand<W>> clipTerms(Operand<W> heldY) {
    return List.of(tf.math.square(heldY), tf.math.square(held(tf.math.div(heldY, c(rescale)))));
  }

  /**
   * 1/max(1, RMS(y)/c), the factor of the RMS clip y/max(1, RMS(y)/c) (Alg. 1 l.10, l.13; Alg. 3
   * l.9), from the sums of {@link #clipTerms}: RMS(y) comes from the sum of (y·2^-k)² where that
   * of y² overflows, so the result stays finite.
   */
  Operand<W> clipScale(Operand<W> sumSq, Operand<W> scaledSumSq, double clip, Shape shape) {
    Operand<W> n = c(shape.size());
    Operand<W> mean = tf.math.div(sumSq, n);
    Operand<W> rmsY = tf.select(tf.math.isFinite(mean), tf.math.sqrt(mean),
        tf.math.mul(tf.math.sqrt(tf.math.div(scaledSumSq, n)), c(rescale)));
    return tf.math.reciprocal(tf.math.maximum(c(1), tf.math.div(rmsY, c(clip))));
  }

  /**
   * 1/d, the one divide of the step (Alg. 1 l.9, l.12 multiply by it); 0 where d = 0, the DESIGN
   * zero rule (there x/d would be 0/0): 1/0 = ∞ is replaced, so d has one reader (XLA writes an
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

  /** A scalar chosen by the non-finite policy: {@code kept} if the step is kept (or no policy). */
  Operand<W> ifKept(Operand<TBool> keep, Operand<W> kept, double skipped) {
    return keep == null ? kept : tf.select(keep, kept, c(skipped));
  }

  /** g, or zeros where the policy skips the step (a scalar-predicated select, fused). */
  Operand<W> gradientIfKept(Operand<TBool> keep, Operand<W> g) {
    return keep == null ? g : tf.select(keep, g, tf.zerosLike(g)); // keep broadcasts
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
