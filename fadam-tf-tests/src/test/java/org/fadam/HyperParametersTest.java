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
import java.util.function.Consumer;
import java.util.function.Predicate;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.tensorflow.Graph;
import org.tensorflow.Operand;
import org.tensorflow.SavedModelBundle;
import org.tensorflow.Session;
import org.tensorflow.Tensor;
import org.tensorflow.ndarray.Shape;
import org.tensorflow.op.Op;
import org.tensorflow.op.Ops;
import org.tensorflow.op.core.Variable;
import org.tensorflow.types.TBool;
import org.tensorflow.types.TFloat32;
import org.tensorflow.types.TInt64;
import org.tensorflow.types.family.TFloating;

/**
 * Run-time hyperparameters ({@code hparams/learning_rate_scale}, {@code hparams/weight_decay}),
 * weight-decay masks, the {@code finite} output, and ERROR's uncounted refusal, against runs that
 * compute the same steps another way (a step built with the changed value as its constant).
 */
class HyperParametersTest {

  private static final float[][] W0 = {{0.5f, -1f, 2f}, {0.25f, 1.5f, -0.75f}};
  private static final float[] B0 = {0.3f, -0.2f, 0.1f};
  private static final float[][] X = {{1f, 2f}, {0.5f, -2f}, {-1f, 0.25f}};

  /** The two parameters' values after every train call, as float bits. */
  private record Trace(List<int[]> w, List<int[]> b, long iterations) {}

  /** A two-parameter model (a matrix w and a bias b) trained {@code steps} times. */
  private static Trace run(Algorithm a, double lr, FisherOptions o, Predicate<ResourceVariable<?>> mask,
      int steps, Consumer<Object[]> between) {
    try (Graph g = new Graph()) {
      Ops tf = Ops.create(g);
      var w = ResourceVariable.create(tf, "w", tf.withInitScope().constant(W0));
      var b = ResourceVariable.create(tf, "b", tf.withInitScope().constant(B0));
      var builder = FisherTrainStep.builder(g).algorithm(a, lr, o).variables(List.of(w, b))
          .input("x", TFloat32.class, Shape.of(-1, 2))
          .loss((ops, in, v) -> loss(ops, in.float32("x"), v.float32("w"), v.float32("b")));
      if (mask != null) {
        builder.weightDecayMask(mask);
      }
      FisherTrainStep step = builder.build();
      try (Session s = new Session(g); TFloat32 x = TFloat32.tensorOf(org.tensorflow.ndarray.StdArrays.ndCopyOf(X))) {
        s.initialize();
        List<int[]> ws = new ArrayList<>();
        List<int[]> bs = new ArrayList<>();
        for (int k = 0; k < steps; k++) {
          if (between != null) {
            between.accept(new Object[] {step, s, k});
          }
          step.train(s, Map.of("x", x));
          ws.add(bits(s, tf, w));
          bs.add(bits(s, tf, b));
        }
        return new Trace(ws, bs, longOf(s, step.iterations().read(tf)));
      }
    }
  }

  /**
   * A separable loss, mean((x w − 1)²) + mean((b − 0.7)²): each parameter's gradient depends on
   * itself only, so that a masked-out parameter's trajectory cannot depend on the other's decay.
   */
  private static Operand<? extends TFloating> loss(Ops ops, Operand<TFloat32> x, Operand<TFloat32> w,
      Operand<TFloat32> b) {
    Operand<TFloat32> fit = ops.math.mean(ops.math.square(ops.math.sub(ops.linalg.matMul(x, w), ops.constant(1f))),
        ops.constant(new int[] {0, 1}));
    return ops.math.add(fit, ops.math.mean(ops.math.square(ops.math.sub(b, ops.constant(0.7f))), ops.constant(0)));
  }

  static int[] bits(Session s, Ops tf, ResourceVariable<?> v) {
    try (TFloat32 t = (TFloat32) s.runner().fetch(v.read(tf)).run().get(0)) {
      int[] out = new int[(int) t.shape().size()];
      int[] i = {0};
      t.scalars().forEach(e -> out[i[0]++] = Float.floatToRawIntBits(e.getFloat()));
      return out;
    }
  }

  static long longOf(Session s, Operand<?> x) {
    try (TInt64 t = (TInt64) s.runner().fetch(x).run().get(0)) {
      return t.getLong();
    }
  }

  static long longOf(Session s, String op) {
    try (TInt64 t = (TInt64) s.runner().fetch(op).run().get(0)) {
      return t.getLong();
    }
  }

  private static void assertSameTrace(List<int[]> expected, List<int[]> actual, String what) {
    for (int k = 0; k < expected.size(); k++) {
      assertArrayEquals(expected.get(k), actual.get(k), what + " after step " + (k + 1));
    }
  }

  private static boolean anyDiffers(List<int[]> a, List<int[]> b) {
    for (int k = 0; k < a.size(); k++) {
      if (!java.util.Arrays.equals(a.get(k), b.get(k))) {
        return true;
      }
    }
    return false;
  }

  private static FisherOptions decay(double lambda) {
    return FisherOptions.builder().weightDecay(lambda).factoredMinDim(2).build();
  }

  /**
   * A masked-out variable takes exactly the step of λ = 0, bit for bit, while the decayed one
   * differs from it; the mask is the ready-made rank ≥ 2 rule (w decayed, b not).
   */
  @ParameterizedTest(name = "{0}")
  @EnumSource(Algorithm.class)
  void aMaskedOutVariableStepsAsWithoutWeightDecay(Algorithm a) {
    Trace masked = run(a, 0.05, decay(0.3), WeightDecayMasks.matrices(), 6, null);
    Trace none = run(a, 0.05, decay(0), null, 6, null);
    Trace all = run(a, 0.05, decay(0.3), null, 6, null);
    assertSameTrace(none.b(), masked.b(), "b (masked out) against λ = 0");
    assertSameTrace(all.w(), masked.w(), "w (decayed) against the unmasked step");
    assertTrue(anyDiffers(none.w(), masked.w()), "w is decayed");
    assertTrue(anyDiffers(all.b(), masked.b()), "b would have been decayed without the mask");
  }

  /** η·0.5 at run time is the step built with η/2; λ set at run time is the step built with it. */
  @ParameterizedTest(name = "{0}")
  @EnumSource(Algorithm.class)
  void runTimeValuesEqualStepsBuiltWithThem(Algorithm a) {
    Trace scaled = run(a, 0.05, decay(0.3), null, 4, o -> ((FisherTrainStep) o[0]).setLearningRateScale((Session) o[1], 0.5));
    Trace halved = run(a, 0.025, decay(0.3), null, 4, null);
    assertSameTrace(halved.w(), scaled.w(), "w");
    assertSameTrace(halved.b(), scaled.b(), "b");
    Trace set = run(a, 0.05, decay(0.3), null, 4, o -> ((FisherTrainStep) o[0]).setWeightDecay((Session) o[1], 0.125));
    Trace built = run(a, 0.05, decay(0.125), null, 4, null);
    assertSameTrace(built.w(), set.w(), "w");
    assertSameTrace(built.b(), set.b(), "b");
  }

  /**
   * Scale 0 freezes every parameter from the middle of a run, for the algorithms whose update is
   * η_t times a direction (Algorithms 1–3).
   */
  @ParameterizedTest(name = "{0}")
  @EnumSource(value = Algorithm.class, names = {"FADAM", "FADAFACTOR", "ADAM"})
  void scaleZeroFreezesEveryParameter(Algorithm a) {
    Trace t = run(a, 0.05, decay(0.3), null, 6,
        o -> ((FisherTrainStep) o[0]).setLearningRateScale((Session) o[1], (int) o[2] < 3 ? 1 : 0));
    for (int k = 3; k < 6; k++) {
      assertArrayEquals(t.w().get(2), t.w().get(k), "w frozen at step " + (k + 1));
      assertArrayEquals(t.b().get(2), t.b().get(k), "b frozen at step " + (k + 1));
    }
    assertFalse(java.util.Arrays.equals(t.w().get(0), t.w().get(2)), "w moved before");
    assertEquals(6, t.iterations(), "frozen steps are still steps");
  }

  /**
   * Algorithm 4 puts η inside its momentum and decays by λθ without η: scale 0 stops new gradient
   * from entering m, but the momentum already taken keeps moving θ, and so does λ. From the first
   * step with λ = 0, m stays 0 and θ stays put.
   */
  @Test
  void adafactorScaleZeroStopsOnlyNewGradient() {
    Trace frozen = run(Algorithm.ADAFACTOR, 0.05, decay(0), null, 4,
        o -> ((FisherTrainStep) o[0]).setLearningRateScale((Session) o[1], 0));
    Trace start = run(Algorithm.ADAFACTOR, 0.05, decay(0), null, 1,
        o -> ((FisherTrainStep) o[0]).setLearningRateScale((Session) o[1], 1));
    for (int k = 0; k < 4; k++) {
      assertArrayEquals(bitsOf(W0), frozen.w().get(k), "w at step " + (k + 1));
    }
    assertFalse(java.util.Arrays.equals(bitsOf(W0), start.w().get(0)), "w moves at scale 1");
    Trace coasting = run(Algorithm.ADAFACTOR, 0.05, decay(0), null, 4,
        o -> ((FisherTrainStep) o[0]).setLearningRateScale((Session) o[1], (int) o[2] < 2 ? 1 : 0));
    assertTrue(anyDiffers(List.of(coasting.w().get(1)), List.of(coasting.w().get(3))),
        "the momentum taken at steps 1–2 keeps moving w");
  }

  private static int[] bitsOf(float[][] x) {
    int[] out = new int[x.length * x[0].length];
    int i = 0;
    for (float[] row : x) {
      for (float v : row) {
        out[i++] = Float.floatToRawIntBits(v);
      }
    }
    return out;
  }

  /** The hyperparameters are variables of the export and the checkpoint, restored with the rest. */
  @Test
  void theHyperparametersAreExportedAndRestored(@TempDir Path dir) throws Exception {
    Path export = dir.resolve("model");
    try (Graph g = new Graph()) {
      FisherTrainStep step = small(g, decay(0.3));
      try (Session s = new Session(g)) {
        s.initialize();
        step.setLearningRateScale(s, 0.25);
        step.setWeightDecay(s, 0.5);
        step.export(s, export);
      }
      List<String> names = step.variables().stream().map(ResourceVariable::name).toList();
      assertTrue(names.contains("train_step/hparams/learning_rate_scale"), names.toString());
      assertTrue(names.contains("train_step/hparams/weight_decay"), names.toString());
      assertFalse(step.parameters().contains(step.learningRateScale()), "not trainable");
    }
    try (Graph g = new Graph()) {
      Ops tf = Ops.create(g);
      FisherTrainStep step = small(g, decay(0.3));
      try (Session s = new Session(g)) {
        s.initialize();
        step.restore(s, export);
        assertEquals(0.25f, floatOf(s, step.learningRateScale().read(tf)));
        assertEquals(0.5f, floatOf(s, step.weightDecay().orElseThrow().read(tf)));
      }
    }
    try (SavedModelBundle m = FisherTrainStep.loadSavedModel(export);
        TFloat32 scale = (TFloat32) m.session().runner()
            .fetch("train_step/hparams/learning_rate_scale/Read/ReadVariableOp").run().get(0)) {
      assertEquals(0.25f, scale.getFloat());
    }
  }

  /** Each bad value fails with one line naming it; nothing is assigned. */
  @Test
  void badValuesAreRefused() {
    try (Graph g = new Graph()) {
      Ops tf = Ops.create(g);
      FisherTrainStep step = small(g, decay(0.3));
      try (Session s = new Session(g)) {
        s.initialize();
        for (double bad : new double[] {-1, Double.NaN, Double.POSITIVE_INFINITY}) {
          var e = assertThrows(IllegalArgumentException.class, () -> step.setLearningRateScale(s, bad));
          assertEquals("learning_rate_scale must be finite and ≥ 0; got " + bad, e.getMessage());
          e = assertThrows(IllegalArgumentException.class, () -> step.setWeightDecay(s, bad));
          assertEquals("weight_decay must be finite and ≥ 0; got " + bad, e.getMessage());
        }
        assertEquals(1f, floatOf(s, step.learningRateScale().read(tf)));
        assertEquals(0.3f, floatOf(s, step.weightDecay().orElseThrow().read(tf)));
      }
    }
    try (Graph g = new Graph()) {
      FisherTrainStep step = small(g, decay(0));
      assertTrue(step.weightDecay().isEmpty());
      try (Session s = new Session(g)) {
        s.initialize();
        var e = assertThrows(IllegalStateException.class, () -> step.setWeightDecay(s, 0.1));
        assertTrue(e.getMessage().startsWith("the step was built with weightDecay 0"), e.getMessage());
      }
    }
  }

  /** A mask that decays nothing (a typo) and a mask without weight decay fail at build(). */
  @Test
  void badMasksFailAtBuild() {
    try (Graph g = new Graph()) {
      Ops tf = Ops.create(g);
      var w = ResourceVariable.create(tf, "w", tf.withInitScope().constant(W0));
      var e = assertThrows(IllegalArgumentException.class, () -> FisherTrainStep.builder(g)
          .fadam(0.1, decay(0.3)).variables(List.of(w)).loss((ops, in, v) -> ops.math.mean(
              ops.math.square(v.float32("w")), ops.constant(new int[] {0, 1})))
          .weightDecayMask(v -> v.name().equals("kernel")).build());
      assertEquals("weightDecayMask decays none of the variables [w] (a typo?); to decay none, set "
          + "FisherOptions.weightDecay(0)", e.getMessage());
      e = assertThrows(IllegalArgumentException.class, () -> FisherTrainStep.builder(g)
          .fadam(0.1, decay(0)).variables(List.of(w)).loss((ops, in, v) -> ops.math.mean(
              ops.math.square(v.float32("w")), ops.constant(new int[] {0, 1})))
          .weightDecayMask(WeightDecayMasks.matrices()).build());
      assertTrue(e.getMessage().startsWith("weightDecayMask is set but weightDecay is 0"), e.getMessage());
    }
  }

  /**
   * The drop-in optimizer's mask, by name: the excluded variable steps as with λ = 0, bit for bit,
   * the decayed one does not; a mask that decays nothing fails naming the variables.
   */
  @ParameterizedTest(name = "{0}")
  @EnumSource(Algorithm.class)
  void theDropInMaskWorksByName(Algorithm a) {
    List<int[]> masked = dropIn(a, decay(0.3), WeightDecayMasks.excludingNames(".*bias.*"));
    List<int[]> none = dropIn(a, decay(0), null);
    List<int[]> all = dropIn(a, decay(0.3), null);
    for (int k = 0; k < masked.size(); k += 2) {
      assertArrayEquals(none.get(k + 1), masked.get(k + 1), "bias against λ = 0, record " + k);
      assertArrayEquals(all.get(k), masked.get(k), "kernel against the unmasked step, record " + k);
    }
    assertTrue(anyDiffers(none, masked), "the kernel is decayed");
    var e = assertThrows(IllegalArgumentException.class, () -> dropIn(a, decay(0.3), n -> n.equals("kernal")));
    assertTrue(e.getMessage().startsWith("weightDecayMask decays none of the variables [kernel, bias]"),
        e.getMessage());
  }

  /** Kernel and bias bits after each of 4 steps, interleaved. */
  private static List<int[]> dropIn(Algorithm a, FisherOptions o, Predicate<String> mask) {
    try (Graph g = new Graph()) {
      Ops tf = Ops.create(g);
      Variable<TFloat32> w = tf.withName("kernel").variable(tf.constant(W0));
      Variable<TFloat32> b = tf.withName("bias").variable(tf.constant(B0));
      FisherOptimizer opt = FisherOptimizer.create(a, g, a.displayName(), 0.05, o);
      if (mask != null) {
        opt.weightDecayMask(mask);
      }
      Op train = opt.minimize(loss(tf, tf.constant(X), w, b), "train", List.of(w, b));
      try (Session s = new Session(g)) {
        s.initialize();
        List<int[]> out = new ArrayList<>();
        for (int k = 0; k < 4; k++) {
          s.run(train);
          for (Operand<TFloat32> v : List.of(w, b)) {
            try (TFloat32 t = (TFloat32) s.runner().fetch(v).run().get(0)) {
              int[] bits = new int[(int) t.shape().size()];
              int[] i = {0};
              t.scalars().forEach(x -> bits[i[0]++] = Float.floatToRawIntBits(x.getFloat()));
              out.add(bits);
            }
          }
        }
        return out;
      }
    }
  }

  /**
   * {@code finite} in Java's result and in the train and apply_gradients signatures; under ERROR a
   * refused call leaves {@code iterations} where it was, under SKIP it is counted.
   */
  @ParameterizedTest(name = "{0}")
  @EnumSource(value = FisherOptions.NonFinitePolicy.class)
  void finiteIsReportedAndErrorDoesNotCountTheRefusedCall(FisherOptions.NonFinitePolicy policy)
      throws java.io.IOException {
    FisherOptions o = FisherOptions.builder().nonFinite(policy).build();
    try (Graph g = new Graph()) {
      Ops tf = Ops.create(g);
      FisherTrainStep step = small(g, o);
      assertTrue(step.trainSignature().getOutputs().containsKey(FisherTrainStep.FINITE));
      assertTrue(step.applyGradientsSignature().getOutputs().containsKey(FisherTrainStep.FINITE));
      try (Session s = new Session(g);
          TFloat32 good = TFloat32.tensorOf(org.tensorflow.ndarray.StdArrays.ndCopyOf(X));
          TFloat32 bad = TFloat32.tensorOf(org.tensorflow.ndarray.StdArrays.ndCopyOf(
              new float[][] {{Float.NaN, 1f}, {0.5f, -2f}, {-1f, 0.25f}}))) {
        s.initialize();
        assertTrue(step.train(s, Map.of("x", good)).finite());
        if (policy == FisherOptions.NonFinitePolicy.ERROR) {
          assertThrows(IllegalStateException.class, () -> step.train(s, Map.of("x", bad)));
          assertEquals(1L, longOf(s, step.iterations().read(tf)), "the refused call is not counted");
        } else {
          FisherTrainStep.Result r = step.train(s, Map.of("x", bad));
          assertFalse(r.finite());
          assertEquals(2L, r.step());
        }
        // The exported signatures carry it too, for a Python job: false on the bad batch.
        Path dir = java.nio.file.Files.createTempDirectory("finite");
        step.export(s, dir.resolve("m"));
        try (SavedModelBundle m = FisherTrainStep.loadSavedModel(dir.resolve("m"))) {
          long before = longOf(m.session(), step.iterations().name() + "/Read/ReadVariableOp");
          try (var out = m.function(FisherTrainStep.TRAIN).call(Map.of("x", bad))) {
            assertFalse(((TBool) out.get(FisherTrainStep.FINITE).orElseThrow()).getBoolean());
          }
          long after = longOf(m.session(), step.iterations().name() + "/Read/ReadVariableOp");
          assertEquals(policy == FisherOptions.NonFinitePolicy.ERROR ? before : before + 1, after);
          try (StepGradients sg = step.gradients(s, Map.of("x", bad));
              var out = m.function(FisherTrainStep.APPLY_GRADIENTS).call(sg.byKey())) {
            assertFalse(((TBool) out.get(FisherTrainStep.FINITE).orElseThrow()).getBoolean());
          }
        }
      }
    }
  }

  private static FisherTrainStep small(Graph g, FisherOptions o) {
    Ops tf = Ops.create(g);
    var w = ResourceVariable.create(tf, "w", tf.withInitScope().constant(W0));
    var b = ResourceVariable.create(tf, "b", tf.withInitScope().constant(B0));
    return FisherTrainStep.builder(g).fadam(0.05, o).variables(List.of(w, b))
        .input("x", TFloat32.class, Shape.of(-1, 2))
        .loss((ops, in, v) -> loss(ops, in.float32("x"), v.float32("w"), v.float32("b"))).build();
  }

  private static float floatOf(Session s, Operand<?> x) {
    try (TFloat32 t = (TFloat32) s.runner().fetch(x).run().get(0)) {
      return t.getFloat();
    }
  }
}
