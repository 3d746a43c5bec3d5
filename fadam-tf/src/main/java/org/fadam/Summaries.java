package org.fadam;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.tensorflow.Graph;
import org.tensorflow.Session;
import org.tensorflow.op.Op;
import org.tensorflow.op.Ops;
import org.tensorflow.op.core.Placeholder;
import org.tensorflow.op.summary.SummaryWriter;
import org.tensorflow.types.TFloat32;
import org.tensorflow.types.TInt64;

/**
 * TensorBoard scalars of a training run: the loss and the step telemetry ({@link StepTelemetry},
 * η_t and the skipped-steps counter among it) of every N-th step, written into event files by
 * TensorFlow's own summary ops ({@code CreateSummaryFileWriter}, {@code WriteScalarSummary}) in a
 * small graph of their own, so that the train step's graph is not touched (docs/telemetry.md).
 *
 * <pre>{@code
 * try (Summaries tb = Summaries.open(Path.of("runs/fadam"), 10)) {
 *   for (...) {
 *     FisherTrainStep.Result r = step.train(session, feeds);
 *     tb.write(r);                 // steps 10, 20, ... (and any step passed to write(step, ...))
 *   }
 * }                                // flushes and closes the event file
 * }</pre>
 */
public final class Summaries implements AutoCloseable {

  /** The loss's tag; every other tag is a {@link StepTelemetry#NAMES} name. */
  public static final String LOSS = "loss";
  /** Every tag written, in the order written: {@value #LOSS}, then {@link StepTelemetry#NAMES}. */
  public static final List<String> TAGS;

  static {
    List<String> tags = new ArrayList<>();
    tags.add(LOSS);
    tags.addAll(StepTelemetry.NAMES);
    TAGS = List.copyOf(tags);
  }

  private final int every;
  private final Graph graph = new Graph();
  private final Session session;
  private final Placeholder<TInt64> step;
  private final List<Placeholder<TFloat32>> values = new ArrayList<>();
  private final List<Op> writes = new ArrayList<>();
  private final Op flush;
  private final Op close;
  private boolean closed;
  /** The step {@link #write(FisherTrainStep.Result)} last wrote, or -1. */
  private long lastWritten = -1;
  /** Makes each writer's resource name unique. */
  private static final java.util.concurrent.atomic.AtomicLong WRITERS = new java.util.concurrent.atomic.AtomicLong();

  private Summaries(Path dir, int every) {
    this.every = every;
    Ops tf = Ops.create(graph);
    SummaryWriter writer = tf.summary.summaryWriter(SummaryWriter.sharedName("fadam_summaries_" + WRITERS.incrementAndGet()));
    Op create = tf.summary.createSummaryFileWriter(writer, tf.constant(dir.toString()),
        tf.constant(100), tf.constant(10_000), tf.constant(".fadam"));
    step = tf.placeholder(TInt64.class, Placeholder.shape(org.tensorflow.ndarray.Shape.scalar()));
    for (String tag : TAGS) {
      Placeholder<TFloat32> v = tf.placeholder(TFloat32.class, Placeholder.shape(org.tensorflow.ndarray.Shape.scalar()));
      values.add(v);
      writes.add(tf.summary.writeScalarSummary(writer, step, tf.constant(tag), v));
    }
    flush = tf.summary.flushSummaryWriter(writer);
    close = tf.summary.closeSummaryWriter(writer);
    session = new Session(graph);
    try {
      session.runner().addTarget(create).run();
    } catch (RuntimeException e) { // TensorFlow's error of the file writer's creation
      session.close();
      graph.close();
      String why = e.getMessage() == null ? e.toString() : e.getMessage().lines().findFirst().orElse("");
      throw new IllegalArgumentException("TensorBoard directory " + dir + " cannot be written: " + why, e);
    }
  }

  /**
   * Opens an event file in {@code dir} (created with its parents where missing).
   *
   * @param dir the run's directory (TensorBoard shows one run per directory)
   * @param every write the steps that are multiples of this (≥ 1)
   * @return the writer (close it)
   * @throws IllegalArgumentException in one line naming {@code dir} if it cannot be created or
   *     written, or if {@code every} &lt; 1
   */
  public static Summaries open(Path dir, int every) {
    if (every < 1) {
      throw new IllegalArgumentException("summaries every " + every + " steps: must be ≥ 1");
    }
    try {
      Files.createDirectories(dir);
    } catch (IOException | SecurityException e) {
      throw new IllegalArgumentException("TensorBoard directory " + dir + " cannot be created: " + e, e);
    }
    if (!Files.isDirectory(dir) || !Files.isWritable(dir)) {
      throw new IllegalArgumentException("TensorBoard directory " + dir + " is not a writable directory");
    }
    return new Summaries(dir.toAbsolutePath(), every);
  }

  /**
   * Writes a step's loss and telemetry at its step number where that is a multiple of {@code
   * every}, once per step number (with gradient accumulation, the call that reached it: the one
   * that stepped).
   *
   * @param result what {@link FisherTrainStep#train} returned
   * @return whether it was written
   */
  public boolean write(FisherTrainStep.Result result) {
    if (result.step() % every != 0 || result.step() == lastWritten) {
      return false;
    }
    write(result.step(), result.loss(), result.telemetry());
    lastWritten = result.step();
    return true;
  }

  /**
   * Writes one step's scalars at {@code step}, whatever {@code every} is.
   *
   * @param step the x of every scalar
   * @param loss the loss
   * @param telemetry the step's telemetry
   */
  public void write(long step, float loss, StepTelemetry telemetry) {
    if (closed) {
      throw new IllegalStateException("summaries are closed");
    }
    List<TFloat32> fed = new ArrayList<>();
    try (TInt64 s = TInt64.scalarOf(step)) {
      Session.Runner r = session.runner().feed(this.step, s);
      for (int i = 0; i < TAGS.size(); i++) {
        double v = i == 0 ? loss : telemetry.get(TAGS.get(i));
        TFloat32 t = TFloat32.scalarOf((float) v);
        fed.add(t);
        r.feed(values.get(i), t);
      }
      writes.forEach(r::addTarget);
      r.run();
    } finally {
      fed.forEach(TFloat32::close);
    }
  }

  /** Writes what is queued to the event file. */
  public void flush() {
    session.runner().addTarget(flush).run();
  }

  /** Flushes and closes the event file. */
  @Override
  public void close() {
    if (closed) {
      return;
    }
    closed = true;
    try {
      session.runner().addTarget(close).run();
    } finally {
      session.close();
      graph.close();
    }
  }
}
