package org.fadam;

import java.util.Objects;
import org.tensorflow.Operand;
import org.tensorflow.types.family.TFloating;
import org.tensorflow.types.family.TNumber;

/**
 * The learning rate η_t: a fixed value (kept as a double, so float64 parameters see it exactly) or
 * a graph operand (a placeholder or a schedule computed from the step), times a run-time scale
 * where the step has one ({@code hparams/learning_rate_scale}).
 */
final class LearningRate {
  private final double value;
  private final Operand<? extends TNumber> operand;
  private final Operand<? extends TNumber> scale;

  private LearningRate(double value, Operand<? extends TNumber> operand, Operand<? extends TNumber> scale) {
    this.value = value;
    this.operand = operand;
    this.scale = scale;
  }

  static LearningRate of(double value) {
    return new LearningRate(FisherOptions.checkLearningRate(value), null, null);
  }

  /** This rate times {@code s} (a scalar graph operand). */
  LearningRate scaled(Operand<? extends TNumber> s) {
    return new LearningRate(value, operand, Objects.requireNonNull(s, "scale"));
  }

  static LearningRate of(Operand<? extends TNumber> operand) {
    Objects.requireNonNull(operand, "`learningRate` operand must not be null");
    if (operand.shape().numDimensions() > 0) {
      throw new IllegalArgumentException(
          "`learningRate` must be a scalar operand; got shape " + operand.shape());
    }
    return new LearningRate(Double.NaN, operand, null);
  }

  /** The graph operand, or null for a fixed value. */
  Operand<? extends TNumber> operand() {
    return operand;
  }

  /** η_t in the working dtype: the rate, times the scale where there is one. */
  <W extends TFloating> Operand<W> in(Kernels<W> k) {
    Operand<W> eta = operand == null ? k.c(value) : k.cast(operand);
    return scale == null ? eta : k.tf.math.mul(eta, k.cast(scale));
  }

  @Override
  public String toString() {
    return operand == null ? Double.toString(value) : operand.op().name();
  }
}
