package org.fadam;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
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

/**
 * The README's Java examples, compiled and run: each {@code README:name} region of this file is,
 * character for character (less its indentation), a {@code java} code block of README.md, and every
 * {@code java} block of the README is one of these regions.
 */
class ReadmeExamplesTest {

  @Test
  void dropInSwapTrains() {
    try (Graph graph = new Graph(); Session session = new Session(graph)) {
      Ops tf = Ops.create(graph);
      Variable<TFloat32> w = tf.variable(tf.zeros(tf.constant(new int[] {4}), TFloat32.class));
      var loss = tf.reduceSum(tf.math.square(tf.math.sub(tf.identity(w), tf.constant(1f))),
          tf.constant(0));
      // README:drop-in
      Optimizer optimizer = new FAdam(graph, 0.001f);    // was: new Adam(graph, 0.001f)
      Op train = optimizer.minimize(loss, "train");      // unchanged
      // README:end
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
      // README:fused-step
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
      // README:end
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
        FisherTrainStep step = org.fadam.tools.ResumeProbe.build(graph, "fadam", false);
        try (Session s = new Session(graph)) {
          s.initialize();
          // README:checkpoints
          CheckpointManager checkpoints = step.checkpoints(dir, 3);  // dir/ckpt-<step>/, newest 3 kept
          long start = checkpoints.restoreLatest(s).orElse(0);       // a restarted job continues here
          for (long k = start; k < steps; k++) {
            step.train(s, Map.of("x", x, "y", y));
            if ((k + 1) % 2 == 0) {
              checkpoints.save(s);                                   // written beside, then renamed
            }
          }
          // README:end
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

  // --- the README shows exactly these regions -------------------------------------------------

  private static final Pattern JAVA_BLOCK = Pattern.compile("(?s)```java\\n(.*?)```");

  /** Every README:name … README:end region of this source file, without its indentation. */
  static Map<String, String> regions() throws IOException {
    Path source = Path.of("src/test/java/org/fadam/ReadmeExamplesTest.java");
    Assumptions.assumeTrue(Files.exists(source), "run from fadam-tf-tests/");
    Map<String, String> regions = new LinkedHashMap<>();
    String name = null;
    List<String> lines = new ArrayList<>();
    for (String line : Files.readAllLines(source)) {
      String t = line.strip();
      if (t.startsWith("// README:")) {
        if (t.equals("// README:end")) {
          int indent = lines.stream().filter(l -> !l.isBlank())
              .mapToInt(l -> l.length() - l.stripLeading().length()).min().orElse(0);
          StringBuilder text = new StringBuilder();
          lines.forEach(l -> text.append(l.isBlank() ? "" : l.substring(indent)).append('\n'));
          regions.put(name, text.toString());
          name = null;
        } else {
          name = t.substring("// README:".length());
          lines.clear();
        }
      } else if (name != null) {
        lines.add(line);
      }
    }
    return regions;
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
  void theReadmeShowsTheseExamplesAndNoOthers() throws IOException {
    Map<String, String> regions = regions();
    assertEquals(List.of("drop-in", "fused-step", "checkpoints"), List.copyOf(regions.keySet()));
    String readme = Files.readString(Path.of("..", "README.md"));
    List<String> blocks = new ArrayList<>();
    Matcher m = JAVA_BLOCK.matcher(readme);
    while (m.find()) {
      blocks.add(m.group(1));
    }
    assertEquals(List.copyOf(regions.values()), blocks,
        "README.md's java blocks differ from ReadmeExamplesTest's regions; copy them over");
  }
}
