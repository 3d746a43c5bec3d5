package org.fadam;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.function.LongToDoubleFunction;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.tensorflow.Graph;
import org.tensorflow.Operand;
import org.tensorflow.Session;
import org.tensorflow.ndarray.Shape;
import org.tensorflow.op.Op;
import org.tensorflow.op.Ops;
import org.tensorflow.op.core.Placeholder;
import org.tensorflow.op.core.Variable;
import org.tensorflow.types.TFloat32;
import org.tensorflow.types.TFloat64;
import org.tensorflow.types.TInt64;

/**
 * {@link Schedules} against their closed forms written out here in Java double (optax's
 * warmup_cosine_decay_schedule for the cosine one), and their use by the fused step and the
 * drop-in optimizers.
 */
class SchedulesTest {

  private static final double PEAK = 3e-3;
  private static final long WARMUP = 10;
  private static final long TOTAL = 50;
  private static final double FINAL = 0.1;

  /** optax: linear 0 → peak over the warmup, then end + (peak − end)·½(1 + cos(π·min(t − w, D)/D)). */
  static double cosine(long t) {
    if (t < WARMUP) {
      return PEAK * t / WARMUP;
    }
    double d = TOTAL - WARMUP;
    double p = Math.min(t - WARMUP, d) / d;
    double end = FINAL * PEAK;
    return end + (PEAK - end) * 0.5 * (1 + Math.cos(Math.PI * p));
  }

  static double linear(long t) {
    if (t < WARMUP) {
      return PEAK * t / WARMUP;
    }
    double p = Math.min(t - WARMUP, TOTAL - WARMUP) / (double) (TOTAL - WARMUP);
    return PEAK + (FINAL * PEAK - PEAK) * p;
  }

  static double inverseSqrt(long t) {
    return t < WARMUP ? PEAK * t / WARMUP : PEAK * Math.sqrt((double) WARMUP / t);
  }

  private static final long[] STEPS = {0, 1, WARMUP - 1, WARMUP, WARMUP + 1, 30, TOTAL - 1, TOTAL, 2 * TOTAL};

  private static double[] evaluate(Schedules.Computed s, boolean float64) {
    try (Graph g = new Graph(); Session session = new Session(g)) {
      Ops tf = Ops.create(g);
      double[] out = new double[STEPS.length];
      for (int i = 0; i < STEPS.length; i++) {
        Operand<TInt64> t = tf.constant(STEPS[i]);
        if (float64) {
          try (TFloat64 v = (TFloat64) session.runner().fetch(s.value(tf, t, TFloat64.class)).run().get(0)) {
            out[i] = v.getDouble();
          }
        } else {
          try (TFloat32 v = (TFloat32) session.runner().fetch(s.learningRate(tf, t)).run().get(0)) {
            out[i] = v.getFloat();
          }
        }
      }
      return out;
    }
  }

  private static void check(Schedules.Computed s, LongToDoubleFunction closedForm) {
    double[] f64 = evaluate(s, true);
    double[] f32 = evaluate(s, false);
    for (int i = 0; i < STEPS.length; i++) {
      double want = closedForm.applyAsDouble(STEPS[i]);
      assertEquals(want, f64[i], 1e-15 * PEAK, s + " float64 at t = " + STEPS[i]);
      assertEquals(want, f32[i], 4e-7 * PEAK, s + " float32 at t = " + STEPS[i]);
    }
  }

  @Test
  void eachScheduleIsItsClosedFormInFloat32AndFloat64() {
    check(Schedules.constant(PEAK), t -> PEAK);
    check(Schedules.warmupCosine(PEAK, WARMUP, TOTAL, FINAL), SchedulesTest::cosine);
    check(Schedules.warmupLinear(PEAK, WARMUP, TOTAL, FINAL), SchedulesTest::linear);
    check(Schedules.warmupInverseSqrt(PEAK, WARMUP), SchedulesTest::inverseSqrt);
    // spot values that need no formula: 0 at t = 0, the peak at the warmup, the end held after
    double[] c = evaluate(Schedules.warmupCosine(PEAK, WARMUP, TOTAL, FINAL), true);
    assertEquals(0, c[0]);
    assertEquals(PEAK, c[3], 1e-18);
    assertEquals(FINAL * PEAK, c[8], 1e-18);
    // no warmup: the peak at t = 0
    assertEquals(PEAK, evaluate(Schedules.warmupCosine(PEAK, 0, TOTAL, FINAL), true)[0], 1e-18);
  }

  @Test
  void badArgumentsFailWithOneLine() {
    assertEquals("warmupSteps 200 must be less than totalSteps 100 (the decay needs at least one step)",
        assertThrows(IllegalArgumentException.class, () -> Schedules.warmupCosine(1e-3, 200, 100, 0.1)).getMessage());
    assertEquals("warmupSteps must be ≥ 0; got -1",
        assertThrows(IllegalArgumentException.class, () -> Schedules.warmupLinear(1e-3, -1, 100, 0.1)).getMessage());
    assertEquals("finalFraction must be in [0, 1]; got 1.5",
        assertThrows(IllegalArgumentException.class, () -> Schedules.warmupCosine(1e-3, 1, 100, 1.5)).getMessage());
    assertEquals("peak must be finite and ≥ 0; got NaN",
        assertThrows(IllegalArgumentException.class, () -> Schedules.warmupLinear(Double.NaN, 1, 100, 0)).getMessage());
    assertEquals("lr must be finite and ≥ 0; got -0.1",
        assertThrows(IllegalArgumentException.class, () -> Schedules.constant(-0.1)).getMessage());
    assertEquals("warmupSteps must be ≥ 1 for warmupInverseSqrt; got 0",
        assertThrows(IllegalArgumentException.class, () -> Schedules.warmupInverseSqrt(1e-3, 0)).getMessage());
  }

  /** The schedule's float32 value at t, evaluated on its own. */
  private static float valueAt(Schedules.Computed s, long t) {
    try (Graph g = new Graph(); Session session = new Session(g)) {
      Ops tf = Ops.create(g);
      try (TFloat32 v = (TFloat32) session.runner().fetch(s.learningRate(tf, tf.constant(t))).run().get(0)) {
        return v.getFloat();
      }
    }
  }

  private static final float[][] W0 = {{0.5f, -1f, 2f}, {0.25f, 1.5f, -0.75f}};

  private static FisherTrainStep step(Graph g, Algorithm a, FisherTrainStep.Schedule schedule) {
    Ops tf = Ops.create(g);
    var w = ResourceVariable.create(tf, "w", tf.withInitScope().constant(W0));
    var b = FisherTrainStep.builder(g).algorithm(a, 1.0, FisherOptions.builder().factoredMinDim(2).build())
        .variables(List.of(w))
        .loss((ops, in, v) -> ops.math.mean(ops.math.square(ops.math.sub(v.float32("w"), ops.constant(0.3f))),
            ops.constant(new int[] {0, 1})));
    return (schedule == null ? b : b.schedule(schedule)).build();
  }

  /**
   * The fused step reads η_t at t = iterations: its trajectory equals a step with η = 1 whose
   * run-time scale is set to the schedule's value before each step, bit for bit; and a step
   * restored from an export after 3 steps continues with η at t = 3.
   */
  @ParameterizedTest(name = "{0}")
  @EnumSource(Algorithm.class)
  void theFusedStepTakesEtaAtItsIterations(Algorithm a, @TempDir Path dir) throws Exception {
    Schedules.Computed s = Schedules.warmupCosine(0.05, 2, 6, 0.1);
    List<int[]> scheduled = new ArrayList<>();
    List<int[]> byHand = new ArrayList<>();
    try (Graph g = new Graph()) {
      Ops tf = Ops.create(g);
      FisherTrainStep step = step(g, a, s);
      try (Session session = new Session(g)) {
        session.initialize();
        for (int k = 0; k < 5; k++) {
          step.train(session, Map.of());
          scheduled.add(HyperParametersTest.bits(session, tf, step.parameters().get(0)));
          if (k == 2) {
            step.export(session, dir.resolve("m"));
          }
        }
      }
    }
    try (Graph g = new Graph()) {
      Ops tf = Ops.create(g);
      FisherTrainStep step = step(g, a, null);
      try (Session session = new Session(g)) {
        session.initialize();
        for (int k = 0; k < 5; k++) {
          step.setLearningRateScale(session, valueAt(s, k));
          step.train(session, Map.of());
          byHand.add(HyperParametersTest.bits(session, tf, step.parameters().get(0)));
        }
      }
    }
    for (int k = 0; k < 5; k++) {
      assertArrayEquals(byHand.get(k), scheduled.get(k), "step " + (k + 1));
    }
    try (Graph g = new Graph()) {
      Ops tf = Ops.create(g);
      FisherTrainStep step = step(g, a, s);
      try (Session session = new Session(g)) {
        session.initialize();
        step.restore(session, dir.resolve("m"));
        step.train(session, Map.of());
        assertArrayEquals(scheduled.get(3), HyperParametersTest.bits(session, tf, step.parameters().get(0)),
            "the resumed 4th step");
      }
    }
  }

  /**
   * A drop-in optimizer with a schedule: its own counter advances once per run, and each step
   * equals the same optimizer fed the schedule's value through a placeholder, bit for bit.
   */
  @ParameterizedTest(name = "{0}")
  @EnumSource(Algorithm.class)
  void theDropInCountsItsOwnSteps(Algorithm a) {
    Schedules.Computed s = Schedules.warmupLinear(0.05, 2, 6, 0.2);
    FisherOptions o = FisherOptions.builder().factoredMinDim(2).build();
    List<float[]> scheduled = new ArrayList<>();
    try (Graph g = new Graph()) {
      Ops tf = Ops.create(g);
      Variable<TFloat32> w = tf.variable(tf.constant(W0));
      FisherOptimizer opt = FisherOptimizer.create(a, g, a.displayName(), s, o);
      Op train = opt.minimize(loss(tf, w), "train", List.of(w));
      try (Session session = new Session(g)) {
        session.initialize();
        for (int k = 0; k < 5; k++) {
          session.run(train);
          scheduled.add(floats(session, w));
        }
        try (TInt64 n = (TInt64) session.runner().fetch(opt.iterations().orElseThrow()).run().get(0)) {
          assertEquals(5, n.getLong());
        }
      }
    }
    try (Graph g = new Graph()) {
      Ops tf = Ops.create(g);
      Variable<TFloat32> w = tf.variable(tf.constant(W0));
      Placeholder<TFloat32> lr = tf.placeholder(TFloat32.class, Placeholder.shape(Shape.scalar()));
      FisherOptimizer opt = switch (a) {
        case FADAM -> new FAdam(g, a.displayName(), lr, o);
        case FADAFACTOR -> new FAdafactor(g, a.displayName(), lr, o);
        case ADAM -> new PaperAdam(g, a.displayName(), lr, o);
        case ADAFACTOR -> new PaperAdafactor(g, a.displayName(), lr, o);
      };
      Op train = opt.minimize(loss(tf, w), "train", List.of(w));
      try (Session session = new Session(g)) {
        session.initialize();
        for (int k = 0; k < 5; k++) {
          try (TFloat32 eta = TFloat32.scalarOf(valueAt(s, k))) {
            session.runner().feed(lr, eta).addTarget(train).run();
          }
          assertArrayEquals(scheduled.get(k), floats(session, w), "step " + (k + 1));
        }
      }
    }
  }

  private static Operand<TFloat32> loss(Ops tf, Operand<TFloat32> w) {
    return tf.math.mean(tf.math.square(tf.math.sub(w, tf.constant(0.3f))), tf.constant(new int[] {0, 1}));
  }

  private static float[] floats(Session s, Operand<TFloat32> x) {
    try (TFloat32 t = (TFloat32) s.runner().fetch(x).run().get(0)) {
      float[] out = new float[(int) t.shape().size()];
      int[] i = {0};
      t.scalars().forEach(e -> out[i[0]++] = e.getFloat());
      return out;
    }
  }
}
