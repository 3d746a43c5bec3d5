package org.fadam;

import static org.fadam.FisherProductTest.COLS;
import static org.fadam.FisherProductTest.ROWS;
import static org.fadam.FisherProductTest.assertClose;
import static org.fadam.FisherProductTest.flat;
import static org.fadam.FisherProductTest.gradient;
import static org.fadam.FisherProductTest.matrix;
import static org.fadam.FisherProductTest.referenceFisher;
import static org.fadam.FisherProductTest.tensor;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.stream.Stream;
import org.fadam.reference.PaperReference;
import org.fadam.reference.PaperReference.Hyper;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;
import org.tensorflow.Graph;
import org.tensorflow.Session;
import org.tensorflow.op.Ops;
import org.tensorflow.types.TFloat32;

/**
 * The Fisher from micro-batches (paper Eq. 20, {@link FisherTrainStep.Builder#microBatchFisher}):
 * with accumulate(k), the Fisher EMA takes (1/k) Σ g_i² instead of ((1/k) Σ g_i)², against the
 * float64 reference fed those two; its state survives export and restore; accumulate(1) is refused.
 */
class MicroBatchFisherTest {

  private static final int K = 3;
  /** w's squared-gradient sum, under the step's name. */
  private static final String SQ_W = "train_step/w-grad_sq_sum";

  static Stream<Arguments> cases() {
    return Stream.of(
        Arguments.of(Algorithm.FADAM, true), Arguments.of(Algorithm.FADAFACTOR, true),
        Arguments.of(Algorithm.ADAM, true), Arguments.of(Algorithm.ADAFACTOR, true),
        Arguments.of(Algorithm.FADAM, false), Arguments.of(Algorithm.FADAFACTOR, false));
  }

  /** One micro-batch's gradients of w and b. */
  private record Grads(double[] w, double[] b) {
    Map<String, TFloat32> tensors() {
      return Map.of(FisherTrainStep.gradientKey("w"), tensor(w, ROWS, COLS), FisherTrainStep.gradientKey("b"), tensor(b, COLS));
    }
  }

  /** Micro-batch j's gradients: a shared mean plus noise, so that the two Fishers differ. */
  private static Grads grads(int j) {
    Random rnd = new Random(100 + j);
    double[] w = gradient(rnd, ROWS * COLS, 1.0);
    double[] b = gradient(rnd, COLS, 0.5);
    for (int i = 0; i < w.length; i++) {
      w[i] = (float) (w[i] + 0.2);
    }
    return new Grads(w, b);
  }

  private static double[] mean(List<double[]> xs, boolean squared) {
    double[] out = new double[xs.get(0).length];
    for (double[] x : xs) {
      for (int i = 0; i < out.length; i++) {
        out[i] += (squared ? x[i] * x[i] : x[i]) / xs.size(); // Eq. 20: E_B[g²]; or E_B[g]
      }
    }
    return out;
  }

  @ParameterizedTest(name = "{0} jit={1}")
  @MethodSource("cases")
  void theFisherEmaTakesTheMeanOfTheSquares(Algorithm a, boolean jit) {
    Hyper h = ConformanceTest.paperDefaults(a).withLr(0.01).withFactoredMinDim(4);
    FisherOptions o = ConformanceTest.options(a, h);
    double[] w0 = flat(matrix(new Random(3), ROWS, COLS));
    PaperReference.State w = PaperReference.init(a, new int[] {ROWS, COLS}, w0, h);
    PaperReference.State b = PaperReference.init(a, new int[] {COLS}, new double[COLS], h);
    PaperReference.State wDefault = PaperReference.init(a, new int[] {ROWS, COLS}, w0, h);
    try (Graph g = new Graph(); Session s = new Session(g)) {
      FisherTrainStep step = FisherProductTest.build(g, a, o, K, true, jit);
      Ops tf = Ops.create(g);
      assertTrue(step.variables().stream().anyMatch(v -> v.name().equals(SQ_W)),
          step.variables().stream().map(ResourceVariable::name).toList().toString());
      s.initialize();
      double maxDiff = 0;
      for (int window = 0; window < 3; window++) {
        List<double[]> gw = new java.util.ArrayList<>();
        List<double[]> gb = new java.util.ArrayList<>();
        for (int i = 0; i < K; i++) {
          Grads gr = grads(window * K + i);
          gw.add(gr.w());
          gb.add(gr.b());
          Map<String, TFloat32> feed = gr.tensors();
          try {
            step.applyGradients(s, feed);
          } finally {
            feed.values().forEach(TFloat32::close);
          }
        }
        PaperReference.step(a, w, mean(gw, false), mean(gw, true), h);
        PaperReference.step(a, b, mean(gb, false), mean(gb, true), h);
        PaperReference.step(a, wDefault, mean(gw, false), h);
        String at = a + " after window " + (window + 1);
        assertClose(w.theta, OptimizerContractTest.values(s, tf, step.parameters().get(0).read(tf)), at + " w");
        assertClose(b.theta, OptimizerContractTest.values(s, tf, step.parameters().get(1).read(tf)), at + " b");
        double[] fw = OptimizerContractTest.values(s, tf, step.fisher(step.parameters().get(0)));
        double[] want = a == Algorithm.ADAM ? null : referenceFisher(w);
        if (want != null) {
          assertClose(want, fw, at + " fisher(w)");
          double[] other = referenceFisher(wDefault);
          for (int i = 0; i < want.length; i++) {
            maxDiff = Math.max(maxDiff, Math.abs(want[i] - other[i]) / Math.abs(other[i]));
          }
        } else {
          assertClose(w.slots.get(PaperReference.FIM), OptimizerContractTest.values(s, tf,
              step.slot(step.parameters().get(0), Algorithm.FIM).orElseThrow().read(tf)), at + " f(w)");
        }
        assertArrayEquals(new double[ROWS * COLS], OptimizerContractTest.values(s, tf,
            step.variables().stream().filter(v -> v.name().equals(SQ_W)).findFirst().orElseThrow().read(tf)),
            "the square sums are cleared at the window's end");
      }
      if (a != Algorithm.ADAM) {
        assertTrue(maxDiff > 0.05, "Eq. 20's Fisher differs from Eq. 21's here (so the test can fail): " + maxDiff);
      }
    }
  }

  /** Export mid-window, restore into a fresh graph, continue: the uninterrupted run, bit for bit. */
  @Test
  void resumingMidWindowContinuesBitForBit(@TempDir Path dir) throws Exception {
    FisherOptions o = FisherOptions.builder().factoredMinDim(4).build();
    Map<String, double[]> straight = new LinkedHashMap<>();
    try (Graph g = new Graph(); Session s = new Session(g)) {
      FisherTrainStep step = FisherProductTest.build(g, Algorithm.FADAFACTOR, o, K, true, true);
      Ops tf = Ops.create(g);
      s.initialize();
      for (int i = 0; i < 5; i++) {
        apply(step, s, grads(i));
        if (i == 3) {
          step.export(s, dir.resolve("m"));
        }
      }
      step.variables().forEach(v -> straight.put(v.name(), OptimizerContractTest.values(s, tf, v.read(tf))));
    }
    try (Graph g = new Graph(); Session s = new Session(g)) {
      FisherTrainStep step = FisherProductTest.build(g, Algorithm.FADAFACTOR, o, K, true, true);
      Ops tf = Ops.create(g);
      s.initialize();
      step.restore(s, dir.resolve("m"));
      double[] restored = OptimizerContractTest.values(s, tf, step.variables().stream()
          .filter(v -> v.name().equals(SQ_W)).findFirst().orElseThrow().read(tf));
      assertTrue(java.util.Arrays.stream(restored).anyMatch(x -> x > 0), "the square sum is restored mid-window");
      apply(step, s, grads(4));
      for (ResourceVariable<?> v : step.variables()) {
        assertArrayEquals(straight.get(v.name()), OptimizerContractTest.values(s, tf, v.read(tf)), v.name());
      }
    }
  }

  /**
   * The exported stateless_apply carries the squared-gradient sums as state values like any other:
   * four calls of it (a window's end among them) equal apply_gradients on the variables, bit for bit.
   */
  @Test
  void theStatelessApplyCarriesTheSquareSums(@TempDir Path dir) throws Exception {
    Path model = dir.resolve("m");
    List<String> names = new java.util.ArrayList<>();
    Map<String, String> keys;
    try (Graph g = new Graph(); Session s = new Session(g)) {
      FisherTrainStep step = FisherProductTest.build(g, Algorithm.FADAFACTOR,
          FisherOptions.builder().factoredMinDim(4).build(), K, true, true);
      s.initialize();
      step.export(s, model);
      step.variables().forEach(v -> names.add(v.name()));
      keys = step.valueKeys();
    }
    assertTrue(keys.containsKey(SQ_W), keys.toString());
    try (org.tensorflow.SavedModelBundle m = FisherTrainStep.loadSavedModel(model)) {
      for (int i = 0; i < 4; i++) {
        Map<String, org.tensorflow.Tensor> in = new LinkedHashMap<>();
        for (String n : names) {
          in.put(keys.get(n), read(m, n));
        }
        Map<String, TFloat32> grads = grads(i).tensors();
        in.putAll(grads);
        try (var next = m.function(FisherTrainStep.STATELESS_APPLY).call(in)) {
          m.function(FisherTrainStep.APPLY_GRADIENTS).call(new LinkedHashMap<String, org.tensorflow.Tensor>(grads)).close();
          for (String n : names) {
            try (org.tensorflow.Tensor after = read(m, n)) {
              assertArrayEquals(bytes(after), bytes(next.get(keys.get(n)).orElseThrow()), n + " after call " + (i + 1));
            }
          }
        }
        in.values().forEach(org.tensorflow.Tensor::close);
      }
    }
  }

  private static org.tensorflow.Tensor read(org.tensorflow.SavedModelBundle m, String name) {
    try (var r = m.session().runner().fetch(name + "/" + ResourceVariable.SNAPSHOT).run()) {
      org.tensorflow.Tensor t = r.get(0);
      return org.tensorflow.Tensor.of(org.tensorflow.internal.types.registry.TensorTypeRegistry.find(t.dataType()).type(),
          t.shape(), org.tensorflow.ndarray.buffer.DataBuffers.of(bytes(t), true, false));
    }
  }

  private static byte[] bytes(org.tensorflow.Tensor t) {
    byte[] b = new byte[(int) t.numBytes()];
    t.asRawTensor().data().read(b);
    return b;
  }

  private static void apply(FisherTrainStep step, Session s, Grads gr) {
    Map<String, TFloat32> feed = gr.tensors();
    try {
      step.applyGradients(s, feed);
    } finally {
      feed.values().forEach(TFloat32::close);
    }
  }

  /** Without accumulation the option means nothing: the builder refuses it, saying why. */
  @Test
  void withoutAccumulationItIsRefused() {
    try (Graph g = new Graph()) {
      var e = assertThrows(IllegalArgumentException.class,
          () -> FisherProductTest.build(g, Algorithm.FADAM, FisherOptions.defaults(), 1, true, false));
      assertEquals("microBatchFisher(true) needs accumulate(k ≥ 2); got accumulate(1), where the mean"
          + " of one micro-batch's squared gradient is the square of its mean (the default Fisher)", e.getMessage());
    }
  }
}
