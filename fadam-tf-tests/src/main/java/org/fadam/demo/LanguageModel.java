package org.fadam.demo;

import java.io.IOException;
import java.nio.file.Path;
import org.fadam.Algorithm;
import org.fadam.AtomicDirectory;
import org.fadam.FisherTrainStep;
import org.tensorflow.Session;

/**
 * A demo model with its fused train step, in a graph and session of its own: what {@link Demo}
 * and {@link Sweep} train, evaluate, export and restore, whichever architecture it is
 * ({@link DemoModel}, the MLP; {@link TransformerModel}).
 */
public interface LanguageModel extends AutoCloseable {

  /** {@return the optimizer of the train step} */
  Algorithm optimizer();

  /** {@return the train step (signatures, export, state sizes)} */
  FisherTrainStep step();

  /** {@return the session holding the model's variables} */
  Session session();

  /** One train call on a batch (one optimizer step, or one micro-batch of it under accumulation). */
  FisherTrainStep.Result train(Batches.Batch batch);

  /** The mean loss (nats per scored token) on a batch at the current parameters, without a step. */
  double loss(Batches.Batch batch);

  /** {@return the optimizer steps taken so far (restored with the variables)} */
  long iterations();

  /** {@return the train calls per optimizer step (gradient accumulation)} */
  int accumulate();

  /** Exports the SavedModel (train and serve signatures, every variable) to a new directory. */
  void export(Path dir) throws IOException;

  /**
   * Exports like {@link #export}, replacing what {@code dir} holds only once the new export, with
   * what {@code extra} writes into it, is complete.
   */
  void exportReplacing(Path dir, AtomicDirectory.Writer extra) throws IOException;

  /** Restores every variable (parameters, slots, counters) from an exported directory. */
  void restore(Path dir);

  @Override
  void close();
}
