package org.fadam;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import java.util.Random;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.tensorflow.Graph;
import org.tensorflow.Operand;
import org.tensorflow.Session;
import org.tensorflow.ndarray.Shape;
import org.tensorflow.ndarray.buffer.DataBuffers;
import org.tensorflow.op.Ops;
import org.tensorflow.types.TFloat32;

/**
 * The XLA forms of the step's sums (rows of up to 32 along the last axis, element-wise slices
 * along another axis; see {@link Kernels#sums} and {@link Kernels#axisSum}) give the sums a float64
 * loop in Java gives, within float32 round-off, for shapes that take each form and for shapes that
 * fall back to a plain reduction.
 */
class KernelsSumsTest {

  @ParameterizedTest(name = "{0}")
  @ValueSource(strings = {"256x384", "96x200", "40000", "3x64x100", "130x129", "256x129", "8x4096", "100x100"})
  void sumsAndAxisSumsMatchAFloat64Loop(String dims) {
    long[] d = java.util.Arrays.stream(dims.split("x")).mapToLong(Long::parseLong).toArray();
    Shape shape = Shape.of(d);
    int n = (int) shape.size();
    float[] x = new float[n];
    Random r = new Random(dims.hashCode());
    for (int i = 0; i < n; i++) {
      x[i] = (float) (r.nextGaussian() * Math.exp(r.nextGaussian()));
    }
    try (Graph g = new Graph(); Session s = new Session(g)) {
      Ops tf = Ops.create(g);
      Operand<TFloat32> xt = tf.constant(shape, DataBuffers.of(x, true, false));
      @SuppressWarnings("unchecked")
      Kernels<TFloat32> k = (Kernels<TFloat32>) Kernels.forParameter(tf, TFloat32.class, true);
      List<Operand<TFloat32>> sums = k.reduce.sums(shape, List.of(xt, tf.math.square(xt), tf.math.abs(xt)));
      double sum = 0;
      double sumSq = 0;
      double sumAbs = 0;
      double sumAbsSq = 0;
      for (float v : x) {
        sum += v;
        sumSq += (double) v * v;
        sumAbs += Math.abs(v);
      }
      sumAbsSq = sumSq;
      assertEquals(sum, scalar(s, sums.get(0)), 2e-6 * sumAbs, "sum of x");
      assertEquals(sumSq, scalar(s, sums.get(1)), 2e-6 * sumAbsSq, "sum of x²");
      assertEquals(sumAbs, scalar(s, sums.get(2)), 2e-6 * sumAbs, "sum of |x|");
      if (d.length >= 2) {
        for (int axis : new int[] {d.length - 1, d.length - 2}) {
          float[] got = values(s, k.reduce.axisSum(tf.math.abs(xt), shape, axis));
          double[] want = axisSumOfAbs(x, d, axis);
          assertEquals(want.length, got.length);
          for (int i = 0; i < want.length; i++) {
            assertEquals(want[i], got[i], 2e-6 * Math.max(want[i], 1e-30), "axis " + axis + " entry " + i);
          }
        }
      }
    }
  }

  /** Σ|x| over one axis of a row-major tensor, in float64. */
  private static double[] axisSumOfAbs(float[] x, long[] d, int axis) {
    long inner = 1;
    for (int a = axis + 1; a < d.length; a++) {
      inner *= d[a];
    }
    long outer = x.length / (inner * d[axis]);
    double[] out = new double[(int) (outer * inner)];
    for (long o = 0; o < outer; o++) {
      for (long j = 0; j < d[axis]; j++) {
        for (long i = 0; i < inner; i++) {
          out[(int) (o * inner + i)] += Math.abs(x[(int) ((o * d[axis] + j) * inner + i)]);
        }
      }
    }
    return out;
  }

  private static double scalar(Session s, Operand<TFloat32> v) {
    try (var res = s.runner().fetch(v).run()) {
      float f = ((TFloat32) res.get(0)).getFloat();
      assertTrue(Float.isFinite(f));
      return f;
    }
  }

  private static float[] values(Session s, Operand<TFloat32> v) {
    try (var res = s.runner().fetch(v).run()) {
      TFloat32 t = (TFloat32) res.get(0);
      float[] out = new float[(int) t.shape().size()];
      t.copyTo(DataBuffers.of(out, false, false));
      return out;
    }
  }
}
