package org.fadam;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.fadam.tools.ResumeProbe;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.EnumSource;
import org.tensorflow.Graph;
import org.tensorflow.SavedModelBundle;
import org.tensorflow.Session;
import org.tensorflow.Signature;
import org.tensorflow.ndarray.Shape;
import org.tensorflow.op.Op;
import org.tensorflow.op.Ops;
import org.tensorflow.op.core.Placeholder;
import org.tensorflow.op.core.Variable;
import org.tensorflow.types.TFloat32;
import org.tensorflow.types.TInt64;
import org.tensorflow.types.family.TType;

/** The fused resource-variable step: XLA, the ref-variable path, export and resume. */
class TrainStepTest {

  @ParameterizedTest(name = "{0}")
  @EnumSource(Algorithm.class)
  void xlaAndNonXlaAgreeWithinRoundOff(Algorithm optimizer, @TempDir Path dir) throws Exception {
    List<Float> xla = ResumeProbe.run(optimizer, true, 20, 0, dir);
    List<Float> plain = ResumeProbe.run(optimizer, false, 20, 0, dir);
    double worst = 0;
    for (int k = 0; k < xla.size(); k++) {
      worst = Math.max(worst, Math.abs(xla.get(k) - plain.get(k)) / Math.abs(plain.get(k)));
    }
    System.out.printf("%s: XLA vs non-XLA loss, 20 steps: max relative difference %.3g%n", optimizer, worst);
    assertTrue(worst <= 2e-6, optimizer + " XLA vs non-XLA: " + worst);
    assertTrue(plain.get(19) < plain.get(0), "the loss goes down");
  }

  /**
   * One copy of the math: the fused step (with and without XLA) and the ref-variable optimizer give
   * the same numbers, for every optimizer and dtype.
   */
  @ParameterizedTest(name = "{0} {1} jit={2}")
  @CsvSource({
      "FADAM,float32,false", "FADAM,float32,true", "FADAM,float64,false", "FADAM,float16,false",
      "FADAFACTOR,bfloat16,false", "FADAFACTOR,float32,true", "ADAM,float64,true", "ADAM,float32,false",
      "ADAFACTOR,float32,true", "ADAFACTOR,float64,false", "ADAFACTOR,float16,false"})
  void fusedStepMatchesTheRefVariableOptimizer(Algorithm optimizer, String dtype, boolean jit) {
    float[][] w0 = {{0.5f, -1f, 2f}, {0.25f, 1.5f, -0.75f}};
    float[][] x = {{1f, 2f, -1f}, {0.5f, -2f, 1f}};
    Class<? extends TType> type = org.fadam.tools.StepHarness.dtypeClass(dtype);
    FisherOptions o = FisherOptions.builder().factoredMinDim(2).build();
    double[] fused;
    try (Graph g = new Graph()) {
      Ops tf = Ops.create(g);
      var w = ResourceVariable.create(tf, "w", tf.withInitScope().dtypes.cast(tf.withInitScope().constant(w0), type));
      FisherTrainStep step = FisherTrainStep.builder(g).algorithm(optimizer, 0.1, o).variables(List.of(w))
          .loss((ops, in, v) -> quadratic(ops, v.get("w"), x))
          .jit(jit).build();
      try (Session s = new Session(g)) {
        s.initialize();
        for (int i = 0; i < 5; i++) {
          step.train(s, Map.of());
        }
        fused = OptimizerContractTest.values(s, tf, w.read(tf));
      }
    }
    try (Graph g = new Graph()) {
      Ops tf = Ops.create(g);
      Variable<? extends TType> w = tf.variable(tf.dtypes.cast(tf.constant(w0), type));
      FisherOptimizer opt = FisherOptimizer.create(optimizer, g, optimizer.displayName(), 0.1, o);
      Op train = opt.minimize(quadratic(tf, tf.identity(w), x), "train");
      try (Session s = new Session(g)) {
        s.initialize();
        for (int i = 0; i < 5; i++) {
          s.run(train);
        }
        double[] ref = OptimizerContractTest.values(s, tf, w);
        double tol = switch (dtype) {
          case "float64" -> 1e-12;
          case "float32" -> 1e-6;
          case "float16" -> Math.scalb(1.0, -9);
          default -> Math.scalb(1.0, -6);
        };
        for (int i = 0; i < ref.length; i++) {
          assertEquals(ref[i], fused[i], tol * Math.abs(ref[i]), "element " + i);
        }
      }
    }
  }

  /**
   * Tensors large enough for the XLA forms of the step's sums (rows along the last axis, slices
   * along the column axis, a rank-1 and a rank-3 tensor, a last axis with no divisor in [8, 32]):
   * the compiled step and the plain graph, whose sums are plain reductions, agree within float32
   * round-off after 5 steps, for every optimizer.
   */
  @ParameterizedTest(name = "{0}")
  @EnumSource(Algorithm.class)
  void largeTensorsAgreeWithAndWithoutXla(Algorithm optimizer) {
    List<Shape> shapes = List.of(Shape.of(256, 384), Shape.of(96, 200), Shape.of(40000),
        Shape.of(3, 64, 100), Shape.of(130, 129));
    double[][] xla = largeRun(optimizer, shapes, true);
    double[][] plain = largeRun(optimizer, shapes, false);
    for (int v = 0; v < shapes.size(); v++) {
      double max = 0;
      for (double p : plain[v]) {
        max = Math.max(max, Math.abs(p));
      }
      for (int i = 0; i < plain[v].length; i++) {
        assertEquals(plain[v][i], xla[v][i], 2e-6 * max, optimizer + " " + shapes.get(v) + " element " + i);
      }
    }
  }

  private static double[][] largeRun(Algorithm optimizer, List<Shape> shapes, boolean jit) {
    try (Graph g = new Graph()) {
      Ops tf = Ops.create(g);
      FisherTrainStep step = quarticStep(g, optimizer, shapes, jit);
      List<ResourceVariable<?>> vars = step.parameters();
      try (Session s = new Session(g)) {
        s.initialize();
        for (int i = 0; i < 5; i++) {
          step.train(s, Map.of());
        }
        double[][] out = new double[vars.size()][];
        for (int i = 0; i < vars.size(); i++) {
          out[i] = OptimizerContractTest.values(s, tf, vars.get(i).read(tf));
        }
        return out;
      }
    }
  }

  /**
   * A step over one uniform variable per shape, loss Σ(w − 0.3)⁴: a gradient that is not w
   * itself, spread over magnitudes.
   */
  private static FisherTrainStep quarticStep(Graph g, Algorithm optimizer, List<Shape> shapes, boolean jit) {
    Ops tf = Ops.create(g);
    List<ResourceVariable<?>> vars = new ArrayList<>();
    for (int i = 0; i < shapes.size(); i++) {
      Ops init = tf.withInitScope();
      var u = init.random.randomUniform(init.constant(shapes.get(i)), TFloat32.class,
          org.tensorflow.op.random.RandomUniform.seed(7L).seed2((long) i));
      vars.add(ResourceVariable.create(tf, "w" + i, u));
    }
    return FisherTrainStep.builder(g)
        .algorithm(optimizer, 0.01, FisherOptions.defaults()).variables(vars).loss((ops, in, v) -> {
          org.tensorflow.Operand<TFloat32> total = null;
          for (int i = 0; i < vars.size(); i++) {
            var w = v.float32(vars.get(i).name());
            int[] axes = java.util.stream.IntStream.range(0, shapes.get(i).numDimensions()).toArray();
            var dw = ops.math.square(ops.math.sub(w, ops.constant(0.3f)));
            var sum = ops.reduceSum(ops.math.square(dw), ops.constant(axes));
            total = total == null ? sum : ops.math.add(total, sum);
          }
          return total;
        }).jit(jit).build();
  }

  /**
   * Under XLA, Java's train runs the step over values and assigns the results (docs/design.md, "The
   * in-session XLA step"); the export's train function updates the variables through their handles.
   * The same graph, two sessions, five steps each: every variable, slot and counter comes out equal.
   * (The wrapper is the same for every algorithm; the two with the paper's own slots, full and
   * factored, are checked.)
   */
  @ParameterizedTest(name = "{0}")
  @EnumSource(value = Algorithm.class, names = {"FADAM", "FADAFACTOR"})
  void theStepOverValuesEqualsTheStepOverHandles(Algorithm optimizer) {
    List<Shape> shapes = List.of(Shape.of(64, 384), Shape.of(40000), Shape.of(130, 129));
    try (Graph g = new Graph()) {
      Ops tf = Ops.create(g);
      FisherTrainStep step = quarticStep(g, optimizer, shapes, true);
      String loss = step.trainSignature().getOutputs().get(FisherTrainStep.LOSS).name;
      var handles = g.operationOrThrow(loss.substring(0, loss.indexOf(':'))).output(0);
      assertTrue(!handles.equals(step.loss()), "train runs another function than the export's");
      List<double[]> byValues = new ArrayList<>();
      List<double[]> byHandles = new ArrayList<>();
      try (Session a = new Session(g); Session b = new Session(g)) {
        a.initialize();
        b.initialize();
        for (int k = 0; k < 5; k++) {
          step.train(a, Map.of());
          b.runner().fetch(handles).run().close();
        }
        for (ResourceVariable<?> v : step.variables()) {
          byValues.add(OptimizerContractTest.values(a, tf, tf.dtypes.cast(v.read(tf), org.tensorflow.types.TFloat64.class)));
          byHandles.add(OptimizerContractTest.values(b, tf, tf.dtypes.cast(v.read(tf), org.tensorflow.types.TFloat64.class)));
        }
      }
      for (int i = 0; i < byValues.size(); i++) {
        assertArrayEquals(byHandles.get(i), byValues.get(i), step.variables().get(i).name());
      }
    }
  }

  /** sum((w·x − 1)²) in float32, whatever w's dtype. */
  private static org.tensorflow.Operand<TFloat32> quadratic(Ops ops, org.tensorflow.Operand<?> w, float[][] x) {
    var w32 = ops.dtypes.cast(w, TFloat32.class);
    return ops.reduceSum(ops.math.square(ops.math.sub(ops.math.mul(w32, ops.constant(x)), ops.constant(1f))),
        ops.constant(new int[] {0, 1}));
  }

  /** A learning-rate schedule is evaluated inside the step from the step count. */
  @Test
  void aScheduleSetsTheLearningRateOfEachStep() {
    try (Graph g = new Graph()) {
      Ops tf = Ops.create(g);
      var w = ResourceVariable.create(tf, "w", tf.withInitScope().constant(new float[] {1f, 2f}));
      FisherTrainStep step = FisherTrainStep.builder(g).fadam(0.1, FisherOptions.defaults())
          .schedule((ops, iterations) -> ops.select(ops.math.less(iterations, ops.constant(2L)),
              ops.constant(0f), ops.constant(0.1f))) // warm-up: η = 0 for the first two steps
          .variables(List.of(w))
          .loss((ops, in, v) -> ops.reduceSum(ops.math.square(v.float32("w")), ops.constant(0)))
          .build();
      try (Session s = new Session(g)) {
        s.initialize();
        step.train(s, Map.of());
        step.train(s, Map.of());
        assertArrayEquals(new double[] {1, 2}, OptimizerContractTest.values(s, tf, w.read(tf)), 0.0);
        step.train(s, Map.of());
        double[] after = OptimizerContractTest.values(s, tf, w.read(tf));
        assertTrue(after[0] < 1 && after[1] < 2, java.util.Arrays.toString(after));
      }
    }
  }

  /** Export after 10 steps, resume in another JVM from the SavedModel alone: bit-identical. */
  @ParameterizedTest(name = "{0} jit={1}")
  @CsvSource({"FADAM,true", "FADAM,false", "FADAFACTOR,true", "ADAM,false"})
  void resumeInAnotherProcessIsBitIdentical(Algorithm optimizer, boolean jit, @TempDir Path tmp) throws Exception {
    Path dir = tmp.resolve("model");
    List<String> full = probe("run", optimizer.cliName(), Boolean.toString(jit), "20", "10", dir.toString());
    List<String> resumed = probe("resume", dir.toString(), "10", "10");
    assertEquals(20, full.size());
    assertEquals(full.subList(10, 20), resumed);
  }

  /** XLA really compiles the step: with XLA_FLAGS=--xla_dump_to the step's HLO module appears. */
  @Test
  void theCompiledStepIsInTheXlaDump(@TempDir Path tmp) throws Exception {
    for (boolean jit : new boolean[] {true, false}) {
      Path dump = tmp.resolve("dump-" + jit);
      probe(Map.of("XLA_FLAGS", "--xla_dump_to=" + dump), "run", "fadam", Boolean.toString(jit), "2", "0", tmp.resolve("unused").toString());
      List<Path> modules;
      try (var files = java.nio.file.Files.list(dump.toFile().exists() ? dump : tmp)) {
        modules = files.filter(f -> f.getFileName().toString().matches("module_\\d+\\.train_step_.*\\.cpu_after_optimizations\\.txt")).toList();
      }
      if (!jit) {
        assertTrue(modules.isEmpty(), "no XLA module without jit: " + modules);
        continue;
      }
      assertEquals(1, modules.size(), "one compiled module for the step: " + modules);
      String hlo = java.nio.file.Files.readString(modules.get(0));
      assertTrue(hlo.contains("HloModule") && hlo.contains("ROOT"), "an HLO module");
      // The optimizer is inside: the step's sqrt (f^ρ, ρ = 1/2) and expm1 (β̂2) are compiled with it.
      assertTrue(hlo.contains("sqrt") && hlo.contains("exponential-minus-one"), "the update is fused into the step");
    }
  }

  private static List<String> probe(String... args) throws IOException, InterruptedException {
    return probe(Map.of(), args);
  }

  private static List<String> probe(Map<String, String> env, String... args) throws IOException, InterruptedException {
    List<String> cmd = new ArrayList<>(List.of(
        ProcessHandle.current().info().command().orElse("java"), "-cp", classpath(), ResumeProbe.class.getName()));
    cmd.addAll(List.of(args));
    ProcessBuilder pb = new ProcessBuilder(cmd).redirectError(ProcessBuilder.Redirect.DISCARD);
    pb.environment().putAll(env);
    Process p = pb.start();
    String out = new String(p.getInputStream().readAllBytes());
    assertEquals(0, p.waitFor(), "probe " + String.join(" ", args) + " failed");
    return out.lines().toList();
  }

  /** This JVM's class path (under Surefire a manifest-only jar naming every entry). */
  static String classpath() {
    return System.getProperty("java.class.path");
  }

  @Test
  void everyOptimizerVariableIsInTheCheckpoint(@TempDir Path tmp) throws Exception {
    Path dir = tmp.resolve("model");
    ResumeProbe.run(Algorithm.FADAFACTOR, false, 3, 3, dir);
    try (SavedModelBundle b = SavedModelBundle.load(dir.toString(), SavedModelBundle.DEFAULT_TAG)) {
      Graph g = b.graph();
      Ops tf = Ops.create(g);
      for (String v : List.of("train_step/w-m", "train_step/w-fim_row", "train_step/w-fim_col", "train_step/w-step",
          "train_step/b-m", "train_step/b-fim", "train_step/b-step", "train_step/train_step-iterations",
          "train_step/train_step-skipped_steps", "w", "b")) {
        assertTrue(g.operation(v + "/handle") != null, v);
      }
      try (var r = b.session().runner()
          .fetch(tf.readVariableOp(g.operation("train_step/w-step/handle").output(0), TInt64.class))
          .fetch(tf.readVariableOp(g.operation("train_step/train_step-iterations/handle").output(0), TInt64.class))
          .run()) {
        assertEquals(3L, ((TInt64) r.get(0)).getLong(), "restored per-variable step");
        assertEquals(3L, ((TInt64) r.get(1)).getLong(), "restored iterations");
      }
      assertTrue(b.signatures().stream().map(Signature::key).toList().containsAll(List.of("train", "serve_default")));
    }
  }

  @Test
  void aCheckpointOfAnotherOptimizerIsAClearError(@TempDir Path tmp) throws Exception {
    Path dir = tmp.resolve("model");
    ResumeProbe.run(Algorithm.FADAM, false, 2, 2, dir);
    try (Graph g = new Graph()) {
      FisherTrainStep step = ResumeProbe.build(g, Algorithm.FADAFACTOR, false);
      try (Session s = new Session(g)) {
        s.initialize();
        var e = assertThrows(IllegalArgumentException.class, () -> step.restore(s, dir));
        assertTrue(e.getMessage().contains("does not match this train step"), e.getMessage());
        assertTrue(e.getMessage().contains("w-fim_"), e.getMessage());
      }
    }
  }

  @Test
  void aCheckpointWithAnotherShapeIsAClearError(@TempDir Path tmp) throws Exception {
    Path dir = tmp.resolve("model");
    for (int width : new int[] {3, 4}) {
      try (Graph g = new Graph()) {
        Ops tf = Ops.create(g);
        var w = ResourceVariable.create(tf, "w", tf.withInitScope().constant(new float[width]));
        FisherTrainStep step = FisherTrainStep.builder(g).fadam(0.1, FisherOptions.defaults())
            .variables(List.of(w))
            .loss((ops, in, v) -> ops.reduceSum(ops.math.square(ops.math.sub(v.float32("w"), ops.constant(1f))), ops.constant(0)))
            .jit(false).build();
        try (Session s = new Session(g)) {
          s.initialize();
          if (width == 3) {
            step.train(s, Map.of());
            step.export(s, dir);
          } else {
            var e = assertThrows(IllegalArgumentException.class, () -> step.restore(s, dir));
            assertTrue(e.getMessage().contains("does not match this train step"), e.getMessage());
            assertTrue(e.getMessage().contains("w"), e.getMessage());
          }
        }
      }
    }
  }

  @Test
  void aMissingCheckpointIsAClearError(@TempDir Path tmp) {
    try (Graph g = new Graph()) {
      FisherTrainStep step = ResumeProbe.build(g, Algorithm.FADAM, false);
      try (Session s = new Session(g)) {
        var e = assertThrows(IllegalArgumentException.class, () -> step.restore(s, tmp.resolve("nothing")));
        assertTrue(e.getMessage().startsWith("no checkpoint at "), e.getMessage());
      }
    }
  }

  @Test
  void anOpWithoutAnXlaKernelIsNamed() {
    try (Graph g = new Graph()) {
      Ops tf = Ops.create(g);
      var w = ResourceVariable.create(tf, "w", tf.withInitScope().constant(new float[] {1f, 2f}));
      FisherTrainStep step = FisherTrainStep.builder(g).fadam(0.1, FisherOptions.defaults())
          .variables(List.of(w))
          .loss((ops, in, v) -> {
            Op print = ops.print(ops.strings.stringFormat(List.of(ops.constant(1f))));
            return ops.withControlDependencies(print).reduceSum(ops.math.square(v.float32("w")), ops.constant(0));
          })
          .build();
      try (Session s = new Session(g)) {
        s.initialize();
        var e = assertThrows(IllegalStateException.class, () -> step.train(s, Map.of()));
        assertTrue(e.getMessage().matches("XLA cannot compile the train step: op (StringFormat|PrintV2) \\(node '.*'\\) has no XLA kernel on XLA_CPU_JIT; .*"), e.getMessage());
      }
    }
  }

  /** The drop-in (VariableV2) path exports with the framework exporter: slots and counters too. */
  @Test
  void refVariableModelsExportTheirSlotsAndCounters(@TempDir Path tmp) throws Exception {
    Path dir = tmp.resolve("model");
    double[] m;
    double[] uninterrupted;
    try (Graph g = new Graph()) {
      Ops tf = Ops.create(g);
      Placeholder<TFloat32> x = tf.withName("x").placeholder(TFloat32.class, Placeholder.shape(Shape.of(3)));
      Variable<TFloat32> w = tf.withName("w").variable(tf.constant(new float[] {0.5f, -1f, 2f}));
      var loss = tf.withName("loss").reduceSum(tf.math.square(tf.math.mul(tf.identity(w), x)), tf.constant(0));
      FAdam opt = new FAdam(g, 0.1f);
      Op train = opt.minimize(loss, "train");
      try (Session s = new Session(g); TFloat32 xt = TFloat32.vectorOf(1f, 2f, 3f)) {
        s.initialize();
        for (int i = 0; i < 3; i++) {
          s.runner().feed(x, xt).addTarget(train).run().close();
        }
        m = OptimizerContractTest.values(s, tf, opt.getSlot(w.asOutput(), FisherOptimizer.FIRST_MOMENT).orElseThrow());
        SavedModelBundle.exporter(dir.toString()).withSession(s)
            .withSignature(Signature.builder().key("loss").input("x", x).output("loss", loss).build()).export();
        for (int i = 0; i < 3; i++) {
          s.runner().feed(x, xt).addTarget(train).run().close();
        }
        uninterrupted = OptimizerContractTest.values(s, tf, w);
      }
    }
    try (SavedModelBundle b = SavedModelBundle.load(dir.toString(), SavedModelBundle.DEFAULT_TAG)) {
      Ops tf = Ops.create(b.graph());
      double[] restored = OptimizerContractTest.values(b.session(), tf, b.graph().operation("w-m").output(0));
      assertEquals(m.length, restored.length);
      for (int i = 0; i < m.length; i++) {
        assertEquals(m[i], restored[i], 0.0);
      }
      assertEquals(3L, OptimizerContractTest.longOf(b.session(), b.graph().operation("w-step").output(0)));
      assertFalse(OptimizerContractTest.values(b.session(), tf, b.graph().operation("w-fim").output(0))[0] == 1.0);
      // Resume: the loaded graph still has the "train" op; 3 more steps equal the uninterrupted run.
      try (TFloat32 xt = TFloat32.vectorOf(1f, 2f, 3f)) {
        for (int i = 0; i < 3; i++) {
          b.session().runner().feed("x", xt).addTarget("train").run().close();
        }
      }
      double[] resumed = OptimizerContractTest.values(b.session(), tf, b.graph().operation("w").output(0));
      for (int i = 0; i < resumed.length; i++) {
        assertEquals(uninterrupted[i], resumed[i], 0.0, "bit-identical resume, element " + i);
      }
    }
  }
}
