package org.fadam;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import javax.tools.DiagnosticCollector;
import javax.tools.JavaCompiler;
import javax.tools.JavaFileObject;
import javax.tools.StandardJavaFileManager;
import javax.tools.ToolProvider;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.tensorflow.Graph;
import org.tensorflow.Result;
import org.tensorflow.SavedModelBundle;
import org.tensorflow.Session;
import org.tensorflow.framework.optimizers.Optimizer;
import org.tensorflow.ndarray.Shape;
import org.tensorflow.ndarray.buffer.DataBuffers;
import org.tensorflow.op.Op;
import org.tensorflow.op.Ops;
import org.tensorflow.op.core.Variable;
import org.tensorflow.types.TFloat32;
import org.tensorflow.types.TInt64;

/**
 * The Java examples of README.md and docs/*.md, compiled and run. Each {@code // doc FILE#name} …
 * {@code // doc end} region of this file is, character for character (less its indentation), the
 * code of a {@code java} block of FILE below its {@code import} lines; those imports are exactly
 * what the block needs (each example is compiled on its own, with only the imports it shows). Every
 * {@code java} block of README.md and docs/*.md is one of these regions, or is listed in {@link
 * #EXEMPT} with the reason it cannot run here. The docs' relative links, the README's length and
 * the headings of docs/design.md (which the code cites) are checked here too.
 */
class ReadmeExamplesTest {

  @Test
  void dropInSwapTrains() {
    try (Graph graph = new Graph(); Session session = new Session(graph)) {
      Ops tf = Ops.create(graph);
      Variable<TFloat32> w = tf.variable(tf.zeros(tf.constant(new int[] {4}), TFloat32.class));
      var loss = tf.reduceSum(tf.math.square(tf.math.sub(tf.identity(w), tf.constant(1f))),
          tf.constant(0));
      // doc README.md#drop-in
      Optimizer optimizer = new FAdam(graph, 0.001f);    // was: new Adam(graph, 0.001f)
      Op train = optimizer.minimize(loss, "train");      // unchanged
      // doc end
      session.initialize();
      float previous = lossOf(session, loss);
      assertEquals(4f, previous);
      for (int k = 0; k < 20; k++) {
        session.run(train);
        float now = lossOf(session, loss);
        assertTrue(now < previous, "step " + k + ": " + now + " after " + previous);
        previous = now;
      }
    }
  }

  private static float lossOf(Session s, org.tensorflow.Operand<TFloat32> loss) {
    try (var r = s.runner().fetch(loss).run()) {
      return ((TFloat32) r.get(0)).getFloat();
    }
  }

  @Test
  void fusedStepTrainsExportsAndResumes(@TempDir Path tmp) throws IOException {
    Path model = tmp.resolve("model");
    int batch = 64;
    float[] xs = new float[batch * 4];
    float[] ys = new float[batch * 3];
    Random rnd = new Random(3);
    for (int i = 0; i < batch; i++) {
      int c = rnd.nextInt(3);
      ys[i * 3 + c] = 1;
      for (int j = 0; j < 4; j++) {
        xs[i * 4 + j] = (float) (rnd.nextGaussian() + (j == c ? 2 : 0));
      }
    }
    float resumed;
    try (Graph graph = new Graph();
        TFloat32 x = TFloat32.tensorOf(Shape.of(batch, 4), DataBuffers.of(xs, true, false));
        TFloat32 y = TFloat32.tensorOf(Shape.of(batch, 3), DataBuffers.of(ys, true, false))) {
      List<Float> losses = new ArrayList<>();
      // doc README.md#fused-step
      Ops tf = Ops.create(graph);
      var w = ResourceVariable.create(tf, "w", tf.withInitScope().constant(new float[4][3]));
      FisherTrainStep step = FisherTrainStep.builder(graph)
          .fadam(0.01, FisherOptions.defaults())            // or .fadafactor(...), .adam(...)
          .input("x", TFloat32.class, Shape.of(-1, 4))     // features
          .input("y", TFloat32.class, Shape.of(-1, 3))     // one-hot labels
          .variables(List.of(w))
          .loss((ops, in, v) -> ops.math.mean(ops.nn.softmaxCrossEntropyWithLogits(
              ops.linalg.matMul(in.float32("x"), v.float32("w")), in.float32("y")).loss(),
              ops.constant(0)))
          .predictions((ops, in, v) -> ops.nn.softmax(
              ops.linalg.matMul(in.float32("x"), v.get("w", TFloat32.class))), "x")
          .build();                                         // .jit(false) to compare without XLA
      try (Session s = new Session(graph)) {
        s.initialize();
        for (int k = 0; k < 100; k++) {
          losses.add(step.train(s, Map.of("x", x, "y", y)).loss());
        }
        step.export(s, model);                  // SavedModel: "train" and "serve_default"
      }
      // Later, in any JVM (or Python TensorFlow): continue training from the SavedModel alone.
      try (SavedModelBundle m = FisherTrainStep.loadSavedModel(model);
          Result r = m.function("train").call(Map.of("x", x, "y", y))) {  // {"loss", "step"}
        resumed = ((TFloat32) r.get("loss").orElseThrow()).getFloat();
      }
      // doc end
      assertEquals((float) Math.log(3), losses.get(0), 1e-6f); // zero weights: uniform over 3
      assertTrue(losses.get(99) < 0.5f * losses.get(0), "the loss falls: " + losses);
      assertTrue(resumed < losses.get(99), "the SavedModel continues: " + resumed);
    }
  }

  /** A job killed after step 5 restarts from its step-4 checkpoint and goes on to step 10. */
  @Test
  void checkpointsResumeARestartedJob(@TempDir Path dir) throws IOException {
    Map<String, TFloat32> batch = org.fadam.tools.ResumeProbe.batch(0);
    TFloat32 x = batch.get("x");
    TFloat32 y = batch.get("y");
    List<Long> starts = new ArrayList<>();
    for (int steps : new int[] {5, 10}) { // the first job stops (is killed) after 5 steps
      try (Graph graph = new Graph()) {
        FisherTrainStep step = org.fadam.tools.ResumeProbe.build(graph, Algorithm.FADAM, false);
        try (Session s = new Session(graph)) {
          s.initialize();
          // doc docs/scaling-out.md#checkpoints
          CheckpointManager checkpoints = step.checkpoints(dir, 3);  // dir/ckpt-<step>/, newest 3 kept
          long start = checkpoints.restoreLatest(s).orElse(0);       // a restarted job continues here
          for (long k = start; k < steps; k++) {
            step.train(s, Map.of("x", x, "y", y));
            if ((k + 1) % 2 == 0) {
              checkpoints.save(s);                                   // written beside, then renamed
            }
          }
          // doc end
          starts.add(start);
        }
      }
    }
    batch.values().forEach(TFloat32::close);
    assertEquals(List.of(0L, 4L), starts);
    try (var names = Files.list(dir)) {
      assertEquals(List.of("ckpt-10", "ckpt-6", "ckpt-8"),
          names.map(p -> p.getFileName().toString()).sorted().toList());
    }
  }

  /** docs/training.md: a schedule, the usual mask, accumulation and a run-time scale, from one builder. */
  @Test
  void trainingFeaturesWorkAsShown() {
    Map<String, TFloat32> batch = org.fadam.tools.ResumeProbe.classBatch(1, 16, 4, 3);
    TFloat32 x = batch.get("x");
    TFloat32 y = batch.get("y");
    try (Graph graph = new Graph()) {
      Ops tf = Ops.create(graph);
      var w = ResourceVariable.create(tf, "w", tf.withInitScope().constant(new float[4][3]));
      var b = ResourceVariable.create(tf, "b", tf.withInitScope().constant(new float[3]));
      List<Boolean> applied = new ArrayList<>();
      try (Session s = new Session(graph)) {
        // doc docs/training.md#training
        FisherTrainStep step = FisherTrainStep.builder(graph)
            .fadam(3e-3, FisherOptions.builder().weightDecay(0.1).build())
            .schedule(Schedules.warmupCosine(3e-3, 100, 10_000, 0.1))  // peak, warmup, total, end/peak
            .weightDecayMask(WeightDecayMasks.matrices())             // no decay on b
            .accumulate(4)                                            // 4 calls per optimizer step
            .input("x", TFloat32.class, Shape.of(-1, 4))
            .input("y", TFloat32.class, Shape.of(-1, 3))
            .variables(List.of(w, b))
            .loss((ops, in, v) -> ops.math.mean(ops.nn.softmaxCrossEntropyWithLogits(
                ops.math.add(ops.linalg.matMul(in.float32("x"), v.float32("w")), v.float32("b")),
                in.float32("y")).loss(), ops.constant(0)))
            .build();
        s.initialize();
        for (int k = 0; k < 8; k++) {
          applied.add(step.train(s, Map.of("x", x, "y", y)).applied());  // every 4th call steps
        }
        step.setLearningRateScale(s, 0.5);  // hparams/learning_rate_scale: η_t × 0.5 from now on
        // doc end
        assertEquals(List.of(false, false, false, true, false, false, false, true), applied);
        try (TInt64 it = (TInt64) s.runner().fetch(step.iterations().read(tf)).run().get(0)) {
          assertEquals(2, it.getLong());
        }
      }
    }
    batch.values().forEach(TFloat32::close);
  }

  /** docs/training.md: a drop-in optimizer with a schedule counts its own steps (η_0 = 0: no move). */
  @Test
  void aDropInTakesASchedule() {
    try (Graph graph = new Graph(); Session session = new Session(graph)) {
      Ops tf = Ops.create(graph);
      Variable<TFloat32> w = tf.variable(tf.zeros(tf.constant(new int[] {4}), TFloat32.class));
      var loss = tf.reduceSum(tf.math.square(tf.math.sub(tf.identity(w), tf.constant(1f))),
          tf.constant(0));
      // doc docs/training.md#schedule-drop-in
      FAdam optimizer = new FAdam(graph, "FAdam", Schedules.warmupCosine(1e-3, 100, 10_000, 0.1),
          FisherOptions.defaults());
      Op train = optimizer.minimize(loss, "train");  // η_t at FAdam-iterations, +1 per run
      // doc end
      session.initialize();
      session.run(train);
      assertEquals(4f, lossOf(session, loss), "η_0 = 0: the first step leaves w as it was");
      session.run(train);
      assertTrue(lossOf(session, loss) < 4f, "η_1 = 1e-5 moves it");
      try (TInt64 n = (TInt64) session.runner().fetch(optimizer.iterations().orElseThrow()).run().get(0)) {
        assertEquals(2, n.getLong());
      }
    }
  }

  /** docs/fisher.md: EWC with the optimizer's own Fisher after task A, in task B's loss. */
  @Test
  void ewcWorksAsShown() {
    Map<String, TFloat32> batch = org.fadam.tools.ResumeProbe.classBatch(1, 16, 4, 3);
    TFloat32 x = batch.get("x");
    TFloat32 y = batch.get("y");
    List<Float> losses = new ArrayList<>();
    try (Graph graphA = new Graph(); Session a = new Session(graphA);
        Graph graphB = new Graph(); Session s = new Session(graphB)) {
      Ops tfA = Ops.create(graphA);
      var wA = ResourceVariable.create(tfA, "w", tfA.withInitScope().constant(new float[4][3]));
      var bA = ResourceVariable.create(tfA, "b", tfA.withInitScope().constant(new float[3]));
      FisherTrainStep stepA = FisherTrainStep.builder(graphA).fadam(3e-3, FisherOptions.defaults())
          .input("x", TFloat32.class, Shape.of(-1, 4)).input("y", TFloat32.class, Shape.of(-1, 3))
          .variables(List.of(wA, bA))
          .loss((ops, in, v) -> ops.math.mean(ops.nn.softmaxCrossEntropyWithLogits(
              ops.math.add(ops.linalg.matMul(in.float32("x"), v.float32("w")), v.float32("b")),
              in.float32("y")).loss(), ops.constant(0)))
          .build();
      a.initialize();
      float lossA = 0;
      for (int k = 0; k < 3; k++) {
        stepA.train(a, Map.of("x", x, "y", y));
      }
      try (var r = a.runner().feed(stepA.input("x"), x).feed(stepA.input("y"), y).fetch(stepA.evalLoss()).run()) {
        lossA = ((TFloat32) r.get(0)).getFloat();
      }
      Ops tf = Ops.create(graphB);
      // doc docs/fisher.md#ewc
      try (Ewc.Snapshot taskA = Ewc.snapshot(a, stepA)) {  // θ* and F = stepA.fisher(p), copied now
        var w = ResourceVariable.create(tf, "w", tf.withInitScope().constantOf((TFloat32) taskA.anchor("w")));
        var b = ResourceVariable.create(tf, "b", tf.withInitScope().constantOf((TFloat32) taskA.anchor("b")));
        FisherTrainStep stepB = FisherTrainStep.builder(graphB)
            .fadam(3e-3, FisherOptions.defaults())
            .input("x", TFloat32.class, Shape.of(-1, 4))
            .input("y", TFloat32.class, Shape.of(-1, 3))
            .variables(List.of(w, b))
            .loss((ops, in, v) -> ops.math.add(
                ops.math.mean(ops.nn.softmaxCrossEntropyWithLogits(   // task B's own loss
                    ops.math.add(ops.linalg.matMul(in.float32("x"), v.float32("w")), v.float32("b")),
                    in.float32("y")).loss(), ops.constant(0)),
                taskA.penalty(ops, v, 1e3, TFloat32.class)))           // + λ/2 Σ F (θ − θ*)²
            .build();
        s.initialize();
        losses.add(stepB.train(s, Map.of("x", x, "y", y)).loss());  // at θ = θ*: no penalty yet
      }
      // doc end
      assertEquals(lossA, losses.get(0), 1e-6f, "B starts at θ*, where the penalty is 0");
    }
    batch.values().forEach(TFloat32::close);
  }

  /** docs/telemetry.md: every 10th step's loss and telemetry land in the run's event file. */
  @Test
  void summariesWriteEveryTenthStep(@TempDir Path dir) throws IOException {
    Map<String, TFloat32> batch = org.fadam.tools.ResumeProbe.batch(0);
    TFloat32 x = batch.get("x");
    TFloat32 y = batch.get("y");
    int steps = 20;
    try (Graph graph = new Graph()) {
      FisherTrainStep step = org.fadam.tools.ResumeProbe.build(graph, Algorithm.FADAM, false);
      try (Session s = new Session(graph)) {
        s.initialize();
        // doc docs/telemetry.md#tensorboard
        try (Summaries board = Summaries.open(dir.resolve("fadam"), 10)) {  // one run per folder
          for (int k = 0; k < steps; k++) {
            board.write(step.train(s, Map.of("x", x, "y", y)));  // loss, telemetry at steps 10, 20
          }
        }
        // doc end
      }
    }
    batch.values().forEach(TFloat32::close);
    var read = org.fadam.demo.TelemetryPlot.read(dir.resolve("fadam"));
    assertEquals(new java.util.TreeSet<>(Summaries.TAGS), read.keySet());
    for (String tag : Summaries.TAGS) {
      assertEquals(List.of(10L, 20L), List.copyOf(read.get(tag).keySet()), tag);
    }
  }

  // --- the docs show exactly these regions -----------------------------------------------------

  private static final Pattern JAVA_BLOCK = Pattern.compile("(?s)```java\\n(.*?)```");
  private static final String REGION = "// doc ";
  private static final String REGION_END = "// doc end";

  /** An example: the document that shows it, its name, and its code without indentation. */
  record Region(String document, String name, String code) {}

  /** A java block shown without running it here, and why. {@code firstLine}: its code's first line. */
  record Exempt(String document, String firstLine, String reason) {}

  /** Java blocks of the docs that no region covers, each with its reason. None today. */
  static final List<Exempt> EXEMPT = List.of();

  /**
   * The variables each example takes from the code around it, as the parameters of the method it
   * is compiled in (fully qualified, so that only the example's own imports resolve its names).
   */
  static final Map<String, String> CONTEXT = Map.of(
      "drop-in", "org.tensorflow.Graph graph, org.tensorflow.Operand<org.tensorflow.types.TFloat32> loss",
      "fused-step", "org.tensorflow.Graph graph, org.tensorflow.types.TFloat32 x,"
          + " org.tensorflow.types.TFloat32 y, java.util.List<Float> losses, java.nio.file.Path model,"
          + " float resumed",
      "checkpoints", "org.fadam.FisherTrainStep step, org.tensorflow.Session s, java.nio.file.Path dir,"
          + " org.tensorflow.types.TFloat32 x, org.tensorflow.types.TFloat32 y, int steps",
      "training", "org.tensorflow.Graph graph, org.tensorflow.Session s,"
          + " org.fadam.ResourceVariable<org.tensorflow.types.TFloat32> w,"
          + " org.fadam.ResourceVariable<org.tensorflow.types.TFloat32> b,"
          + " org.tensorflow.types.TFloat32 x, org.tensorflow.types.TFloat32 y, java.util.List<Boolean> applied",
      "schedule-drop-in", "org.tensorflow.Graph graph, org.tensorflow.Operand<org.tensorflow.types.TFloat32> loss",
      "ewc", "org.tensorflow.Session a, org.fadam.FisherTrainStep stepA, org.tensorflow.Graph graphB,"
          + " org.tensorflow.Session s, org.tensorflow.op.Ops tf, org.tensorflow.types.TFloat32 x,"
          + " org.tensorflow.types.TFloat32 y, java.util.List<Float> losses",
      "tensorboard", "org.fadam.FisherTrainStep step, org.tensorflow.Session s, java.nio.file.Path dir,"
          + " org.tensorflow.types.TFloat32 x, org.tensorflow.types.TFloat32 y, int steps");

  /** Every {@code // doc FILE#name} … {@code // doc end} region of this source file, by name. */
  static Map<String, Region> regions() throws IOException {
    Path source = Path.of("src/test/java/org/fadam/ReadmeExamplesTest.java");
    Assumptions.assumeTrue(Files.exists(source), "run from fadam-tf-tests/");
    Map<String, Region> regions = new LinkedHashMap<>();
    String name = null;
    String document = null;
    List<String> lines = new ArrayList<>();
    for (String line : Files.readAllLines(source)) {
      String t = line.strip();
      if (t.equals(REGION_END)) {
        int indent = lines.stream().filter(l -> !l.isBlank())
            .mapToInt(l -> l.length() - l.stripLeading().length()).min().orElse(0);
        StringBuilder text = new StringBuilder();
        lines.forEach(l -> text.append(l.isBlank() ? "" : l.substring(indent)).append('\n'));
        regions.put(name, new Region(document, name, text.toString()));
        name = null;
      } else if (t.startsWith(REGION) && t.contains("#")) {
        String ref = t.substring(REGION.length());
        document = ref.substring(0, ref.indexOf('#'));
        name = ref.substring(ref.indexOf('#') + 1);
        lines.clear();
      } else if (name != null) {
        lines.add(line);
      }
    }
    return regions;
  }

  /** A java block of a document: its import lines, and the code below them. */
  record Block(List<String> imports, String code) {

    static Block parse(String text) {
      List<String> imports = new ArrayList<>();
      String[] lines = text.split("\n", -1);
      int i = 0;
      while (i < lines.length && lines[i].startsWith("import ")) {
        imports.add(lines[i++]);
      }
      if (!imports.isEmpty() && i < lines.length && lines[i].isBlank()) {
        i++; // the blank line between the imports and the code
      }
      return new Block(imports, String.join("\n", List.of(lines).subList(i, lines.length)));
    }

    /** The first line of the code (below the imports): what {@link Exempt} names. */
    String firstLine() {
      return code.lines().findFirst().orElse("");
    }
  }

  /** README.md and every docs/*.md, by their path from the repository root. */
  static Map<String, String> documents() throws IOException {
    Path root = Path.of("..");
    Assumptions.assumeTrue(Files.exists(root.resolve("README.md")), "run from fadam-tf-tests/");
    Map<String, String> docs = new LinkedHashMap<>();
    docs.put("README.md", Files.readString(root.resolve("README.md")));
    try (Stream<Path> pages = Files.list(root.resolve("docs"))) {
      for (Path page : pages.filter(p -> p.toString().endsWith(".md")).sorted().toList()) {
        docs.put("docs/" + page.getFileName(), Files.readString(page));
      }
    }
    return docs;
  }

  static List<Block> javaBlocks(String markdown) {
    List<Block> blocks = new ArrayList<>();
    Matcher m = JAVA_BLOCK.matcher(markdown);
    while (m.find()) {
      blocks.add(Block.parse(m.group(1)));
    }
    return blocks;
  }

  /**
   * What is wrong with the docs' java blocks against the regions and the exemptions: a block that is
   * neither a region of its document nor exempt (with a reason), a region its document does not
   * show, the wrong order, an exemption that matches no block. Empty when all is well.
   */
  static List<String> coverage(
      Map<String, String> documents, List<Region> regions, List<Exempt> exempt) {
    List<String> problems = new ArrayList<>();
    for (Exempt e : exempt) {
      if (e.reason() == null || e.reason().isBlank()) {
        problems.add(e.document() + ": the exemption of `" + e.firstLine() + "` gives no reason");
      }
      String doc = documents.get(e.document());
      if (doc == null || javaBlocks(doc).stream().noneMatch(b -> b.firstLine().equals(e.firstLine()))) {
        problems.add(e.document() + ": no java block starts with `" + e.firstLine()
            + "`, which EXEMPT lists: remove the exemption");
      }
    }
    for (Region r : regions) {
      if (!documents.containsKey(r.document())) {
        problems.add("region " + r.name() + " names " + r.document() + ", which does not exist");
      }
    }
    documents.forEach((document, text) -> {
      List<String> shown = new ArrayList<>();
      for (Block b : javaBlocks(text)) {
        boolean exempted = exempt.stream().anyMatch(
            e -> e.document().equals(document) && e.firstLine().equals(b.firstLine()));
        if (!exempted) {
          shown.add(b.code());
        }
      }
      List<String> expected = regions.stream().filter(r -> r.document().equals(document))
          .map(Region::code).toList();
      for (String code : shown) {
        if (!expected.contains(code)) {
          problems.add(document + ": the java block `" + Block.parse(code).firstLine()
              + "` is not covered: make it a // doc " + document + "#name … // doc end region of"
              + " ReadmeExamplesTest that runs it (or copy the region over), or list it in EXEMPT"
              + " with the reason");
        }
      }
      for (Region r : regions) {
        if (r.document().equals(document) && !shown.contains(r.code())) {
          problems.add(document + " does not show region " + r.name() + " as it is here: copy it over");
        }
      }
      if (problems.isEmpty() && !shown.equals(expected)) {
        problems.add(document + " shows its examples in another order than ReadmeExamplesTest");
      }
    });
    return problems;
  }

  /**
   * "Use it in your project" shows the dependency block of the consumer project that the build
   * compiles and tests against the installed artifact (fadam-tf/src/it/consumer), at this version.
   */
  @Test
  void theReadmeDependencyBlockIsTheConsumerProjects() throws IOException {
    String version = System.getProperty("fadam.version");
    Assumptions.assumeTrue(version != null, "run by Maven (which passes the POM's version)");
    Path consumer = Path.of("..", "fadam-tf", "src", "it", "consumer", "pom.xml");
    Assumptions.assumeTrue(Files.exists(consumer), "run from fadam-tf-tests/");
    Matcher dep = Pattern.compile("(?s)\\n( *)(<dependency>\\s*<groupId>org\\.fadam</groupId>.*?</dependency>)")
        .matcher(Files.readString(consumer));
    assertTrue(dep.find(), "no fadam-tf dependency in " + consumer);
    String block = dep.group(2).replace("\n" + dep.group(1), "\n")
        .replace("@project.version@", version);
    String readme = Files.readString(Path.of("..", "README.md"));
    int section = readme.indexOf("## Use it in your project");
    assertTrue(section >= 0, "README.md has no \"Use it in your project\"");
    Matcher xml = Pattern.compile("(?s)```xml\\n(.*?)```").matcher(readme);
    assertTrue(xml.find(section), "no xml block in \"Use it in your project\"");
    assertEquals(block + "\n", xml.group(1));
  }

  @Test
  void theDocsShowTheseExamplesAndNoOthers() throws IOException {
    Map<String, Region> regions = regions();
    assertEquals(List.of("drop-in", "fused-step", "checkpoints", "training", "schedule-drop-in", "ewc",
        "tensorboard"),
        List.copyOf(regions.keySet()));
    assertEquals(regions.keySet(), CONTEXT.keySet(), "every region needs its CONTEXT");
    Map<String, String> documents = documents();
    assertEquals(List.of(), coverage(documents, List.copyOf(regions.values()), EXEMPT));
    for (var doc : documents.entrySet()) {
      List<String> blocks = javaBlocks(doc.getValue()).stream()
          .filter(b -> EXEMPT.stream().noneMatch(
              e -> e.document().equals(doc.getKey()) && e.firstLine().equals(b.firstLine())))
          .map(Block::code).toList();
      List<String> expected = regions.values().stream()
          .filter(r -> r.document().equals(doc.getKey())).map(Region::code).toList();
      assertEquals(expected, blocks,
          doc.getKey() + "'s java blocks differ from ReadmeExamplesTest's regions; copy them over");
    }
  }

  /** The check above fails on a block that is neither covered nor exempt, and on a bare exemption. */
  @Test
  void anUncoveredJavaBlockFails() {
    String covered = "```java\nimport java.util.List;\n\nint a = 1;\n```\n";
    String other = "```java\nint b = 2;\n```\n";
    List<Region> regions = List.of(new Region("docs/x.md", "a", "int a = 1;\n"));
    assertEquals(List.of(), coverage(Map.of("docs/x.md", covered), regions, List.of()));
    List<String> problems = coverage(Map.of("docs/x.md", covered + other), regions, List.of());
    assertEquals(1, problems.size(), problems.toString());
    assertTrue(problems.get(0).contains("`int b = 2;` is not covered"), problems.get(0));
    assertEquals(List.of(), coverage(Map.of("docs/x.md", covered + other), regions,
        List.of(new Exempt("docs/x.md", "int b = 2;", "shows a fragment of a larger program"))));
    assertEquals(1, coverage(Map.of("docs/x.md", covered + other), regions,
        List.of(new Exempt("docs/x.md", "int b = 2;", " "))).size());
    assertEquals(1, coverage(Map.of("docs/x.md", covered), regions,
        List.of(new Exempt("docs/x.md", "int b = 2;", "gone"))).size());
    assertEquals(2, coverage(Map.of("docs/x.md", other), regions, List.of()).size()); // and a is missing
  }

  /**
   * Each example compiles on its own with exactly the imports its block shows (in the default
   * package, so that org.fadam's classes resolve only through those imports), and every import it
   * shows is used.
   */
  @Test
  void everyExampleCompilesWithTheImportsItShows(@TempDir Path tmp) throws IOException {
    Map<String, String> documents = documents();
    JavaCompiler javac = ToolProvider.getSystemJavaCompiler();
    assertNotNull(javac, "the tests run on a JDK");
    List<Path> sources = new ArrayList<>();
    for (Region r : regions().values()) {
      Block block = javaBlocks(documents.get(r.document())).stream()
          .filter(b -> b.code().equals(r.code())).findFirst()
          .orElseThrow(() -> new AssertionError(r.document() + " does not show " + r.name()));
      for (String imp : block.imports()) {
        String simple = imp.substring(imp.lastIndexOf('.') + 1, imp.indexOf(';'));
        assertTrue(Pattern.compile("\\b" + Pattern.quote(simple) + "\\b").matcher(r.code()).find(),
            r.document() + "#" + r.name() + " imports " + simple + " but does not use it");
      }
      String cls = "Example_" + r.name().replaceAll("[^A-Za-z0-9]", "_");
      StringBuilder src = new StringBuilder();
      block.imports().forEach(i -> src.append(i).append('\n'));
      src.append("\nclass ").append(cls).append(" {\n  static void run(").append(CONTEXT.get(r.name()))
          .append(") throws Exception {\n").append(r.code()).append("  }\n}\n");
      Path file = tmp.resolve(cls + ".java");
      Files.writeString(file, src);
      sources.add(file);
    }
    DiagnosticCollector<JavaFileObject> diagnostics = new DiagnosticCollector<>();
    try (StandardJavaFileManager files = javac.getStandardFileManager(diagnostics, Locale.ROOT, null)) {
      boolean ok = javac.getTask(null, files, diagnostics,
          List.of("-classpath", System.getProperty("java.class.path"), "-d", tmp.toString(),
              "-proc:none", "-Xlint:none"),
          null, files.getJavaFileObjectsFromPaths(sources)).call();
      assertTrue(ok, "the examples do not compile with the imports they show:\n"
          + String.join("\n", diagnostics.getDiagnostics().stream()
              .map(d -> d.getSource().getName() + ":" + d.getLineNumber() + ": " + d.getMessage(Locale.ROOT))
              .toList()));
    }
  }

  // --- links, length, and the design of record ----------------------------------------------------

  private static final Pattern FENCE = Pattern.compile("(?ms)^```.*?^```");
  private static final Pattern CODE_SPAN = Pattern.compile("`[^`\\n]*`");
  private static final Pattern LINK = Pattern.compile("\\[[^\\]]*\\]\\(([^)\\s]+)(?:\\s+\"[^\"]*\")?\\)");
  private static final Pattern HEADING = Pattern.compile("(?m)^(#{1,6})\\s+(.*?)\\s*$");

  /** GitHub's anchors of a Markdown document's headings (outside code blocks). */
  static Set<String> anchors(String markdown) {
    Set<String> anchors = new LinkedHashSet<>();
    Map<String, Integer> seen = new HashMap<>();
    Matcher m = HEADING.matcher(FENCE.matcher(markdown).replaceAll(""));
    while (m.find()) {
      String slug = m.group(2).toLowerCase(Locale.ROOT)
          .replaceAll("[^\\p{L}\\p{N} _-]", "").replace(' ', '-');
      int n = seen.merge(slug, 1, Integer::sum);
      anchors.add(n == 1 ? slug : slug + "-" + (n - 1));
    }
    return anchors;
  }

  /** Every relative link and image of README.md and docs/*.md names a file that exists. */
  @Test
  void everyRelativeLinkResolves() throws IOException {
    Path root = Path.of("..");
    List<String> broken = new ArrayList<>();
    for (var doc : documents().entrySet()) {
      Path dir = root.resolve(doc.getKey()).getParent();
      String prose = CODE_SPAN.matcher(FENCE.matcher(doc.getValue()).replaceAll("")).replaceAll("");
      Matcher m = LINK.matcher(prose);
      while (m.find()) {
        String target = m.group(1);
        if (target.matches("^[a-zA-Z][a-zA-Z0-9+.-]*:.*")) {
          continue; // https:, mailto:
        }
        int hash = target.indexOf('#');
        String path = hash < 0 ? target : target.substring(0, hash);
        Path file = path.isEmpty() ? root.resolve(doc.getKey()) : dir.resolve(path).normalize();
        if (!Files.exists(file)) {
          broken.add(doc.getKey() + ": " + target + " (no " + file + ")");
        } else if (hash >= 0 && file.toString().endsWith(".md")
            && !anchors(Files.readString(file)).contains(target.substring(hash + 1))) {
          broken.add(doc.getKey() + ": " + target + " (no such heading in " + file + ")");
        }
      }
    }
    assertEquals(List.of(), broken);
  }

  /** The README keeps to what a newcomer needs; the detail lives in docs/. */
  @Test
  void theReadmeIsShort() throws IOException {
    long lines = Files.readAllLines(Path.of("..", "README.md")).size();
    assertTrue(lines <= 200, "README.md has " + lines + " lines; move detail into docs/ (at most 200)");
  }

  /** The {@code ##} headings of docs/design.md, in order: the code cites them by name. */
  static final List<String> DESIGN_SECTIONS = List.of(
      "Scope and users",
      "Numerical conventions",
      "TF Java 1.1.0 facts",
      "XLA CPU performance facts",
      "Python, tf.distribute and TPU facts",
      "Structure",
      "House style");

  /** A citation of a heading of docs/design.md; {@code "<heading>"} is the placeholder of the form. */
  private static final Pattern CITATION =
      Pattern.compile("docs/design\\.md,[\\s*/#]*\"([^\"<\\n][^\"\\n]*)\"");

  /**
   * docs/design.md has its sections in order, and every citation of one of its headings (the file
   * name, a comma, the heading in double quotes) in the sources, scripts and docs names one of its
   * {@code ##} or {@code ###} headings, and nothing cites the old DESIGN file (which a clone does
   * not have) any more.
   */
  @Test
  void everyCitationOfTheDesignNamesItsHeading() throws IOException {
    Path root = Path.of("..");
    String design = Files.readString(root.resolve("docs/design.md"));
    List<String> sections = new ArrayList<>();
    Set<String> headings = new LinkedHashSet<>();
    Matcher h = HEADING.matcher(FENCE.matcher(design).replaceAll(""));
    while (h.find()) {
      if (h.group(1).length() == 2) {
        sections.add(h.group(2));
      }
      if (h.group(1).length() <= 3) {
        headings.add(h.group(2));
      }
    }
    assertEquals(DESIGN_SECTIONS, sections, "docs/design.md's ## headings");
    List<String> wrong = new ArrayList<>();
    String oldName = "DESIGN" + ".md";
    for (String top : List.of("fadam-tf", "fadam-tf-tests/src", "scripts", "tpu-configs", "docs", "README.md")) {
      List<Path> files;
      try (Stream<Path> walk = Files.walk(root.resolve(top))) {
        files = walk.filter(Files::isRegularFile)
            .filter(f -> !f.toString().contains("/target/"))
            .filter(f -> f.toString().matches(".*\\.(java|md|py|sh|txt|xml)$")
                || f.getParent().endsWith("scripts"))
            .toList();
      }
      for (Path f : files) {
        String text = Files.readString(f);
        Matcher c = CITATION.matcher(text);
        while (c.find()) {
          if (!headings.contains(c.group(1))) {
            wrong.add(root.relativize(f) + ": \"" + c.group(1) + "\" is not a heading of docs/design.md");
          }
        }
        if (text.contains(oldName)) {
          wrong.add(root.relativize(f) + " cites " + oldName + ": cite docs/design.md, \"<heading>\"");
        }
      }
    }
    assertEquals(List.of(), wrong, "headings: " + headings);
  }
}
