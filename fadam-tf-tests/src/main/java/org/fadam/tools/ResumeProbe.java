package org.fadam.tools;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.fadam.Algorithm;
import org.fadam.FisherOptions;
import org.fadam.FisherTrainStep;
import org.fadam.ResourceVariable;
import org.tensorflow.Graph;
import org.tensorflow.SavedModelBundle;
import org.tensorflow.Session;
import org.tensorflow.Tensor;
import org.tensorflow.ndarray.Shape;
import org.tensorflow.ndarray.buffer.DataBuffers;
import org.tensorflow.op.Ops;
import org.tensorflow.types.TFloat32;

/**
 * A small softmax model trained by the fused step, for export/resume checks across processes.
 * {@code run OPT JIT STEPS EXPORT_AT DIR} trains STEPS steps, exporting a SavedModel to DIR after
 * EXPORT_AT of them; {@code resume DIR STEPS FIRST} loads DIR with {@link SavedModelBundle} and
 * calls its {@code train} signature STEPS times from batch FIRST on. Both print one loss per line
 * as the float's raw bits (hex), so runs compare bit for bit.
 */
public final class ResumeProbe {

  public static final int FEATURES = 6;
  public static final int CLASSES = 5;
  public static final int BATCH = 16;

  private ResumeProbe() {}

  public static void main(String[] args) throws Exception {
    if (args.length == 6 && args[0].equals("run")) {
      run(Algorithm.parse(args[1]), Boolean.parseBoolean(args[2]), Integer.parseInt(args[3]), Integer.parseInt(args[4]), Path.of(args[5]));
    } else if (args.length == 4 && args[0].equals("resume")) {
      resume(Path.of(args[1]), Integer.parseInt(args[2]), Integer.parseInt(args[3]));
    } else {
      System.err.println("usage: ResumeProbe run fadam|fadafactor|adam|adafactor JIT STEPS EXPORT_AT DIR | resume DIR STEPS FIRST");
      System.exit(2);
    }
  }

  /** Builds the model's train step in {@code graph}. */
  public static FisherTrainStep build(Graph graph, Algorithm optimizer, boolean jit) {
    return build(graph, optimizer, jit, FisherOptions.NonFinitePolicy.SKIP);
  }

  /** Builds the model's train step in {@code graph} with a non-finite policy. */
  public static FisherTrainStep build(Graph graph, Algorithm optimizer, boolean jit,
      FisherOptions.NonFinitePolicy policy) {
    Ops tf = Ops.create(graph);
    Random rnd = new Random(11);
    float[][] w0 = new float[FEATURES][CLASSES];
    for (float[] row : w0) {
      for (int j = 0; j < row.length; j++) {
        row[j] = (float) (0.3 * rnd.nextGaussian());
      }
    }
    var w = ResourceVariable.create(tf, "w", tf.withInitScope().constant(w0));
    var b = ResourceVariable.create(tf, "b", tf.withInitScope().constant(new float[CLASSES]));
    FisherOptions o = FisherOptions.builder().factoredMinDim(4).nonFinite(policy).build();
    return FisherTrainStep.builder(graph)
        .algorithm(optimizer, 0.05, o)
        .input("x", TFloat32.class, Shape.of(-1, FEATURES))
        .input("y", TFloat32.class, Shape.of(-1, CLASSES))
        .variables(List.of(w, b))
        .loss((ops, in, v) -> {
          var logits = ops.math.add(ops.linalg.matMul(in.float32("x"), v.float32("w")), v.float32("b"));
          return ops.math.mean(ops.nn.softmaxCrossEntropyWithLogits(logits, in.float32("y")).loss(), ops.constant(0));
        })
        .predictions((ops, in, v) -> ops.nn.softmax(
            ops.math.add(ops.linalg.matMul(in.float32("x"), v.float32("w")), v.float32("b"))), "x")
        .jit(jit)
        .build();
  }

  /** The batch of step k (a function of k only). */
  public static Map<String, TFloat32> batch(int k) {
    return classBatch(1000L + k, BATCH, FEATURES, CLASSES);
  }

  /**
   * A seeded classification batch: {@code y} one-hot of a uniform class c per row, {@code x}
   * N(0, 1) features shifted by 1.5 at feature c ({@code features ≥ classes}).
   */
  public static Map<String, TFloat32> classBatch(long seed, int rows, int features, int classes) {
    Random rnd = new Random(seed);
    float[] x = new float[rows * features];
    float[] y = new float[rows * classes];
    for (int i = 0; i < rows; i++) {
      int c = rnd.nextInt(classes);
      y[i * classes + c] = 1;
      for (int j = 0; j < features; j++) {
        x[i * features + j] = (float) (rnd.nextGaussian() + (j == c ? 1.5 : 0));
      }
    }
    return Map.of(
        "x", TFloat32.tensorOf(Shape.of(rows, features), DataBuffers.of(x, true, false)),
        "y", TFloat32.tensorOf(Shape.of(rows, classes), DataBuffers.of(y, true, false)));
  }

  /** Trains {@code steps} steps and returns the losses; exports after {@code exportAt} (0: never). */
  public static List<Float> run(Algorithm optimizer, boolean jit, int steps, int exportAt, Path dir) throws Exception {
    List<Float> losses = new ArrayList<>();
    try (Graph g = new Graph()) {
      FisherTrainStep step = build(g, optimizer, jit);
      try (Session s = new Session(g)) {
        s.initialize();
        for (int k = 0; k < steps; k++) {
          Map<String, TFloat32> feeds = batch(k);
          losses.add(step.train(s, feeds).loss());
          feeds.values().forEach(Tensor::close);
          System.out.println(Integer.toHexString(Float.floatToRawIntBits(losses.get(k))));
          if (k + 1 == exportAt) {
            step.export(s, dir);
          }
        }
      }
    }
    return losses;
  }

  /** Loads an exported model and calls its train signature {@code steps} times. */
  static void resume(Path dir, int steps, int first) {
    try (SavedModelBundle bundle = SavedModelBundle.load(dir.toString(), SavedModelBundle.DEFAULT_TAG)) {
      var train = bundle.function(FisherTrainStep.TRAIN);
      for (int k = first; k < first + steps; k++) {
        Map<String, TFloat32> feeds = batch(k);
        try (var out = train.call(Map.of("x", feeds.get("x"), "y", feeds.get("y")))) {
          float loss = ((TFloat32) out.get(FisherTrainStep.LOSS).orElseThrow()).getFloat();
          System.out.println(Integer.toHexString(Float.floatToRawIntBits(loss)));
        }
        feeds.values().forEach(Tensor::close);
      }
    }
  }
}
