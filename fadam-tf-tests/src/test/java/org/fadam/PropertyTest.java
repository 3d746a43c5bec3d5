package org.fadam;

import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.stream.Stream;
import org.fadam.reference.PaperReference;
import org.fadam.Algorithm;
import org.fadam.reference.PaperReference.Hyper;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;
import org.tensorflow.Graph;
import org.tensorflow.Operand;
import org.tensorflow.Session;
import org.tensorflow.framework.optimizers.Optimizer.GradAndVar;
import org.tensorflow.ndarray.Shape;
import org.tensorflow.ndarray.buffer.DataBuffers;
import org.tensorflow.op.Op;
import org.tensorflow.op.Ops;
import org.tensorflow.op.core.Placeholder;
import org.tensorflow.op.core.Variable;
import org.tensorflow.types.TFloat64;
import org.tensorflow.types.family.TType;

/**
 * Seeded random properties over extreme but finite inputs: for every optimizer and dtype, a graph
 * of 24 variables of random shapes (scalars, size 0 and 1, up to rank 4, factored and not) takes
 * 40 steps of gradients whose per-tensor scale ranges from 1e-30 to the largest the dtype can
 * square, zero tensors and mixed signs, on parameters from tiny to huge. No parameter or slot may
 * ever be NaN or ±Inf. In float64 the float64 reference agrees everywhere; in float32 it agrees
 * for every tensor whose gradients never held a non-zero |g| < 1e-16: below that (1 − β2)·g² is
 * not a float32 normal number (TensorFlow flushes subnormals to zero), so the float32 Fisher cannot
 * hold the reference's value (only finiteness is promised there).
 * 4 optimizers × 4 dtypes × 24 variables × 40 steps = 15,360 checked tensor steps.
 */
class PropertyTest {

  static final int VARIABLES = 24;
  static final int STEPS = 40;

  static Stream<Arguments> cases() {
    List<Arguments> out = new ArrayList<>();
    for (Algorithm alg : Algorithm.values()) {
      for (String dtype : List.of("float64", "float32", "float16", "bfloat16")) {
        out.add(Arguments.of(alg, dtype));
      }
    }
    return out.stream();
  }

  /** Largest |x| whose square the dtype holds, and the smallest scale worth drawing. */
  static double maxScale(String dtype) {
    return dtype.equals("float16") ? 255 : 1.8e19;
  }

  static double minScale(String dtype) {
    return dtype.equals("float16") ? 1e-4 : 1e-30;
  }

  /** Rounds to what the variable's dtype holds (float16/bfloat16 are not compared). */
  static double round(String dtype, double x) {
    return dtype.equals("float64") ? x : (double) (float) x;
  }

  static int[] randomShape(Random rnd, int i) {
    return switch (i % 8) {
      case 0 -> new int[0];
      case 1 -> new int[] {rnd.nextInt(3)}; // sizes 0, 1, 2
      case 2 -> new int[] {1, 1};
      case 3 -> new int[] {2 + rnd.nextInt(4), 2 + rnd.nextInt(4)}; // factored at minDim 2
      case 4 -> new int[] {2, 1 + rnd.nextInt(3), 2, 1 + rnd.nextInt(3)}; // rank 4
      case 5 -> new int[] {3, 0};
      case 6 -> new int[] {1 + rnd.nextInt(2), 3, 4}; // batch of factored matrices
      default -> new int[] {5 + rnd.nextInt(20)};
    };
  }

  @ParameterizedTest(name = "{0} {1}")
  @MethodSource("cases")
  void neverNanOrInfAndAgreesWithTheReference(Algorithm alg, String dtype) {
    Random rnd = new Random(31L * alg.ordinal() + dtype.hashCode());
    Hyper h = ConformanceTest.paperDefaults(alg).withFactoredMinDim(2).withLr(0.01);
    FisherOptions options = FisherOptions.builder().factoredMinDim(2)
        .nonFinite(FisherOptions.NonFinitePolicy.PROPAGATE).build();
    Class<? extends TType> type = org.fadam.tools.StepHarness.dtypeClass(dtype);
    try (Graph g = new Graph()) {
      Ops tf = Ops.create(g);
      List<int[]> shapes = new ArrayList<>();
      List<Variable<? extends TType>> vars = new ArrayList<>();
      List<Placeholder<TFloat64>> grads = new ArrayList<>();
      List<PaperReference.State> refs = new ArrayList<>();
      List<GradAndVar<? extends TType>> pairs = new ArrayList<>();
      double[] thetaScales = dtype.equals("float16") ? new double[] {1e-4, 1, 1e4} : new double[] {1e-20, 1, 1e6, 1e30};
      for (int i = 0; i < VARIABLES; i++) {
        int[] shape = randomShape(rnd, i);
        shapes.add(shape);
        int n = Arrays.stream(shape).reduce(1, (a, b) -> a * b);
        double scale = thetaScales[rnd.nextInt(thetaScales.length)];
        double[] theta0 = new double[n];
        for (int k = 0; k < n; k++) {
          theta0[k] = round(dtype, scale * rnd.nextGaussian());
        }
        Shape s = Shape.of(Arrays.stream(shape).asLongStream().toArray());
        Variable<? extends TType> v = tf.withName("v" + i).variable(tf.dtypes.cast(tf.constant(s, DataBuffers.of(theta0, true, false)), type));
        Placeholder<TFloat64> gp = tf.withName("g" + i).placeholder(TFloat64.class, Placeholder.shape(s));
        vars.add(v);
        grads.add(gp);
        pairs.add(OptimizerContractTest.gv(tf.dtypes.cast(gp, type), v));
        refs.add(PaperReference.init(alg, shape, theta0, h));
      }
      FisherOptimizer opt = FisherOptimizer.create(alg, g, alg.displayName(), h.lr(), options);
      Op train = opt.applyGradients(pairs, "train");
      List<Operand<TFloat64>> fetches = new ArrayList<>();
      List<String> names = new ArrayList<>();
      for (int i = 0; i < VARIABLES; i++) {
        fetches.add(tf.dtypes.cast(tf.identity(vars.get(i)), TFloat64.class));
        names.add("theta");
        for (String slot : refs.get(i).slots.keySet()) {
          fetches.add(tf.dtypes.cast(tf.identity(opt.getSlot(vars.get(i).asOutput(), slot).orElseThrow()), TFloat64.class));
          names.add(slot);
        }
      }
      boolean[] comparable = new boolean[VARIABLES];
      Arrays.fill(comparable, dtype.equals("float64") || dtype.equals("float32"));
      double tol = dtype.equals("float64") ? 1e-9 : 1e-3;
      try (Session s = new Session(g)) {
        s.initialize();
        for (int step = 1; step <= STEPS; step++) {
          Session.Runner runner = s.runner();
          List<TFloat64> fed = new ArrayList<>();
          for (int i = 0; i < VARIABLES; i++) {
            int n = Arrays.stream(shapes.get(i)).reduce(1, (a, b) -> a * b);
            double[] gv = gradient(rnd, dtype, n, PaperReference.isFactored(alg, shapes.get(i), h));
            PaperReference.step(alg, refs.get(i), gv, h);
            if (dtype.equals("float32")) {
              for (double x : gv) {
                comparable[i] &= x == 0 || Math.abs(x) >= 1e-16;
              }
            }
            TFloat64 t = TFloat64.tensorOf(Shape.of(Arrays.stream(shapes.get(i)).asLongStream().toArray()), DataBuffers.of(gv, true, false));
            fed.add(t);
            runner.feed(grads.get(i), t);
          }
          runner.addTarget(train).run().close();
          fed.forEach(TFloat64::close);
          Session.Runner read = s.runner();
          fetches.forEach(read::fetch);
          try (var result = read.run()) {
            int f = 0;
            for (int i = 0; i < VARIABLES; i++) {
              PaperReference.State ref = refs.get(i);
              List<double[]> wants = new ArrayList<>();
              wants.add(ref.theta);
              wants.addAll(ref.slots.values());
              for (double[] want : wants) {
                TFloat64 t = (TFloat64) result.get(f);
                double[] got = new double[(int) t.shape().size()];
                t.copyTo(DataBuffers.of(got, false, false));
                String where = alg + " " + dtype + " v" + i + " " + Arrays.toString(shapes.get(i)) + " step " + step + " " + names.get(f);
                for (double x : got) {
                  assertTrue(Double.isFinite(x), where + ": " + x);
                }
                if (comparable[i]) {
                  agree(where, want, got, tol);
                }
                f++;
              }
            }
          }
        }
      }
    }
  }

  /** A gradient of random scale (log-uniform over the dtype's range), sometimes all zero. */
  static double[] gradient(Random rnd, String dtype, int n, boolean factored) {
    double[] g = new double[n];
    if (rnd.nextInt(10) == 0) {
      return g;
    }
    double lo = Math.log(minScale(dtype));
    double hi = Math.log(factored ? maxScale(dtype) / Math.sqrt(Math.max(1, 4.0 * n)) : maxScale(dtype) / 4);
    double scale = Math.exp(lo + rnd.nextDouble() * (hi - lo));
    boolean sameSign = rnd.nextBoolean();
    for (int k = 0; k < n; k++) {
      double x = scale * rnd.nextGaussian();
      g[k] = round(dtype, sameSign ? Math.abs(x) : x);
    }
    return g;
  }

  /** Mixed tolerance as in {@link ConformanceTest#compare}, with a tenth-of-max floor. */
  static void agree(String where, double[] want, double[] got, double tol) {
    double scale = 0;
    for (double w : want) {
      scale = Math.max(scale, Math.abs(w));
    }
    for (int k = 0; k < want.length; k++) {
      if (!Double.isFinite(want[k])) {
        continue; // the reference itself overflowed: only finiteness is required
      }
      double allowed = tol * Math.max(Math.abs(want[k]), 0.1 * scale);
      if (!(Math.abs(got[k] - want[k]) <= allowed)) {
        fail(where + "[" + k + "] = " + got[k] + ", reference " + want[k]);
      }
    }
  }
}
