package org.fadam;

import java.util.HashMap;
import java.util.Map;
import java.util.Objects;
import org.tensorflow.Operand;
import org.tensorflow.types.TInt64;
import org.tensorflow.types.family.TFloating;
import org.tensorflow.types.family.TNumber;

/**
 * The learning rate η_t: a fixed value (kept as a double, so float64 parameters see it exactly), a
 * graph operand (a placeholder), or a schedule of a step counter, times a run-time scale where the
 * step has one ({@code hparams/learning_rate_scale}). A {@link Schedules.Computed} schedule is
 * computed in each parameter's working dtype: float64 for float64 parameters, so that they see
 * the schedule's exact values, and float32 otherwise, so that a float32 step holds no float64.
 */
final class LearningRate {
  private final double value;
  private final Operand<? extends TNumber> operand;
  private final FisherTrainStep.Schedule schedule;
  private final Operand<TInt64> steps;
  private final Operand<? extends TNumber> scale;
  /** The schedule's η_t, built once per working dtype ({@code TNumber}: in the schedule's own). */
  private final Map<Class<?>, Operand<?>> scheduled = new HashMap<>();

  private LearningRate(double value, Operand<? extends TNumber> operand, FisherTrainStep.Schedule schedule,
      Operand<TInt64> steps, Operand<? extends TNumber> scale) {
    this.value = value;
    this.operand = operand;
    this.schedule = schedule;
    this.steps = steps;
    this.scale = scale;
  }

  static LearningRate of(double value) {
    return new LearningRate(FisherOptions.checkLearningRate(value), null, null, null, null);
  }

  static LearningRate of(Operand<? extends TNumber> operand) {
    return new LearningRate(Double.NaN, scalar(operand), null, null, null);
  }

  /**
   * η_t = {@code schedule} at {@code steps}, the steps taken before this one.
   *
   * @param schedule the schedule
   * @param steps an int64 scalar of the graph the rate is used in
   */
  static LearningRate of(FisherTrainStep.Schedule schedule, Operand<TInt64> steps) {
    return new LearningRate(Double.NaN, null, Objects.requireNonNull(schedule, "`schedule` must not be null"),
        Objects.requireNonNull(steps, "steps"), null);
  }

  private static <X extends Operand<? extends TNumber>> X scalar(X operand) {
    Objects.requireNonNull(operand, "`learningRate` operand must not be null");
    if (operand.shape().numDimensions() > 0) {
      throw new IllegalArgumentException(
          "`learningRate` must be a scalar operand; got shape " + operand.shape());
    }
    return operand;
  }

  /** This rate times {@code s} (a scalar graph operand). */
  LearningRate scaled(Operand<? extends TNumber> s) {
    return new LearningRate(value, operand, schedule, steps, Objects.requireNonNull(s, "scale"));
  }

  /** The graph operand, or null for a fixed value or a schedule. */
  Operand<? extends TNumber> operand() {
    return operand;
  }

  /** The schedule, or null. */
  FisherTrainStep.Schedule schedule() {
    return schedule;
  }

  /** The step count the schedule reads, or null without a schedule. */
  Operand<TInt64> steps() {
    return steps;
  }

  /** η_t in the working dtype: the rate, times the scale where there is one. */
  <W extends TFloating> Operand<W> in(Kernels<W> k) {
    Operand<W> eta = schedule != null ? scheduled(k) : operand == null ? k.c(value) : k.cast(operand);
    return scale == null ? eta : k.tf.math.mul(eta, k.cast(scale));
  }

  /** The schedule at {@link #steps}: computed in W where it is {@link Schedules.Computed}, else cast to W. */
  @SuppressWarnings("unchecked")
  private <W extends TFloating> Operand<W> scheduled(Kernels<W> k) {
    if (schedule instanceof Schedules.Computed c) {
      return (Operand<W>) scheduled.computeIfAbsent(k.type, t -> scalar(c.value(k.tf, steps, k.type)));
    }
    return k.cast((Operand<? extends TNumber>) scheduled.computeIfAbsent(
        TNumber.class, t -> scalar(schedule.learningRate(k.tf, steps))));
  }

  @Override
  public String toString() {
    return schedule != null ? schedule.toString() : operand == null ? Double.toString(value) : operand.op().name();
  }
}
