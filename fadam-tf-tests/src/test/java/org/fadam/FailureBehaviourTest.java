package org.fadam;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.fadam.FisherOptions.NonFinitePolicy;
import org.fadam.tools.ResumeProbe;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.EnumSource;
import org.tensorflow.Graph;
import org.tensorflow.Session;
import org.tensorflow.framework.optimizers.Adam;
import org.tensorflow.ndarray.Shape;
import org.tensorflow.op.Op;
import org.tensorflow.op.Ops;
import org.tensorflow.op.core.Placeholder;
import org.tensorflow.op.core.Variable;
import org.tensorflow.types.TFloat32;

/** Non-finite gradients, wrong use, concurrency and repeatability (docs/failure-behaviour.md). */
class FailureBehaviourTest {

  /** A two-variable model whose gradient is the fed x (NaN in, NaN gradient out) on one of them. */
  private static final class RefModel implements AutoCloseable {
    final Graph g = new Graph();
    final Ops tf = Ops.create(g);
    final Placeholder<TFloat32> x = tf.placeholder(TFloat32.class, Placeholder.shape(Shape.of(3)));
    final Variable<TFloat32> a = tf.withName("a").variable(tf.constant(new float[] {1, 2, 3}));
    final Variable<TFloat32> b = tf.withName("b").variable(tf.constant(new float[] {4, 5}));
    final FisherOptimizer opt;
    final Op train;
    final Session s;

    RefModel(Algorithm optimizer, NonFinitePolicy policy) {
      var loss = tf.math.add(tf.reduceSum(tf.math.mul(tf.identity(a), x), tf.constant(0)),
          tf.reduceSum(tf.math.square(tf.identity(b)), tf.constant(0)));
      FisherOptions o = FisherOptions.builder().nonFinite(policy).build();
      opt = FisherOptimizer.create(optimizer, g, optimizer.displayName(), 0.1, o);
      train = opt.minimize(loss, "train");
      s = new Session(g);
      s.initialize();
    }

    void step(float... xs) {
      try (TFloat32 t = TFloat32.vectorOf(xs)) {
        s.runner().feed(x, t).addTarget(train).run().close();
      }
    }

    /** θ and every slot of both variables, and the step counters, in one array. */
    double[] state() {
      List<Double> all = new ArrayList<>();
      for (Variable<TFloat32> v : List.of(a, b)) {
        for (double d : OptimizerContractTest.values(s, tf, v)) {
          all.add(d);
        }
        for (String slot : List.of(FisherOptimizer.FIRST_MOMENT, FisherOptimizer.FIM, FisherOptimizer.STEP)) {
          for (double d : OptimizerContractTest.values(s, tf, opt.getSlot(v.asOutput(), slot).orElseThrow())) {
            all.add(d);
          }
        }
      }
      return all.stream().mapToDouble(Double::doubleValue).toArray();
    }

    @Override
    public void close() {
      s.close();
      g.close();
    }
  }

  @ParameterizedTest(name = "{0}")
  @EnumSource(Algorithm.class)
  void skipLeavesEveryVariableAndSlotAndCountsTheStep(Algorithm optimizer) {
    for (float bad : new float[] {Float.NaN, Float.POSITIVE_INFINITY, 1e20f}) {
      try (RefModel m = new RefModel(optimizer, NonFinitePolicy.SKIP)) {
        m.step(0.5f, -1f, 2f);
        double[] before = m.state();
        m.step(0.5f, bad, 2f); // only a's gradient is bad: b is not updated either
        assertArrayEquals(before, m.state(), "a skipped step changes nothing, for gradient " + bad);
        assertEquals(1L, OptimizerContractTest.longOf(m.s, m.opt.skippedSteps().orElseThrow()));
        m.step(0.5f, -1f, 2f);
        assertEquals(2L, OptimizerContractTest.longOf(m.s, m.opt.getSlot(m.a.asOutput(), FisherOptimizer.STEP).orElseThrow()));
        for (double v : m.state()) {
          assertTrue(Double.isFinite(v));
        }
      }
    }
  }

  /**
   * Finiteness is decided by Σg², so a gradient whose squares are each finite but whose sum
   * overflows (here 3 × 2.25e38 in float32) is skipped too, while one just below passes.
   */
  @ParameterizedTest(name = "{0}")
  @EnumSource(value = Algorithm.class, names = {"FADAM", "FADAFACTOR", "ADAM"})
  void skipsAGradientWhoseSumOfSquaresOverflows(Algorithm optimizer) {
    try (RefModel m = new RefModel(optimizer, NonFinitePolicy.SKIP)) {
      m.step(0.5f, -1f, 2f);
      double[] before = m.state();
      m.step(1.5e19f, 1.5e19f, 1.5e19f);
      assertArrayEquals(before, m.state(), "a step whose Σg² overflows changes nothing");
      assertEquals(1L, OptimizerContractTest.longOf(m.s, m.opt.skippedSteps().orElseThrow()));
      m.step(1e19f, 1e19f, 1e19f); // Σg² = 3e38 still fits
      assertEquals(1L, OptimizerContractTest.longOf(m.s, m.opt.skippedSteps().orElseThrow()));
      assertEquals(2L, OptimizerContractTest.longOf(m.s, m.opt.getSlot(m.a.asOutput(), FisherOptimizer.STEP).orElseThrow()));
      for (double v : m.state()) {
        assertTrue(Double.isFinite(v));
      }
    }
  }

  @ParameterizedTest(name = "{0}")
  @EnumSource(Algorithm.class)
  void propagateLetsNanThrough(Algorithm optimizer) {
    try (RefModel m = new RefModel(optimizer, NonFinitePolicy.PROPAGATE)) {
      m.step(0.5f, Float.NaN, 2f);
      assertTrue(Double.isNaN(OptimizerContractTest.values(m.s, m.tf, m.a)[1]));
    }
  }

  @ParameterizedTest(name = "{0}")
  @EnumSource(Algorithm.class)
  void errorFailsTheRunNamingTheVariableAndChangesNothing(Algorithm optimizer) {
    try (RefModel m = new RefModel(optimizer, NonFinitePolicy.ERROR)) {
      m.step(0.5f, -1f, 2f);
      double[] before = m.state();
      RuntimeException e = assertThrows(RuntimeException.class, () -> m.step(Float.NaN, -1f, 2f));
      assertTrue(e.getMessage().contains("non-finite gradient (NaN, Inf, or a sum of squares that overflows) for variable `a`"), e.getMessage());
      assertArrayEquals(before, m.state());
    }
  }

  /** The fused step, with and without XLA: skip counts, error names the variable, state kept. */
  @ParameterizedTest(name = "{0} jit={1}")
  @CsvSource({"SKIP,true", "SKIP,false", "ERROR,true", "ERROR,false", "PROPAGATE,true"})
  void policiesInTheFusedStep(NonFinitePolicy policy, boolean jit) {
    try (Graph g = new Graph()) {
      Ops tf = Ops.create(g);
      var w = ResourceVariable.create(tf, "w", tf.withInitScope().constant(new float[] {1, 2, 3}));
      FisherTrainStep step = FisherTrainStep.builder(g)
          .fadam(0.1, FisherOptions.builder().nonFinite(policy).build())
          .input("x", TFloat32.class, Shape.of(3))
          .variables(List.of(w))
          .loss((ops, in, v) -> ops.reduceSum(ops.math.mul(v.float32("w"), in.float32("x")), ops.constant(0)))
          .jit(jit).build();
      try (Session s = new Session(g); TFloat32 good = TFloat32.vectorOf(1f, -1f, 0.5f); TFloat32 bad = TFloat32.vectorOf(1f, Float.NaN, 0.5f)) {
        s.initialize();
        step.train(s, Map.of("x", good));
        float[] before = read(s, tf, w);
        if (policy == NonFinitePolicy.ERROR) {
          var e = assertThrows(IllegalStateException.class, () -> step.train(s, Map.of("x", bad)));
          assertTrue(e.getMessage().contains("for variable `w`; no variable was changed"), e.getMessage());
        } else {
          step.train(s, Map.of("x", bad));
        }
        float[] after = read(s, tf, w);
        if (policy == NonFinitePolicy.PROPAGATE) {
          assertTrue(Float.isNaN(after[1]));
          return;
        }
        assertArrayEquals(before, after);
        assertEquals(policy == NonFinitePolicy.SKIP ? 1L : 0L, longOf(s, step.skippedSteps().read(tf)));
        assertEquals(1L, longOf(s, step.slot(w, FisherOptimizer.STEP).orElseThrow().read(tf)), "w's own step count");
        // SKIP counts the skipped call; ERROR refuses it, its count included
        assertEquals(policy == NonFinitePolicy.SKIP ? 2L : 1L, longOf(s, step.iterations().read(tf)),
            "iterations");
      }
    }
  }

  static float[] read(Session s, Ops tf, ResourceVariable<TFloat32> v) {
    try (var r = s.runner().fetch(v.read(tf)).run()) {
      TFloat32 t = (TFloat32) r.get(0);
      float[] out = new float[(int) t.shape().size()];
      t.copyTo(org.tensorflow.ndarray.buffer.DataBuffers.of(out, false, false));
      return out;
    }
  }

  static long longOf(Session s, org.tensorflow.Operand<?> v) {
    return OptimizerContractTest.longOf(s, v);
  }

  @Test
  void invalidHyperparametersNameTheParameterRangeAndValue() {
    record Bad(Runnable build, String message) {}
    List<Bad> bad = List.of(
        new Bad(() -> FisherOptions.builder().beta1(1.0).build(), "`beta1` must be in [0, 1); got 1.0"),
        new Bad(() -> FisherOptions.builder().beta2(Double.NaN).build(), "`beta2` must be in [0, 1); got NaN"),
        new Bad(() -> FisherOptions.builder().beta2(-0.1).build(), "`beta2` must be in [0, 1); got -0.1"),
        new Bad(() -> FisherOptions.builder().epsilon(Double.POSITIVE_INFINITY).build(), "`epsilon` must be in [0, ∞); got Infinity"),
        new Bad(() -> FisherOptions.builder().epsilon2(-1).build(), "`epsilon2` must be in [0, ∞); got -1.0"),
        new Bad(() -> FisherOptions.builder().clipThreshold(0).build(), "`clipThreshold` must be in (0, ∞); got 0.0"),
        new Bad(() -> FisherOptions.builder().clipThreshold(Double.NaN).build(), "`clipThreshold` must be in (0, ∞); got NaN"),
        new Bad(() -> FisherOptions.builder().weightDecay(-0.001).build(), "`weightDecay` must be in [0, ∞); got -0.001"),
        new Bad(() -> FisherOptions.builder().rho(0).build(), "`rho` must be in (0, ∞); got 0.0"),
        new Bad(() -> FisherOptions.builder().factoredMinDim(0).build(), "`factoredMinDim` must be in [1, ∞); got 0"),
        new Bad(() -> FisherTrainStep.builder(new Graph()).fadam(Double.NaN, FisherOptions.defaults()), "`learningRate` must be in [0, ∞); got NaN"),
        new Bad(() -> FisherTrainStep.builder(new Graph()).adam(-1, FisherOptions.defaults()), "`learningRate` must be in [0, ∞); got -1.0"));
    for (Bad b : bad) {
      var e = assertThrows(IllegalArgumentException.class, b.build::run);
      assertEquals(b.message, e.getMessage());
    }
  }

  @Test
  void aNonFloatResourceVariableIsNamed() {
    try (Graph g = new Graph()) {
      Ops tf = Ops.create(g);
      var counts = ResourceVariable.create(tf, "counts", tf.withInitScope().constant(new int[] {1, 2}));
      var e = assertThrows(IllegalArgumentException.class, () -> FisherTrainStep.builder(g)
          .variables(List.of(counts))
          .loss((ops, in, v) -> ops.constant(0f))
          .build());
      assertTrue(e.getMessage().startsWith("variable 'counts' has dtype DT_INT32"), e.getMessage());
    }
  }

  @Test
  void aMissingOrTruncatedSavedModelIsAClearError(@TempDir Path tmp) throws Exception {
    var e = assertThrows(IllegalArgumentException.class, () -> FisherTrainStep.loadSavedModel(tmp.resolve("absent")));
    assertEquals("no SavedModel at " + tmp.resolve("absent") + ": the directory does not exist", e.getMessage());
    Path dir = tmp.resolve("model");
    ResumeProbe.run(Algorithm.FADAM, false, 2, 2, dir);
    Path data = dir.resolve("variables/variables.data-00000-of-00001");
    byte[] bytes = Files.readAllBytes(data);
    Files.write(data, java.util.Arrays.copyOf(bytes, bytes.length / 2));
    e = assertThrows(IllegalArgumentException.class, () -> FisherTrainStep.loadSavedModel(dir).close());
    assertTrue(e.getMessage().startsWith("cannot load the SavedModel at " + dir + ": "), e.getMessage());
    Files.delete(dir.resolve("saved_model.pb"));
    e = assertThrows(IllegalArgumentException.class, () -> FisherTrainStep.loadSavedModel(dir));
    assertEquals("no SavedModel at " + dir + ": saved_model.pb is missing", e.getMessage());
  }

  /** Threads sharing one session through {@link FisherTrainStep#train}: every step counted once. */
  @Test
  void concurrentTrainCallsAreCountedOnce() throws Exception {
    try (Graph g = new Graph()) {
      FisherTrainStep step = ResumeProbe.build(g, Algorithm.FADAM, true);
      Ops tf = Ops.create(g);
      try (Session s = new Session(g)) {
        s.initialize();
        ExecutorService pool = Executors.newFixedThreadPool(8);
        List<Future<Long>> results = new ArrayList<>();
        for (int t = 0; t < 8; t++) {
          final int thread = t;
          results.add(pool.submit(() -> {
            long last = 0;
            for (int k = 0; k < 25; k++) {
              Map<String, TFloat32> feeds = ResumeProbe.batch(thread * 100 + k);
              last = step.train(s, feeds).step();
              feeds.values().forEach(TFloat32::close);
            }
            return last;
          }));
        }
        Set<Long> lasts = new HashSet<>();
        for (Future<Long> f : results) {
          lasts.add(f.get());
        }
        pool.shutdown();
        assertEquals(8, lasts.size(), "each call saw its own step number");
        assertEquals(200L, longOf(s, step.iterations().read(tf)));
        for (ResourceVariable<?> p : step.parameters()) {
          assertEquals(200L, longOf(s, step.slot(p, FisherOptimizer.STEP).orElseThrow().read(tf)), p.name());
        }
      }
    }
  }

  /** Same seed, same thread settings: bit-identical trajectories; the framework Adam is printed. */
  @Test
  void repeatableTrajectories() {
    Set<List<Float>> ours = new HashSet<>();
    Set<List<Float>> framework = new HashSet<>();
    for (int run = 0; run < 20; run++) {
      ours.add(trajectory(g -> new FAdam(g, 0.05f)));
      framework.add(trajectory(g -> new Adam(g, 0.05f)));
    }
    System.out.println("20 runs of 5 steps: FAdam gave " + ours.size()
        + " distinct trajectories, the framework Adam " + framework.size());
    assertEquals(1, ours.size(), "FAdam is bit-repeatable");
  }

  private static List<Float> trajectory(java.util.function.Function<Graph, org.tensorflow.framework.optimizers.Optimizer> make) {
    try (Graph g = new Graph()) {
      Ops tf = Ops.create(g);
      Variable<TFloat32> w = tf.variable(tf.constant(new float[] {0.5f, -1f, 2f, 0.25f}));
      var loss = tf.reduceSum(tf.math.square(tf.math.sub(tf.identity(w), tf.constant(new float[] {1f, 1f, 1f, 1f}))), tf.constant(0));
      Op train = make.apply(g).minimize(loss, "train");
      List<Float> out = new ArrayList<>();
      try (Session s = new Session(g)) {
        s.initialize();
        for (int k = 0; k < 5; k++) {
          s.run(train);
          for (double v : OptimizerContractTest.values(s, tf, w)) {
            out.add((float) v);
          }
        }
      }
      return out;
    }
  }
}
