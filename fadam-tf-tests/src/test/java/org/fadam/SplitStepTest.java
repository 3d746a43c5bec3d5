package org.fadam;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.fadam.tools.ResumeProbe;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.tensorflow.Graph;
import org.tensorflow.SavedModelBundle;
import org.tensorflow.Session;
import org.tensorflow.Signature;
import org.tensorflow.Tensor;
import org.tensorflow.ndarray.Shape;
import org.tensorflow.ndarray.buffer.DataBuffers;
import org.tensorflow.op.Ops;
import org.tensorflow.types.TFloat32;

/**
 * The step in two halves ({@code gradients}, then {@code apply_gradients}), as a data-parallel job
 * runs it: the same numbers as the fused {@code train}, bit for bit, under the same non-finite
 * policy.
 */
class SplitStepTest {

  /** Two identical graphs: one trains with {@code train}, the other with the two halves. */
  private static final class Pair implements AutoCloseable {
    final Graph fusedGraph = new Graph();
    final Graph splitGraph = new Graph();
    final FisherTrainStep fused;
    final FisherTrainStep split;
    final Session fusedSession;
    final Session splitSession;

    Pair(Algorithm optimizer, boolean jit, FisherOptions.NonFinitePolicy policy) {
      fused = ResumeProbe.build(fusedGraph, optimizer, jit, policy);
      split = ResumeProbe.build(splitGraph, optimizer, jit, policy);
      fusedSession = new Session(fusedGraph);
      splitSession = new Session(splitGraph);
      fusedSession.initialize();
      splitSession.initialize();
    }

    @Override
    public void close() {
      fusedSession.close();
      splitSession.close();
      fusedGraph.close();
      splitGraph.close();
    }
  }

  @ParameterizedTest(name = "{0} jit={1}")
  @CsvSource({"FADAM,true", "FADAFACTOR,true", "ADAM,true", "FADAM,false"})
  void trainEqualsGradientsThenApplyBitForBit(Algorithm optimizer, boolean jit) {
    try (Pair p = new Pair(optimizer, jit, FisherOptions.NonFinitePolicy.SKIP)) {
      for (int k = 0; k < 8; k++) {
        Map<String, TFloat32> feeds = ResumeProbe.batch(k);
        FisherTrainStep.Result fused = p.fused.train(p.fusedSession, feeds);
        long step;
        float loss;
        try (StepGradients g = p.split.gradients(p.splitSession, feeds)) {
          assertEquals(List.of("grad_w", "grad_b"), List.copyOf(g.byKey().keySet()));
          loss = g.loss();
          step = p.split.applyGradients(p.splitSession, g.byKey());
        }
        feeds.values().forEach(Tensor::close);
        assertEquals(Float.floatToRawIntBits(fused.loss()), Float.floatToRawIntBits(loss), "loss of step " + k);
        assertEquals(fused.step(), step);
        assertStatesEqual(p, "after step " + (k + 1));
      }
    }
  }

  /** SKIP: a NaN in the batch leaves everything unchanged on both paths but counts a skipped step. */
  @Test
  void skipPolicyAppliesInApplyGradientsAsInTrain() {
    try (Pair p = new Pair(Algorithm.FADAM, true, FisherOptions.NonFinitePolicy.SKIP)) {
      stepBoth(p, ResumeProbe.batch(0));
      Map<String, byte[]> before = VariableBytes.of(p.split, p.splitSession);
      Map<String, TFloat32> bad = nanBatch();
      stepBoth(p, bad);
      assertStatesEqual(p, "after the NaN step");
      Map<String, byte[]> after = VariableBytes.of(p.split, p.splitSession);
      for (String v : before.keySet()) {
        if (v.endsWith("-iterations")) {
          assertNotEquals(Arrays.toString(before.get(v)), Arrays.toString(after.get(v)), v);
        } else if (!v.endsWith("-skipped_steps")) {
          assertTrue(Arrays.equals(before.get(v), after.get(v)), v + " is unchanged by a skipped step");
        }
      }
      assertEquals(1L, VariableBytes.longValue(p.split.skippedSteps(), p.splitSession));
      assertEquals(2L, VariableBytes.longValue(p.split.iterations(), p.splitSession));
      stepBoth(p, ResumeProbe.batch(1));
      assertStatesEqual(p, "after the step that follows");
    }
  }

  /** ERROR: both paths fail naming the variable, and change nothing. */
  @Test
  void errorPolicyAppliesInApplyGradientsAsInTrain() {
    try (Pair p = new Pair(Algorithm.FADAFACTOR, true, FisherOptions.NonFinitePolicy.ERROR)) {
      stepBoth(p, ResumeProbe.batch(0));
      Map<String, byte[]> before = VariableBytes.of(p.split, p.splitSession);
      Map<String, TFloat32> bad = nanBatch();
      IllegalStateException fusedError =
          assertThrows(IllegalStateException.class, () -> p.fused.train(p.fusedSession, bad));
      try (StepGradients g = p.split.gradients(p.splitSession, bad)) {
        IllegalStateException splitError = assertThrows(IllegalStateException.class,
            () -> p.split.applyGradients(p.splitSession, g.byKey()));
        assertEquals(fusedError.getMessage(), splitError.getMessage());
        assertTrue(splitError.getMessage().contains("non-finite gradient") && splitError.getMessage().contains("`w`"),
            splitError.getMessage());
      }
      bad.values().forEach(Tensor::close);
      assertStatesEqual(p, "after the failed step");
      Map<String, byte[]> after = VariableBytes.of(p.split, p.splitSession);
      for (String v : before.keySet()) { // iterations counts every call, as in train
        if (!v.endsWith("-iterations")) {
          assertTrue(Arrays.equals(before.get(v), after.get(v)), v + " is unchanged by a failed step");
        }
      }
    }
  }

  @Test
  void missingOrUnknownGradientKeysFailNamingThem() {
    try (Pair p = new Pair(Algorithm.FADAM, false, FisherOptions.NonFinitePolicy.SKIP);
        TFloat32 b = TFloat32.tensorOf(Shape.of(ResumeProbe.CLASSES))) {
      var missing = assertThrows(IllegalArgumentException.class,
          () -> p.split.applyGradients(p.splitSession, Map.of("grad_b", b)));
      assertTrue(missing.getMessage().contains("'grad_w' is not given"), missing.getMessage());
      var unknown = assertThrows(IllegalArgumentException.class,
          () -> p.split.applyGradients(p.splitSession, Map.of("grad_b", b, "grad_x", b)));
      assertTrue(unknown.getMessage().contains("'grad_x'"), unknown.getMessage());
    }
  }

  @Test
  void gradientKeysReplaceEveryCharacterOutsideTheKeyAlphabet() {
    assertEquals("grad_layer1_w_0", FisherTrainStep.gradientKey("layer1/w-0"));
    assertEquals("grad_a_b_c___D9_", FisherTrainStep.gradientKey("a.b:c é D9_"));
    try (Graph g = new Graph()) {
      Ops tf = Ops.create(g);
      var a = ResourceVariable.create(tf, "a.b", tf.withInitScope().constant(new float[] {1f}));
      var b = ResourceVariable.create(tf, "a-b", tf.withInitScope().constant(new float[] {1f}));
      var e = assertThrows(IllegalArgumentException.class, () -> FisherTrainStep.builder(g)
          .input("x", TFloat32.class, Shape.of(-1, 1))
          .variables(List.of(a, b))
          .loss((ops, in, v) -> ops.constant(0f))
          .build());
      assertTrue(e.getMessage().contains("'a.b' and 'a-b' have the same gradient key 'grad_a_b'"), e.getMessage());
    }
  }

  /** The export carries both halves; loaded from the SavedModel alone they continue like train. */
  @Test
  void theExportCarriesBothHalvesAndTheyContinueLikeTrain(@TempDir Path tmp) throws Exception {
    Path dir = tmp.resolve("model");
    List<Float> full = ResumeProbe.run(Algorithm.FADAM, true, 6, 3, dir);
    try (SavedModelBundle m = FisherTrainStep.loadSavedModel(dir)) {
      List<String> keys = m.signatures().stream().map(Signature::key).toList();
      assertTrue(keys.containsAll(List.of("train", "serve_default", "gradients", "apply_gradients")), keys.toString());
      Signature grads = m.function("gradients").signature();
      assertEquals(java.util.Set.of("x", "y"), grads.getInputs().keySet());
      assertEquals(java.util.Set.of("loss", "grad_w", "grad_b"), grads.getOutputs().keySet());
      Signature apply = m.function("apply_gradients").signature();
      assertEquals(java.util.Set.of("grad_w", "grad_b"), apply.getInputs().keySet());
      java.util.Set<String> outputs = new java.util.HashSet<>(List.of("step", "finite", "applied"));
      outputs.addAll(StepTelemetry.NAMES); // the step telemetry (docs/design.md, "Step telemetry")
      assertEquals(outputs, apply.getOutputs().keySet());
      for (int k = 3; k < 6; k++) {
        Map<String, TFloat32> feeds = ResumeProbe.batch(k);
        try (var g = m.function("gradients").call(new LinkedHashMap<String, Tensor>(feeds))) {
          float loss = ((TFloat32) g.get("loss").orElseThrow()).getFloat();
          assertEquals(Float.floatToRawIntBits(full.get(k)), Float.floatToRawIntBits(loss), "loss of step " + (k + 1));
          Map<String, Tensor> in = Map.of("grad_w", g.get("grad_w").orElseThrow(), "grad_b", g.get("grad_b").orElseThrow());
          try (var s = m.function("apply_gradients").call(in)) {
            assertEquals((long) k + 1, ((org.tensorflow.types.TInt64) s.get("step").orElseThrow()).getLong());
          }
        }
        feeds.values().forEach(Tensor::close);
      }
    }
  }

  private static void stepBoth(Pair p, Map<String, TFloat32> feeds) {
    p.fused.train(p.fusedSession, feeds);
    try (StepGradients g = p.split.gradients(p.splitSession, feeds)) {
      p.split.applyGradients(p.splitSession, g.byKey());
    }
  }

  private static Map<String, TFloat32> nanBatch() {
    Map<String, TFloat32> feeds = ResumeProbe.batch(99);
    float[] x = new float[ResumeProbe.BATCH * ResumeProbe.FEATURES];
    Arrays.fill(x, 0.5f);
    x[3] = Float.NaN;
    feeds = new LinkedHashMap<>(feeds);
    feeds.get("x").close();
    feeds.put("x", TFloat32.tensorOf(Shape.of(ResumeProbe.BATCH, ResumeProbe.FEATURES), DataBuffers.of(x, true, false)));
    return feeds;
  }

  private static void assertStatesEqual(Pair p, String when) {
    Map<String, byte[]> a = VariableBytes.of(p.fused, p.fusedSession);
    Map<String, byte[]> b = VariableBytes.of(p.split, p.splitSession);
    assertEquals(a.keySet(), b.keySet());
    assertFalse(a.isEmpty());
    for (String v : a.keySet()) {
      assertTrue(Arrays.equals(a.get(v), b.get(v)), v + " differs " + when);
    }
  }
}
