package org.fadam;

import java.util.Objects;
import org.tensorflow.Operand;
import org.tensorflow.types.family.TFloating;
import org.tensorflow.types.family.TNumber;

/**
 * The learning rate η_t: a fixed value (kept as a double, so float64 parameters see it exactly) or
 * a graph operand (a placeholder or a schedule computed from the step).
 */
final class LearningRate {
  private final double value;
  private final Operand<? extends TNumber> operand;

  private LearningRate(double value, Operand<? extends TNumber> operand) {
    this.value = value;
    this.operand = operand;
  }

  static LearningRate of(double value) {
    return new LearningRate(FisherOptions.checkLearningRate(value), null);
  }

  static LearningRate of(Operand<? extends TNumber> operand) {
    Objects.requireNonNull(operand, "`learningRate` operand must not be null");
    if (operand.shape().numDimensions() > 0) {
      throw new IllegalArgumentException(
          "`learningRate` must be a scalar operand; got shape " + operand.shape());
    }
    return new LearningRate(Double.NaN, operand);
  }

  /** The graph operand, or null for a fixed value. */
  Operand<? extends TNumber> operand() {
    return operand;
  }

  /** η_t in the working dtype. */
  <W extends TFloating> Operand<W> in(Kernels<W> k) {
    return operand == null ? k.c(value) : k.cast(operand);
  }

  @Override
  public String toString() {
    return operand == null ? Double.toString(value) : operand.op().name();
  }
}
