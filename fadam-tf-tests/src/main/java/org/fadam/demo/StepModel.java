package org.fadam.demo;

import java.io.IOException;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Map;
import java.util.Random;
import java.util.function.Function;
import org.fadam.Algorithm;
import org.fadam.AtomicDirectory;
import org.fadam.FisherTrainStep;
import org.fadam.WeightDecayMasks;
import org.tensorflow.Graph;
import org.tensorflow.Operand;
import org.tensorflow.Session;
import org.tensorflow.op.Ops;
import org.tensorflow.op.math.Mean;
import org.tensorflow.types.TFloat32;
import org.tensorflow.types.TInt32;
import org.tensorflow.types.TInt64;

/**
 * What the demo's models share: a graph and session of their own holding one {@link
 * FisherTrainStep} fed {@code tokens} and {@code labels}, its runners, export and restore, and
 * the layer norm. A subclass builds the step and says how a batch becomes its two inputs.
 */
abstract class StepModel implements LanguageModel {

  /** Name of the token input. */
  static final String TOKENS = "tokens";
  /** Name of the label input. */
  static final String LABELS = "labels";

  private static final float LAYER_NORM_EPSILON = 1e-5f;

  private final Algorithm optimizer;
  private final int accumulate;
  private final Graph graph;
  private final Session session;
  private final FisherTrainStep step;
  private final Operand<TInt64> iterations;

  /**
   * Builds the step with {@code build} in a new graph and initializes a session for it; the graph
   * is closed if either fails.
   */
  StepModel(Algorithm optimizer, int accumulate, Function<Graph, FisherTrainStep> build) {
    this.optimizer = optimizer;
    this.accumulate = accumulate;
    this.graph = new Graph();
    try {
      this.step = build.apply(graph);
      this.iterations = step.iterations().read(Ops.create(graph));
      this.session = new Session(graph);
      session.initialize();
    } catch (RuntimeException e) {
      graph.close();
      throw e;
    }
  }

  /**
   * A builder for a step with the run's training options: the schedule with {@code lr} as its
   * peak, the weight-decay mask, accumulation, the micro-batch Fisher, and the algorithm's own
   * paper defaults with {@code --momentum}'s m.
   */
  static FisherTrainStep.Builder builder(Graph graph, Algorithm optimizer, double lr,
      DemoModel.Training t) {
    FisherTrainStep.Builder builder = FisherTrainStep.builder(graph);
    if (t.schedule(lr) != null) {
      builder.schedule(t.schedule(lr));
    }
    if (t.matricesOnly()) {
      builder.weightDecayMask(WeightDecayMasks.matrices());
    }
    return builder.accumulate(t.accumulate()).microBatchFisher(t.microBatchFisher())
        .algorithm(optimizer, lr, t.options(optimizer));
  }

  /** The token input of a batch. */
  abstract TInt32 tokenInput(Batches.Batch batch);

  /** The label input of a batch. */
  abstract TInt32 labelInput(Batches.Batch batch);

  @Override
  public Algorithm optimizer() {
    return optimizer;
  }

  @Override
  public FisherTrainStep step() {
    return step;
  }

  @Override
  public Session session() {
    return session;
  }

  /** {@return the graph of the model and its step} */
  Graph graph() {
    return graph;
  }

  @Override
  public FisherTrainStep.Result train(Batches.Batch batch) {
    try (TInt32 tokens = tokenInput(batch); TInt32 labels = labelInput(batch)) {
      return step.train(session, Map.of(TOKENS, tokens, LABELS, labels));
    }
  }

  @Override
  public int accumulate() {
    return accumulate;
  }

  @Override
  public double loss(Batches.Batch batch) {
    try (TInt32 tokens = tokenInput(batch); TInt32 labels = labelInput(batch);
        var out = session.runner()
            .feed(step.input(TOKENS), tokens)
            .feed(step.input(LABELS), labels)
            .fetch(step.evalLoss())
            .run()) {
      return ((TFloat32) out.get(0)).getFloat();
    }
  }

  @Override
  public long iterations() {
    try (var out = session.runner().fetch(iterations).run()) {
      return ((TInt64) out.get(0)).getLong();
    }
  }

  @Override
  public void export(Path dir) throws IOException {
    step.export(session, dir);
  }

  @Override
  public void exportReplacing(Path dir, AtomicDirectory.Writer extra) throws IOException {
    step.exportReplacing(session, dir, extra);
  }

  @Override
  public void restore(Path dir) {
    step.restore(session, dir);
  }

  @Override
  public void close() {
    session.close();
    graph.close();
  }

  /** Layer norm over the last axis, composed (TF Java has no fused op with a gradient). */
  static Operand<TFloat32> layerNorm(
      Ops tf, Operand<TFloat32> x, Operand<TFloat32> gain, Operand<TFloat32> shift) {
    Operand<TInt32> last = tf.constant(-1);
    Operand<TFloat32> centered = tf.math.sub(x, tf.math.mean(x, last, Mean.keepDims(true)));
    Operand<TFloat32> variance = tf.math.mean(tf.math.square(centered), last, Mean.keepDims(true));
    Operand<TFloat32> inv = tf.math.rsqrt(tf.math.add(variance, tf.constant(LAYER_NORM_EPSILON)));
    return tf.math.add(tf.math.mul(tf.math.mul(centered, inv), gain), shift);
  }

  /** A rows×cols matrix of N(0, std²) values. */
  static float[][] normal(Random rng, int rows, int cols, double std) {
    float[][] m = new float[rows][cols];
    for (float[] row : m) {
      for (int j = 0; j < cols; j++) {
        row[j] = (float) (rng.nextGaussian() * std);
      }
    }
    return m;
  }

  /** {@code n} copies of {@code value}. */
  static float[] filled(int n, float value) {
    float[] a = new float[n];
    Arrays.fill(a, value);
    return a;
  }
}
