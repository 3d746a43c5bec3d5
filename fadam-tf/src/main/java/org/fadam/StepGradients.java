package org.fadam;

import java.util.Collections;
import java.util.Map;
import org.tensorflow.Tensor;

/**
 * What one call of {@link FisherTrainStep#gradients} returned: the loss and each parameter's gradient by its
 * {@link FisherTrainStep#gradientKey}. The tensors belong to this object: close it.
 */
public final class StepGradients implements AutoCloseable {
  private final float loss;
  private final Map<String, Tensor> byKey;
  private final org.tensorflow.Result owner;

  StepGradients(float loss, Map<String, Tensor> byKey, org.tensorflow.Result owner) {
    this.loss = loss;
    this.byKey = Collections.unmodifiableMap(byKey);
    this.owner = owner;
  }

  /** {@return the loss on the batch, at the parameters before the step} */
  public float loss() {
    return loss;
  }

  /** {@return each parameter's gradient, keyed as {@link FisherTrainStep#applyGradients} takes them} */
  public Map<String, Tensor> byKey() {
    return byKey;
  }

  @Override
  public void close() {
    owner.close();
  }
}
