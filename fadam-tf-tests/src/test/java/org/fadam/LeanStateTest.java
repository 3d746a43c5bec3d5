package org.fadam;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.fadam.reference.PaperReference;
import org.fadam.reference.PaperReference.Hyper;
import org.fadam.tools.StepHarness;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.tensorflow.Graph;
import org.tensorflow.Session;
import org.tensorflow.ndarray.Shape;
import org.tensorflow.op.Ops;
import org.tensorflow.types.TBfloat16;
import org.tensorflow.types.TFloat32;
import org.tensorflow.types.TFloat64;

/**
 * Lean optimizer state: β1 = 0 keeps no m (ConformanceTest checks its numbers), and {@code
 * momentumDtype(TBfloat16)} keeps m in bfloat16, against the float64 reference with m rounded to
 * bfloat16 after every step.
 */
class LeanStateTest {

  /** Round to nearest even at bfloat16 (8 significant bits), from float32 as TF's cast does. */
  static double bfloat16(double x) {
    int bits = Float.floatToRawIntBits((float) x);
    int lsb = (bits >>> 16) & 1;
    return Float.intBitsToFloat((bits + 0x7fff + lsb) & 0xffff0000);
  }

  @ParameterizedTest(name = "{0}")
  @EnumSource(Algorithm.class)
  void bfloat16MomentumFollowsTheReferenceWithMRoundedEachStep(Algorithm alg) {
    int[] shape = {3, 4};
    Hyper h = ConformanceTest.paperDefaults(alg).withFactoredMinDim(3).withLr(0.01);
    Random rnd = new Random(11 + alg.ordinal());
    double[] theta0 = new double[12];
    for (int i = 0; i < 12; i++) {
      theta0[i] = (float) rnd.nextGaussian();
    }
    PaperReference.State ref = PaperReference.init(alg, shape, theta0, h);
    FisherOptions o = ConformanceTest.options(alg, h).toBuilder().momentumDtype(TBfloat16.class).build();
    double worstTheta = 0;
    try (StepHarness graph = new StepHarness(alg, "float32", h.lr(), o, new long[] {3, 4}, theta0)) {
      for (int step = 1; step <= 6; step++) {
        double[] g = new double[12];
        for (int i = 0; i < 12; i++) {
          g[i] = (float) rnd.nextGaussian();
        }
        PaperReference.step(alg, ref, g, h);
        double[] m = ref.slots.get(Algorithm.M);
        for (int i = 0; i < m.length; i++) {
          m[i] = bfloat16(m[i]); // the stored m
        }
        graph.step(g);
        Map<String, double[]> got = graph.state();
        for (int i = 0; i < m.length; i++) {
          assertEquals(bfloat16(got.get(Algorithm.M)[i]), got.get(Algorithm.M)[i], 0, "m is bfloat16-valued");
          // one bfloat16 ulp: the float32 m before rounding may sit on the other side of a tie
          assertEquals(m[i], got.get(Algorithm.M)[i], Math.ulp((float) m[i]) * 65536, "m[" + i + "] step " + step);
          worstTheta = Math.max(worstTheta, Math.abs(ref.theta[i] - got.get("theta")[i]));
        }
      }
    }
    assertTrue(worstTheta < 1e-5, alg + ": θ against the reference: " + worstTheta);
  }

  @Test
  void theSlotsBytesAndBuildErrors(@TempDir Path dir) throws Exception {
    FisherOptions noM = FisherOptions.builder().beta1(0).build();
    FisherOptions bf16 = FisherOptions.builder().momentumDtype(TBfloat16.class).build();
    Shape big = Shape.of(4096, 4096);
    assertEquals(List.of("fim_row", "fim_col"), Algorithm.FADAFACTOR.slotNames(big, noM));
    assertEquals(List.of("fim"), Algorithm.FADAM.slotNames(Shape.of(3), noM));
    // bytes moved per parameter: FAdafactor's m read and written (2 × 4 B), 2 × 2 B in bfloat16, none
    assertEquals(6 * 4 + 8, Algorithm.FADAFACTOR.minimumBytesPerParameter(big, FisherOptions.defaults(), 4));
    assertEquals(6 * 4 + 4, Algorithm.FADAFACTOR.minimumBytesPerParameter(big, bf16, 4));
    assertEquals(6 * 4, Algorithm.FADAFACTOR.minimumBytesPerParameter(big, noM, 4));
    assertEquals("`momentumDtype` TBfloat16 is set but `beta1` is 0, which keeps no m: drop one of them",
        assertThrows(IllegalArgumentException.class,
            () -> FisherOptions.builder().beta1(0).momentumDtype(TBfloat16.class).build()).getMessage());
    assertEquals("`momentumDtype` must be TBfloat16 (or unset, the working dtype); got TFloat64",
        assertThrows(IllegalArgumentException.class,
            () -> FisherOptions.builder().momentumDtype(TFloat64.class).build()).getMessage());
    // the fused step: state bytes per parameter of a 256×512 FAdafactor, and m's dtype through export
    long params = 256 * 512;
    double[] perParam = new double[3];
    int i = 0;
    for (FisherOptions o : List.of(FisherOptions.defaults(), bf16, noM)) {
      try (Graph g = new Graph()) {
        Ops tf = Ops.create(g);
        var w = ResourceVariable.create(tf, "w", tf.withInitScope().fill(
            tf.withInitScope().constant(new long[] {256, 512}), tf.withInitScope().constant(0.5f)));
        FisherTrainStep step = FisherTrainStep.builder(g).fadafactor(0.01, o).variables(List.of(w))
            .loss((ops, in, v) -> ops.math.mean(ops.math.square(v.float32("w")), ops.constant(new int[] {0, 1})))
            .build();
        perParam[i] = (double) step.optimizerStateBytes() / params;
        if (o == noM) {
          assertTrue(step.slot(w, Algorithm.M).isEmpty(), "no m");
        }
        if (o == bf16) {
          assertEquals(TBfloat16.class, step.slot(w, Algorithm.M).orElseThrow().type());
          try (Session s = new Session(g)) {
            s.initialize();
            for (int k = 0; k < 3; k++) {
              step.train(s, Map.of());
            }
            step.export(s, dir.resolve("bf16"));
            try (TFloat32 before = (TFloat32) s.runner()
                .fetch(tf.dtypes.cast(step.slot(w, Algorithm.M).orElseThrow().read(tf), TFloat32.class)).run().get(0)) {
              try (Graph g2 = new Graph()) {
                Ops tf2 = Ops.create(g2);
                var w2 = ResourceVariable.create(tf2, "w", tf2.withInitScope().fill(
                    tf2.withInitScope().constant(new long[] {256, 512}), tf2.withInitScope().constant(0f)));
                FisherTrainStep step2 = FisherTrainStep.builder(g2).fadafactor(0.01, o).variables(List.of(w2))
                    .loss((ops, in, v) -> ops.math.mean(ops.math.square(v.float32("w")), ops.constant(new int[] {0, 1})))
                    .build();
                try (Session s2 = new Session(g2)) {
                  s2.initialize();
                  step2.restore(s2, dir.resolve("bf16"));
                  try (TFloat32 after = (TFloat32) s2.runner().fetch(tf2.dtypes.cast(
                      step2.slot(w2, Algorithm.M).orElseThrow().read(tf2), TFloat32.class)).run().get(0)) {
                    float[] a = new float[(int) params];
                    float[] b = new float[(int) params];
                    before.asRawTensor().data().asFloats().read(a);
                    after.asRawTensor().data().asFloats().read(b);
                    assertArrayEquals(a, b, "m restored bit for bit");
                    assertTrue(a[0] != 0, "m moved");
                  }
                }
              }
            }
          }
        }
      }
      i++;
    }
    System.out.printf("FAdafactor 256×512 state bytes/param: m float32 %.3f, m bfloat16 %.3f, no m %.3f%n",
        perParam[0], perParam[1], perParam[2]);
    assertEquals(4 + (256 + 512) * 4.0 / params, perParam[0], 1e-3);
    assertEquals(2 + (256 + 512) * 4.0 / params, perParam[1], 1e-3);
    assertEquals((256 + 512) * 4.0 / params, perParam[2], 1e-3);
  }

  /**
   * β1 = 0 through the fused XLA step: θ and f follow the float64 reference (g = θ − 0.3 of
   * ½Σ(θx − 0.3)² at x = 1), and a NaN batch under SKIP leaves θ and f bit-identical.
   */
  @ParameterizedTest(name = "{0}")
  @EnumSource(Algorithm.class)
  void noMomentumThroughTheFusedStep(Algorithm alg) {
    int[] shape = {3, 4};
    Hyper h = ConformanceTest.paperDefaults(alg).withFactoredMinDim(3).withLr(0.01).withBeta1(0);
    double[] theta0 = new double[12];
    for (int i = 0; i < 12; i++) {
      theta0[i] = (float) (0.1 * i - 0.5);
    }
    PaperReference.State ref = PaperReference.init(alg, shape, theta0, h);
    FisherOptions o = ConformanceTest.options(alg, h).toBuilder().nonFinite(FisherOptions.NonFinitePolicy.SKIP).build();
    try (Graph g = new Graph()) {
      Ops tf = Ops.create(g);
      float[][] w0 = new float[3][4];
      for (int i = 0; i < 12; i++) {
        w0[i / 4][i % 4] = (float) theta0[i];
      }
      var w = ResourceVariable.create(tf, "w", tf.withInitScope().constant(w0));
      FisherTrainStep step = FisherTrainStep.builder(g).algorithm(alg, h.lr(), o).variables(List.of(w))
          .input("x", TFloat32.class, Shape.scalar())
          .loss((ops, in, v) -> ops.math.mul(ops.constant(0.5f), ops.reduceSum(ops.math.square(
              ops.math.sub(ops.math.mul(v.float32("w"), in.float32("x")), ops.constant(0.3f))),
              ops.constant(new int[] {0, 1}))))
          .build();
      assertTrue(step.slot(w, Algorithm.M).isEmpty());
      try (Session s = new Session(g); TFloat32 one = TFloat32.scalarOf(1f); TFloat32 nan = TFloat32.scalarOf(Float.NaN)) {
        s.initialize();
        for (int k = 1; k <= 4; k++) {
          double[] grad = new double[12];
          for (int i = 0; i < 12; i++) {
            grad[i] = ref.theta[i] - (double) 0.3f;
          }
          PaperReference.step(alg, ref, grad, h);
          step.train(s, Map.of("x", one));
          double[] got = OptimizerContractTest.values(s, tf, w.read(tf));
          for (int i = 0; i < 12; i++) {
            assertEquals(ref.theta[i], got[i], 2e-6, alg + " θ[" + i + "] step " + k);
          }
        }
        List<double[]> before = new java.util.ArrayList<>();
        for (ResourceVariable<?> v : step.variables()) {
          if (v.type() != org.tensorflow.types.TInt64.class) {
            before.add(OptimizerContractTest.values(s, tf, v.read(tf)));
          }
        }
        assertTrue(!step.train(s, Map.of("x", nan)).finite());
        int j = 0;
        for (ResourceVariable<?> v : step.variables()) {
          if (v.type() != org.tensorflow.types.TInt64.class) {
            assertArrayEquals(before.get(j++), OptimizerContractTest.values(s, tf, v.read(tf)), v.name());
          }
        }
      }
    }
  }
}
