package org.fadam;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.function.LongToDoubleFunction;
import org.fadam.reference.PaperReference;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
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
    return cosine(PEAK, WARMUP, TOTAL, FINAL, t);
  }

  static double cosine(double peak, long warmup, long total, double fraction, long t) {
    if (t < warmup) {
      return peak * t / warmup; // l.1: linear from 0
    }
    double d = total - warmup;
    double p = Math.min(t - warmup, d) / d; // progress, held at 1 after the total
    double end = fraction * peak;
    return end + (peak - end) * 0.5 * (1 + Math.cos(Math.PI * p)); // cosine from peak to end
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

  // --- η_t in the working dtype, the drop-in's counter ------------------------------------------

  private static final double[][] THETA0 = {{0.5, -1, 2}, {0.25, 1.5, -0.75}};
  /** The constant gradient of the loss Σ θ⊙G, so that the reference is fed exactly what the step sees. */
  private static final double[][] G = {{0.5, -1.25, 2}, {0.75, 0.125, -1.5}};

  private static double[] flat(double[][] x) {
    return java.util.Arrays.stream(x).flatMapToDouble(java.util.Arrays::stream).toArray();
  }

  /** The paper's float64 reference with η of step k + 1 the closed form at t = k. */
  private static List<double[]> reference(Algorithm a, LongToDoubleFunction eta, int steps) {
    PaperReference.Hyper h = ConformanceTest.paperDefaults(a).withFactoredMinDim(2);
    PaperReference.State ref = PaperReference.init(a, new int[] {2, 3}, flat(THETA0), h);
    List<double[]> out = new ArrayList<>();
    for (int k = 0; k < steps; k++) {
      PaperReference.step(a, ref, flat(G), h.withLr(eta.applyAsDouble(k)));
      out.add(ref.theta.clone());
    }
    return out;
  }

  private static FisherOptions referenceOptions(Algorithm a) {
    return ConformanceTest.options(a, ConformanceTest.paperDefaults(a).withFactoredMinDim(2));
  }

  private static void assertClose(double[] want, double[] got, String what) {
    for (int i = 0; i < want.length; i++) {
      assertEquals(want[i], got[i], 1e-12 * Math.max(1, Math.abs(want[i])), what + ", element " + i);
    }
  }

  /**
   * float64 parameters see the schedule's exact value: the fused step and the drop-in with
   * warmupCosine agree with the paper's float64 reference run at η = the closed form of each step
   * (1e-12), through the warmup, the decay and past the total. (η computed in float32 would be off
   * by ~1e-8 of itself.)
   */
  @ParameterizedTest(name = "{0}")
  @EnumSource(Algorithm.class)
  void float64ParametersTakeTheScheduleExactly(Algorithm a) {
    double peak = 0.05;
    long warmup = 2;
    long total = 6;
    double fraction = 0.1;
    Schedules.Computed s = Schedules.warmupCosine(peak, warmup, total, fraction);
    List<double[]> want = reference(a, t -> cosine(peak, warmup, total, fraction, t), 8);
    try (Graph g = new Graph()) {
      Ops tf = Ops.create(g);
      var w = ResourceVariable.create(tf, "w", tf.withInitScope().constant(THETA0));
      FisherTrainStep step = FisherTrainStep.builder(g).algorithm(a, 1.0, referenceOptions(a)).schedule(s)
          .variables(List.of(w))
          .loss((ops, in, v) -> ops.reduceSum(ops.math.mul(v.float64("w"), ops.constant(G)),
              ops.constant(new int[] {0, 1})))
          .build();
      try (Session session = new Session(g)) {
        session.initialize();
        for (int k = 0; k < want.size(); k++) {
          step.train(session, Map.of());
          assertClose(want.get(k), OptimizerContractTest.values(session, tf, w.read(tf)), a + " fused, step " + (k + 1));
        }
      }
    }
    try (Graph g = new Graph()) {
      Ops tf = Ops.create(g);
      Variable<TFloat64> w = tf.variable(tf.constant(THETA0));
      FisherOptimizer opt = FisherOptimizer.create(a, g, a.displayName(), s, referenceOptions(a));
      Op train = opt.minimize(
          tf.reduceSum(tf.math.mul(w, tf.constant(G)), tf.constant(new int[] {0, 1})), "train", List.of(w));
      try (Session session = new Session(g)) {
        session.initialize();
        for (int k = 0; k < want.size(); k++) {
          session.run(train);
          assertClose(want.get(k), OptimizerContractTest.values(session, tf, w), a + " drop-in, step " + (k + 1));
        }
      }
    }
  }

  /** {@code constant(lr)} is the fixed lr bit for bit, in float64 and float32, fused and drop-in. */
  @ParameterizedTest(name = "{0} float64={1}")
  @CsvSource({"FADAM,true", "FADAM,false", "FADAFACTOR,true", "ADAM,true", "ADAFACTOR,false"})
  void aConstantScheduleIsTheFixedRateBitForBit(Algorithm a, boolean float64) {
    double lr = 1e-3; // not a float32: float32 arithmetic would show in float64's last bits
    assertEquals(fused(a, float64, lr, null), fused(a, float64, lr, Schedules.constant(lr)));
    assertEquals(dropIn(a, float64, lr, null), dropIn(a, float64, lr, Schedules.constant(lr)));
  }

  /** θ's bits after each of 3 fused steps. */
  private static List<List<Long>> fused(Algorithm a, boolean float64, double lr, FisherTrainStep.Schedule s) {
    try (Graph g = new Graph()) {
      Ops tf = Ops.create(g);
      Operand<?> init = float64 ? tf.withInitScope().constant(THETA0)
          : tf.withInitScope().dtypes.cast(tf.withInitScope().constant(THETA0), TFloat32.class);
      var w = ResourceVariable.create(tf, "w", init);
      var b = FisherTrainStep.builder(g).algorithm(a, lr, referenceOptions(a)).variables(List.of(w))
          .loss((ops, in, v) -> ops.reduceSum(ops.math.mul(ops.dtypes.cast(v.get("w"), TFloat64.class),
              ops.constant(G)), ops.constant(new int[] {0, 1})));
      FisherTrainStep step = (s == null ? b : b.schedule(s)).build();
      try (Session session = new Session(g)) {
        session.initialize();
        List<List<Long>> out = new ArrayList<>();
        for (int k = 0; k < 3; k++) {
          step.train(session, Map.of());
          out.add(bits(OptimizerContractTest.values(session, tf, w.read(tf))));
        }
        return out;
      }
    }
  }

  /** θ's bits after each of 3 drop-in steps. */
  private static List<List<Long>> dropIn(Algorithm a, boolean float64, double lr, FisherTrainStep.Schedule s) {
    try (Graph g = new Graph()) {
      Ops tf = Ops.create(g);
      Operand<?> w = float64 ? tf.variable(tf.constant(THETA0))
          : tf.variable(tf.dtypes.cast(tf.constant(THETA0), TFloat32.class));
      FisherOptions o = referenceOptions(a);
      FisherOptimizer opt = s == null ? FisherOptimizer.create(a, g, "opt", lr, o)
          : FisherOptimizer.create(a, g, "opt", s, o);
      Op train = opt.minimize(tf.reduceSum(tf.math.mul(tf.dtypes.cast(w, TFloat64.class), tf.constant(G)),
          tf.constant(new int[] {0, 1})), "train", List.of(w));
      try (Session session = new Session(g)) {
        session.initialize();
        List<List<Long>> out = new ArrayList<>();
        for (int k = 0; k < 3; k++) {
          session.run(train);
          out.add(bits(OptimizerContractTest.values(session, tf, w)));
        }
        return out;
      }
    }
  }

  private static List<Long> bits(double[] x) {
    return java.util.Arrays.stream(x).mapToObj(Double::doubleToRawLongBits).toList();
  }

  /** The drop-in model: loss mean((θ·x − 0.3)²), x fed (NaN makes a non-finite gradient). */
  private record Model(Graph g, Ops tf, Variable<TFloat32> w, Placeholder<TFloat32> x, FisherOptimizer opt, Op train)
      implements AutoCloseable {
    static Model of(FisherOptions.NonFinitePolicy policy) {
      Graph g = new Graph();
      Ops tf = Ops.create(g);
      Variable<TFloat32> w = tf.variable(tf.constant(new float[] {0.5f, -1f}));
      Placeholder<TFloat32> x = tf.placeholder(TFloat32.class, Placeholder.shape(Shape.scalar()));
      FisherOptimizer opt = new FAdam(g, "FAdam", Schedules.warmupLinear(0.05, 2, 6, 0.2),
          FisherOptions.builder().nonFinite(policy).build());
      Op train = opt.minimize(tf.math.mean(tf.math.square(tf.math.sub(tf.math.mul(w, x), tf.constant(0.3f))),
          tf.constant(0)), "train");
      return new Model(g, tf, w, x, opt, train);
    }

    void run(Session s, float xValue) {
      try (TFloat32 v = TFloat32.scalarOf(xValue)) {
        s.runner().feed(x, v).addTarget(train).run();
      }
    }

    long iterations(Session s) {
      return OptimizerContractTest.longOf(s, opt.iterations().orElseThrow());
    }

    @Override
    public void close() {
      g.close();
    }
  }

  /**
   * The drop-in with a schedule returns one op named as asked (as without one, and as the
   * framework's {@code minimize} does) and counts every run: a skipped step (SKIP) too, a refused
   * one (ERROR) not, as the fused step's {@code iterations}.
   */
  @Test
  void theDropInCountsEveryRunOfItsOneStepOp() {
    try (Model m = Model.of(FisherOptions.NonFinitePolicy.SKIP); Session s = new Session(m.g())) {
      assertEquals("train", m.train().op().name());
      assertEquals("FAdam-iterations", m.opt().iterations().orElseThrow().op().name());
      s.initialize();
      assertEquals(0, m.iterations(s));
      m.run(s, 1f);
      m.run(s, Float.NaN);
      m.run(s, 1f);
      assertEquals(3, m.iterations(s));
      assertEquals(1, OptimizerContractTest.longOf(s, m.opt().skippedSteps().orElseThrow()));
    }
    try (Model m = Model.of(FisherOptions.NonFinitePolicy.ERROR); Session s = new Session(m.g())) {
      s.initialize();
      m.run(s, 1f);
      assertThrows(RuntimeException.class, () -> m.run(s, Float.NaN));
      assertEquals(1, m.iterations(s));
    }
    try (Graph g = new Graph()) {
      assertTrue(new FAdam(g, 0.001f).iterations().isEmpty(), "no counter without a schedule");
    }
  }

  /**
   * The drop-in's counter is a graph variable like its slots: saved and restored by the
   * framework's saver ({@code Session.save} / {@code restore}), after which the 4th step takes η at
   * t = 3 and equals the 4th step of an uninterrupted run, bit for bit.
   */
  @Test
  void theDropInCounterIsSavedAndRestoredWithTheModel(@TempDir Path dir) {
    String prefix = dir.resolve("ckpt").toString();
    List<float[]> uninterrupted = new ArrayList<>();
    try (Model m = Model.of(FisherOptions.NonFinitePolicy.SKIP); Session s = new Session(m.g())) {
      s.initialize();
      for (int k = 0; k < 4; k++) {
        m.run(s, 1f);
        uninterrupted.add(floats(s, m.w()));
        if (k == 2) {
          s.save(prefix);
        }
      }
    }
    try (Model m = Model.of(FisherOptions.NonFinitePolicy.SKIP); Session s = new Session(m.g())) {
      s.restore(prefix);
      assertEquals(3, m.iterations(s));
      assertArrayEquals(uninterrupted.get(2), floats(s, m.w()));
      m.run(s, 1f);
      assertArrayEquals(uninterrupted.get(3), floats(s, m.w()), "the 4th step after the restore");
      assertEquals(4, m.iterations(s));
    }
  }

  @Test
  void schedulesAndTheirOptimizersSayWhatTheyAre() {
    assertEquals("constant(0.001)", Schedules.constant(0.001).toString());
    assertEquals("warmupCosine(peak=0.001, warmup=100, total=1000, final=0.1)",
        Schedules.warmupCosine(0.001, 100, 1000, 0.1).toString());
    assertEquals("warmupLinear(peak=0.001, warmup=100, total=1000, final=0.0)",
        Schedules.warmupLinear(0.001, 100, 1000, 0).toString());
    assertEquals("warmupInverseSqrt(peak=0.001, warmup=100)", Schedules.warmupInverseSqrt(0.001, 100).toString());
    try (Graph g = new Graph()) {
      String text = new FAdam(g, "opt", Schedules.warmupCosine(0.001, 100, 1000, 0.1), FisherOptions.defaults())
          .toString();
      assertTrue(text.startsWith("FAdam{name=opt, learningRate=warmupCosine(peak=0.001, warmup=100, total=1000,"
          + " final=0.1), "), text);
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
