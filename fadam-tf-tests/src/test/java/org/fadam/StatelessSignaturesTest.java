package org.fadam;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.fadam.tools.ResumeProbe;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;
import org.tensorflow.Graph;
import org.tensorflow.SavedModelBundle;
import org.tensorflow.Session;
import org.tensorflow.Tensor;
import org.tensorflow.internal.types.registry.TensorTypeRegistry;
import org.tensorflow.ndarray.Shape;
import org.tensorflow.ndarray.buffer.DataBuffers;
import org.tensorflow.op.Ops;
import org.tensorflow.types.TBool;
import org.tensorflow.types.TFloat32;

/**
 * The stateless signatures of an export ({@code stateless_gradients}, {@code stateless_apply}):
 * fed the variables' values, they compute bit for bit what {@code gradients} then {@code
 * apply_gradients} compute and write, for every algorithm, with and without XLA, under SKIP and
 * ERROR, on finite and non-finite gradients.
 *
 * <p>One exception, measured: the paper's Adam compiled by XLA under SKIP or ERROR. Its two
 * modules have the same optimized HLO up to the finiteness flag (the stateless one returns it, the
 * stateful one recomputes it in each fusion), yet XLA CPU's code for them rounds a few elements of some
 * steps up to 2 ulps apart (2026-12-02, TF Java 1.1.0). There the new values must agree within 4 ulps;
 * every other case, and the loss and gradients always, bit for bit.
 */
class StatelessSignaturesTest {

  private static final int FEATURES = 8;
  private static final int CLASSES = 6;
  private static final int ROWS = 16;

  static List<Arguments> cases() {
    List<Arguments> out = new ArrayList<>();
    for (Algorithm a : Algorithm.values()) {
      for (boolean jit : new boolean[] {true, false}) {
        for (FisherOptions.NonFinitePolicy p : List.of(FisherOptions.NonFinitePolicy.SKIP, FisherOptions.NonFinitePolicy.ERROR)) {
          out.add(Arguments.of(a, jit, p, 1));
        }
      }
    }
    // gradient accumulation: the sums are state values like any other
    out.add(Arguments.of(Algorithm.FADAM, true, FisherOptions.NonFinitePolicy.SKIP, 2));
    out.add(Arguments.of(Algorithm.FADAFACTOR, true, FisherOptions.NonFinitePolicy.ERROR, 2));
    return out;
  }

  /** A softmax classifier: w [8, 6] (factored by (F)Adafactor at factoredMinDim 4) and b [6]. */
  static FisherTrainStep build(Graph g, Algorithm algorithm, boolean jit, FisherOptions.NonFinitePolicy policy) {
    return build(g, algorithm, jit, policy, 1);
  }

  static FisherTrainStep build(
      Graph g, Algorithm algorithm, boolean jit, FisherOptions.NonFinitePolicy policy, int accumulate) {
    Ops tf = Ops.create(g);
    Random rnd = new Random(5);
    float[][] w0 = new float[FEATURES][CLASSES];
    for (float[] row : w0) {
      for (int j = 0; j < row.length; j++) {
        row[j] = (float) (0.3 * rnd.nextGaussian());
      }
    }
    Ops layer = tf.withSubScope("layer");
    var w = ResourceVariable.create(layer, "w", layer.withInitScope().constant(w0));
    var b = ResourceVariable.create(layer, "b", layer.withInitScope().constant(new float[CLASSES]));
    FisherOptions o = FisherOptions.builder().factoredMinDim(4).nonFinite(policy).build();
    return FisherTrainStep.builder(g)
        .algorithm(algorithm, 0.05, o)
        .input("x", TFloat32.class, Shape.of(-1, FEATURES))
        .input("y", TFloat32.class, Shape.of(-1, CLASSES))
        .variables(List.of(w, b))
        .loss((ops, in, v) -> ops.math.mean(ops.nn.softmaxCrossEntropyWithLogits(
            ops.math.add(ops.linalg.matMul(in.float32("x"), v.float32("layer/w")), v.float32("layer/b")),
            in.float32("y")).loss(), ops.constant(0)))
        .jit(jit)
        .accumulate(accumulate)
        .build();
  }

  @ParameterizedTest(name = "{0} jit={1} {2} accumulate={3}")
  @MethodSource("cases")
  void statelessEqualsGradientsThenApplyBitForBit(
      Algorithm algorithm, boolean jit, FisherOptions.NonFinitePolicy policy, int accumulate, @TempDir Path dir)
      throws Exception {
    Path model = dir.resolve("model");
    List<String> names = new ArrayList<>();
    Map<String, String> valueKeys;
    Map<String, String> gradKeys;
    try (Graph g = new Graph()) {
      FisherTrainStep step = build(g, algorithm, jit, policy, accumulate);
      try (Session s = new Session(g)) {
        s.initialize();
        step.export(s, model);
      }
      step.variables().forEach(v -> names.add(v.name()));
      valueKeys = step.valueKeys();
      gradKeys = step.gradientKeys();
    }
    assertEquals("var_layer_w", valueKeys.get("layer/w"));
    assertEquals(names.size(), valueKeys.size());
    try (SavedModelBundle m = FisherTrainStep.loadSavedModel(model)) {
      for (int k = 0; k < 4; k++) {
        boolean bad = k == 2;
        Map<String, TFloat32> feeds = ResumeProbe.classBatch(300L + k, ROWS, FEATURES, CLASSES);
        Map<String, Tensor> values = readAll(m, names, valueKeys);
        Map<String, Tensor> in = new LinkedHashMap<>(feeds);
        values.forEach((key, t) -> {
          if (gradKeys.containsValue("grad_" + key.substring("var_".length()))) {
            in.put(key, t); // the parameters' values
          }
        });
        try (var stateless = m.function(FisherTrainStep.STATELESS_GRADIENTS).call(in);
            var stateful = m.function(FisherTrainStep.GRADIENTS).call(new LinkedHashMap<String, Tensor>(feeds))) {
          assertSameBits(stateful.get("loss").orElseThrow(), stateless.get("loss").orElseThrow(), "loss, step " + k);
          Map<String, Tensor> grads = new LinkedHashMap<>();
          for (String key : gradKeys.values()) {
            Tensor want = stateful.get(key).orElseThrow();
            assertSameBits(want, stateless.get(key).orElseThrow(), key + ", step " + k);
            grads.put(key, want);
          }
          if (bad) {
            grads.put("grad_layer_b", TFloat32.tensorOf(Shape.of(CLASSES),
                DataBuffers.of(new float[] {0, Float.NaN, 0, 0, 0, 0}, true, false)));
          }
          Map<String, Tensor> applyIn = new LinkedHashMap<>(values);
          applyIn.putAll(grads);
          try (var next = m.function(FisherTrainStep.STATELESS_APPLY).call(applyIn);
              var stepped = m.function(FisherTrainStep.APPLY_GRADIENTS).call(grads)) { // writes the variables
            Map<String, Tensor> after = readAll(m, names, valueKeys);
            int ulps = algorithm == Algorithm.ADAM && jit ? 4 : 0;
            for (String t : StepTelemetry.NAMES) { // the same telemetry from both
              assertWithinUlps(stepped.get(t).orElseThrow(), next.get(t).orElseThrow(), ulps, t + " of step " + k);
            }
            for (String key : valueKeys.values()) {
              assertWithinUlps(after.get(key), next.get(key).orElseThrow(), ulps, key + " after step " + k);
            }
            boolean finite = ((TBool) next.get(FisherTrainStep.FINITE).orElseThrow()).getBoolean();
            // under SKIP an accumulated sum stays non-finite to the end of its window (call 3)
            boolean sumBad = accumulate > 1 && policy == FisherOptions.NonFinitePolicy.SKIP && k == 3;
            assertEquals(!bad && !sumBad, finite, "finite of step " + k);
            after.values().forEach(Tensor::close);
          }
          if (bad) {
            grads.get("grad_layer_b").close();
          }
        }
        values.values().forEach(Tensor::close);
        feeds.values().forEach(Tensor::close);
      }
      // Four steps were counted (three under ERROR); under SKIP the non-finite one was skipped and
      // nothing moved then.
      String iterations = names.stream().filter(n -> n.endsWith("-iterations")).findFirst().orElseThrow();
      String skipped = names.stream().filter(n -> n.endsWith("-skipped_steps")).findFirst().orElseThrow();
      try (var it = m.session().runner().fetch(iterations + "/Read/ReadVariableOp").run();
          var sk = m.session().runner().fetch(skipped + "/Read/ReadVariableOp").run()) {
        // ERROR refuses the non-finite call: nothing changes, its count included. With k = 2:
        // SKIP steps at call 1 and skips the window of calls 2–3; ERROR steps at call 1 only (call
        // 3 opens a new window).
        long expected = accumulate == 1
            ? (policy == FisherOptions.NonFinitePolicy.ERROR ? 3L : 4L)
            : (policy == FisherOptions.NonFinitePolicy.ERROR ? 1L : 2L);
        assertEquals(expected, ((org.tensorflow.types.TInt64) it.get(0)).getLong());
        assertEquals(policy == FisherOptions.NonFinitePolicy.SKIP ? 1L : 0L,
            ((org.tensorflow.types.TInt64) sk.get(0)).getLong());
      }
    }
  }

  @Test
  void theStatelessSignaturesReadNoVariable(@TempDir Path dir) throws Exception {
    Path model = dir.resolve("model");
    try (Graph g = new Graph()) {
      FisherTrainStep step = build(g, Algorithm.FADAFACTOR, true, FisherOptions.NonFinitePolicy.SKIP);
      try (Session s = new Session(g)) {
        s.initialize();
        step.export(s, model);
      }
      try (SavedModelBundle m = FisherTrainStep.loadSavedModel(model)) {
        var grads = m.function(FisherTrainStep.STATELESS_GRADIENTS).signature();
        var apply = m.function(FisherTrainStep.STATELESS_APPLY).signature();
        assertEquals(java.util.Set.of("x", "y", "var_layer_w", "var_layer_b"), grads.inputNames());
        assertEquals(java.util.Set.of("loss", "grad_layer_w", "grad_layer_b"), grads.outputNames());
        assertTrue(apply.outputNames().contains(FisherTrainStep.FINITE));
        assertTrue(apply.outputNames().contains(FisherTrainStep.APPLIED));
        assertTrue(apply.outputNames().containsAll(StepTelemetry.NAMES), apply.outputNames().toString());
        // Every input of stateless_apply is a value or a gradient; every output but finite,
        // applied and the telemetry a value.
        for (String in : apply.inputNames()) {
          assertTrue(in.startsWith("var_") || in.startsWith("grad_"), in);
        }
        assertEquals(step.valueKeys().size() + 2 + StepTelemetry.NAMES.size(), apply.outputNames().size());
        assertEquals(java.util.Set.copyOf(step.valueKeys().values()),
            apply.inputNames().stream().filter(n -> n.startsWith("var_")).collect(java.util.stream.Collectors.toSet()));
      }
      for (String name : List.of("train_step_stateless_gradients", "train_step_stateless_apply")) {
        var call = g.operation(name);
        assertEquals("StatefulPartitionedCall", call.type());
        String fn = call.attributes().getAttrValueProto("f").getFunc().getName();
        var def = g.getFunction(fn).getFunctionDef();
        for (var node : def.getNodeDefList()) {
          assertFalse(node.getOp().contains("Variable"), name + " holds " + node.getOp() + " node " + node.getName());
        }
      }
    }
  }

  private static Map<String, Tensor> readAll(SavedModelBundle m, List<String> names, Map<String, String> keys) {
    Map<String, Tensor> out = new LinkedHashMap<>();
    for (String n : names) {
      try (var r = m.session().runner().fetch(n + "/" + ResourceVariable.SNAPSHOT).run()) {
        Tensor t = r.get(0);
        out.put(keys.get(n), copy(t));
      }
    }
    return out;
  }

  /** A tensor that outlives its Result. */
  private static Tensor copy(Tensor t) {
    var raw = t.asRawTensor();
    byte[] b = new byte[(int) t.numBytes()];
    raw.data().read(b);
    return Tensor.of(TensorTypeRegistry.find(t.dataType()).type(), t.shape(),
        org.tensorflow.ndarray.buffer.DataBuffers.of(b, true, false));
  }

  /** Equal bit for bit, or for float32 tensors within {@code ulps} units in the last place. */
  private static void assertWithinUlps(Tensor want, Tensor got, int ulps, String what) {
    if (ulps == 0 || want.dataType() != org.tensorflow.proto.DataType.DT_FLOAT) {
      assertSameBits(want, got, what);
      return;
    }
    assertEquals(want.shape(), got.shape(), what);
    TFloat32 a = (TFloat32) want;
    TFloat32 b = (TFloat32) got;
    long n = want.shape().size();
    for (long i = 0; i < n; i++) {
      float x = n == 1 && want.shape().numDimensions() == 0 ? a.getFloat() : a.getFloat(index(want.shape(), i));
      float y = n == 1 && want.shape().numDimensions() == 0 ? b.getFloat() : b.getFloat(index(want.shape(), i));
      assertTrue(Math.abs(Float.floatToIntBits(x) - Float.floatToIntBits(y)) <= ulps,
          what + " element " + i + ": " + x + " against " + y);
    }
  }

  private static long[] index(Shape shape, long flat) {
    long[] idx = new long[shape.numDimensions()];
    for (int d = idx.length - 1; d >= 0; d--) {
      idx[d] = flat % shape.get(d);
      flat /= shape.get(d);
    }
    return idx;
  }

  private static void assertSameBits(Tensor want, Tensor got, String what) {
    assertEquals(want.dataType(), got.dataType(), what);
    assertEquals(want.shape(), got.shape(), what);
    byte[] a = new byte[(int) want.numBytes()];
    byte[] b = new byte[(int) got.numBytes()];
    want.asRawTensor().data().read(a);
    got.asRawTensor().data().read(b);
    assertArrayEquals(a, b, what);
  }
}
