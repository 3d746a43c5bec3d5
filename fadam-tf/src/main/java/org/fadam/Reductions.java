package org.fadam;

import java.util.ArrayList;
import java.util.List;
import java.util.stream.IntStream;
import org.tensorflow.Operand;
import org.tensorflow.Output;
import org.tensorflow.ndarray.Shape;
import org.tensorflow.op.Ops;
import org.tensorflow.proto.DataType;
import org.tensorflow.types.family.TFloating;

/**
 * The step's reductions: sums over whole tensors ({@link #sums}) and over one axis ({@link
 * #axisSum}), in the forms XLA CPU fuses with their producers when the step is compiled, and as
 * plain reductions otherwise. Numerically they are sums; only the order of the additions differs
 * between the forms (docs/design.md, "XLA CPU performance facts").
 *
 * @param <W> the working dtype
 */
final class Reductions<W extends TFloating> {

  private final Ops tf;
  /** Whether the step is built for XLA: the fused forms below are used. */
  private final boolean xla;

  Reductions(Kernels<W> k, boolean xla) {
    this.tf = k.tf;
    this.xla = xla;
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
   * so every term would first be written out as a full-size array (docs/design.md, "XLA CPU performance facts"); these forms fuse the
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
}
