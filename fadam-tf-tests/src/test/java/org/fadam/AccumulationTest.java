package org.fadam;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.fadam.tools.ResumeProbe;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.tensorflow.Graph;
import org.tensorflow.Operand;
import org.tensorflow.Session;
import org.tensorflow.Tensor;
import org.tensorflow.ndarray.index.Indices;
import org.tensorflow.op.Ops;
import org.tensorflow.types.TFloat32;
import org.tensorflow.types.TFloat64;

/**
 * Gradient accumulation ({@code optax.MultiSteps}): k calls on k slices of a batch against one
 * call on the whole batch, the calls in between, the non-finite policies, and resume mid-window.
 */
class AccumulationTest {

  private static final int ROWS = 16;
  private static final int F = 8;
  private static final int C = 6;
  private static final FisherOptions.NonFinitePolicy SKIP = FisherOptions.NonFinitePolicy.SKIP;

  /** Batch j: 16 rows of the softmax classifier's data. */
  private static Map<String, TFloat32> batch(int j) {
    return ResumeProbe.classBatch(900L + j, ROWS, F, C);
  }

  /** Rows [from, to) of a batch. */
  private static Map<String, Tensor> slice(Map<String, TFloat32> batch, int from, int to) {
    Map<String, Tensor> out = new LinkedHashMap<>();
    batch.forEach((n, t) -> out.put(n, TFloat32.tensorOf(
        org.tensorflow.ndarray.Shape.of(to - from, t.shape().get(1)),
        dst -> t.slice(Indices.range(from, to)).copyTo(dst))));
    return out;
  }

  /** Each step's reads of every variable as float64, built once (new ops each time would grow the graph). */
  private static final Map<FisherTrainStep, Map<String, Operand<TFloat64>>> READS = new java.util.WeakHashMap<>();

  /** Every variable's value (parameters, slots, counters) as doubles, by name, in one run. */
  private static Map<String, double[]> state(Session s, Ops tf, FisherTrainStep step) {
    Map<String, Operand<TFloat64>> reads = READS.computeIfAbsent(step, st -> {
      Map<String, Operand<TFloat64>> m = new LinkedHashMap<>();
      for (ResourceVariable<?> v : st.variables()) {
        m.put(v.name(), tf.dtypes.cast(v.read(tf), TFloat64.class));
      }
      return m;
    });
    Session.Runner r = s.runner();
    reads.values().forEach(r::fetch);
    Map<String, double[]> out = new LinkedHashMap<>();
    try (var result = r.run()) {
      int i = 0;
      for (String name : reads.keySet()) {
        TFloat64 t = (TFloat64) result.get(i++);
        double[] values = new double[(int) t.shape().size()];
        t.copyTo(org.tensorflow.ndarray.buffer.DataBuffers.of(values, false, false));
        out.put(name, values);
      }
    }
    return out;
  }

  /** k calls on k slices step as one call on the whole batch, within float32 round-off. */
  @ParameterizedTest(name = "{0}")
  @EnumSource(value = Algorithm.class, names = {"FADAM", "FADAFACTOR", "ADAM"})
  void kSlicesEqualTheWholeBatch(Algorithm a) {
    int k = 4;
    List<Map<String, double[]>> whole = new ArrayList<>();
    List<Map<String, double[]>> accumulated = new ArrayList<>();
    try (Graph g = new Graph()) {
      Ops tf = Ops.create(g);
      FisherTrainStep step = StatelessSignaturesTest.build(g, a, true, SKIP, 1);
      try (Session s = new Session(g)) {
        s.initialize();
        for (int j = 0; j < 3; j++) {
          FisherTrainStep.Result r = step.train(s, batch(j));
          assertTrue(r.applied());
          whole.add(state(s, tf, step));
        }
      }
    }
    try (Graph g = new Graph()) {
      Ops tf = Ops.create(g);
      FisherTrainStep step = StatelessSignaturesTest.build(g, a, true, SKIP, k);
      try (Session s = new Session(g)) {
        s.initialize();
        for (int j = 0; j < 3; j++) {
          Map<String, TFloat32> b = batch(j);
          for (int i = 0; i < k; i++) {
            Map<String, double[]> before = state(s, tf, step);
            FisherTrainStep.Result r = step.train(s, slice(b, i * ROWS / k, (i + 1) * ROWS / k));
            assertEquals(i == k - 1, r.applied(), "applied at call " + i);
            assertEquals(j + (i == k - 1 ? 1 : 0), r.step(), "iterations count applied steps");
            if (i < k - 1) { // nothing but the sums and their counter moved
              Map<String, double[]> after = state(s, tf, step);
              for (var e : before.entrySet()) {
                if (!e.getKey().endsWith("-grad_sum") && !e.getKey().endsWith("-micro_steps")) {
                  assertArrayEquals(e.getValue(), after.get(e.getKey()), e.getKey() + " at call " + i);
                }
              }
            }
          }
          accumulated.add(state(s, tf, step));
        }
        assertEquals(0, OptimizerContractTest.values(s, tf, step.variables().get(step.variables().size() - 1)
            .read(tf))[0], "micro_steps back at 0");
      }
    }
    for (int j = 0; j < 3; j++) {
      for (String n : whole.get(j).keySet()) {
        double[] want = whole.get(j).get(n);
        double[] got = accumulated.get(j).get(n);
        double scale = 0;
        for (double v : want) {
          scale = Math.max(scale, Math.abs(v));
        }
        for (int e = 0; e < want.length; e++) {
          assertEquals(want[e], got[e], 2e-5 * scale, n + "[" + e + "] after step " + (j + 1));
        }
      }
    }
  }

  /**
   * Under SKIP a non-finite micro-batch drops the whole accumulated step: at the end of its window
   * nothing but skipped_steps (and iterations) moved and the sums are cleared; the next window steps
   * as a fresh one.
   */
  @Test
  void aNonFiniteMicroBatchUnderSkipDropsTheWholeStep() {
    try (Graph g = new Graph()) {
      Ops tf = Ops.create(g);
      FisherTrainStep step = StatelessSignaturesTest.build(g, Algorithm.FADAM, true, SKIP, 2);
      try (Session s = new Session(g)) {
        s.initialize();
        Map<String, TFloat32> b = batch(0);
        step.train(s, slice(b, 0, 8));
        step.train(s, slice(b, 8, 16));
        Map<String, double[]> before = state(s, tf, step);
        Map<String, Tensor> bad = slice(b, 0, 8);
        ((TFloat32) bad.get("x")).setFloat(Float.NaN, 3, 2);
        FisherTrainStep.Result r1 = step.train(s, bad);
        FisherTrainStep.Result r2 = step.train(s, slice(b, 8, 16));
        assertFalse(r1.finite() || r1.applied() || r2.finite() || r2.applied());
        assertEquals(2, r2.step(), "the skipped step is counted, as SKIP counts it");
        Map<String, double[]> after = state(s, tf, step);
        assertEquals(before.get("train_step/train_step-skipped_steps")[0] + 1,
            after.get("train_step/train_step-skipped_steps")[0]);
        for (String n : before.keySet()) {
          if (!n.endsWith("-iterations") && !n.endsWith("-skipped_steps")) {
            assertArrayEquals(before.get(n), after.get(n), n);
          }
        }
        assertTrue(step.train(s, slice(b, 0, 8)).finite(), "the next window starts clean");
        assertTrue(step.train(s, slice(b, 8, 16)).applied());
      }
    }
  }

  /** Under ERROR the bad micro-batch is refused at its own call; the window goes on without it. */
  @Test
  void aNonFiniteMicroBatchUnderErrorIsRefusedAtItsCall() {
    try (Graph g = new Graph()) {
      Ops tf = Ops.create(g);
      FisherTrainStep step = StatelessSignaturesTest.build(
          g, Algorithm.FADAM, true, FisherOptions.NonFinitePolicy.ERROR, 2);
      try (Session s = new Session(g)) {
        s.initialize();
        Map<String, TFloat32> b = batch(0);
        step.train(s, slice(b, 0, 8));
        Map<String, double[]> before = state(s, tf, step);
        Map<String, Tensor> bad = slice(b, 8, 16);
        ((TFloat32) bad.get("x")).setFloat(Float.NaN, 1, 1);
        var e = assertThrows(IllegalStateException.class, () -> step.train(s, bad));
        assertTrue(e.getMessage().endsWith("; no variable was changed"), e.getMessage());
        Map<String, double[]> after = state(s, tf, step);
        before.forEach((n, v) -> assertArrayEquals(v, after.get(n), n));
        assertTrue(step.train(s, slice(b, 8, 16)).applied(), "the window closes on its second good call");
      }
    }
  }

  /** Export mid-window, restore into a fresh graph, continue: the uninterrupted run, bit for bit. */
  @Test
  void resumingMidWindowContinuesBitForBit(@TempDir Path dir) throws Exception {
    Map<String, double[]> straight;
    try (Graph g = new Graph()) {
      Ops tf = Ops.create(g);
      FisherTrainStep step = StatelessSignaturesTest.build(g, Algorithm.FADAFACTOR, true, SKIP, 3);
      try (Session s = new Session(g)) {
        s.initialize();
        for (int i = 0; i < 5; i++) {
          step.train(s, slice(batch(i), 0, 8));
          if (i == 3) {
            step.export(s, dir.resolve("m"));
          }
        }
        straight = state(s, tf, step);
      }
    }
    try (Graph g = new Graph()) {
      Ops tf = Ops.create(g);
      FisherTrainStep step = StatelessSignaturesTest.build(g, Algorithm.FADAFACTOR, true, SKIP, 3);
      try (Session s = new Session(g)) {
        s.initialize();
        step.restore(s, dir.resolve("m"));
        step.train(s, slice(batch(4), 0, 8));
        Map<String, double[]> resumed = state(s, tf, step);
        straight.forEach((n, v) -> assertArrayEquals(v, resumed.get(n), n));
        assertTrue(straight.keySet().stream().anyMatch(n -> n.endsWith("/w-grad_sum")), straight.keySet().toString());
      }
    }
  }

  /** k &lt; 1 fails at the builder; a wrong gradient key at apply_gradients names the keys. */
  @Test
  void badInputFailsWithOneLine() {
    try (Graph g = new Graph()) {
      var e = assertThrows(IllegalArgumentException.class, () -> FisherTrainStep.builder(g).accumulate(0));
      assertEquals("accumulate k must be ≥ 1; got 0", e.getMessage());
      FisherTrainStep step = StatelessSignaturesTest.build(g, Algorithm.FADAM, true, SKIP, 2);
      try (Session s = new Session(g); TFloat32 t = TFloat32.scalarOf(1f)) {
        s.initialize();
        e = assertThrows(IllegalArgumentException.class, () -> step.applyGradients(s, Map.of("grad_w", t)));
        assertEquals("no parameter has the gradient key 'grad_w'; keys are [grad_layer_w, grad_layer_b]",
            e.getMessage());
      }
    }
  }
}
