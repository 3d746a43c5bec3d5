package org.fadam;

import org.tensorflow.Operand;
import org.tensorflow.op.Ops;
import org.tensorflow.types.TFloat32;
import org.tensorflow.types.TFloat64;
import org.tensorflow.types.TInt64;
import org.tensorflow.types.family.TFloating;
import org.tensorflow.types.family.TNumber;

/**
 * Learning-rate schedules computed in the graph from the step counter t (the steps taken before
 * this one, counting from 0): for {@link FisherTrainStep.Builder#schedule} (t = {@code
 * iterations}, the optimizer steps) and the drop-in optimizers' schedule constructors (their own
 * counter). Both compute a {@link Computed} schedule in each parameter's working dtype
 * (docs/design.md, "Dtypes"): float64 for float64 parameters, which so see the schedule's exact
 * values ({@code constant(lr)} steps as the fixed {@code lr} does, bit for bit), and float32 for
 * float32, float16 and bfloat16 parameters, so that a float32 step holds no float64 tensor (a TPU
 * computes none). {@link Computed#value} gives the formula in any float dtype; {@link
 * FisherTrainStep.Schedule#learningRate} on its own computes it in float32.
 */
public final class Schedules {

  private Schedules() {}

  /** A schedule with a closed form that can be computed in any float dtype. */
  public interface Computed extends FisherTrainStep.Schedule {
    /**
     * η at step t in dtype {@code type}.
     *
     * @param tf ops of the graph
     * @param t the steps taken before this one (int64 scalar)
     * @param type the float dtype to compute in
     * @param <T> that dtype
     * @return η_t
     */
    <T extends TFloating> Operand<T> value(Ops tf, Operand<TInt64> t, Class<T> type);

    @Override
    default Operand<? extends TNumber> learningRate(Ops tf, Operand<TInt64> iterations) {
      return value(tf, iterations, TFloat32.class);
    }
  }

  /**
   * η_t = lr at every step.
   *
   * @param lr the rate, finite and ≥ 0
   * @return the schedule
   */
  public static Computed constant(double lr) {
    return new Constant(rate("lr", lr));
  }

  /**
   * Linear warmup from 0 to {@code peak} over {@code warmupSteps}, then cosine decay to {@code
   * finalFraction·peak} at {@code totalSteps}, held after: optax's {@code
   * warmup_cosine_decay_schedule(init_value=0, peak_value=peak, warmup_steps,
   * decay_steps=totalSteps, end_value=finalFraction·peak)}.
   *
   * @param peak the rate after warmup, finite and ≥ 0
   * @param warmupSteps ≥ 0
   * @param totalSteps &gt; warmupSteps
   * @param finalFraction the end value over the peak, in [0, 1]
   * @return the schedule
   */
  public static Computed warmupCosine(double peak, long warmupSteps, long totalSteps, double finalFraction) {
    return new WarmupDecay(rate("peak", peak), warmup(warmupSteps, totalSteps), totalSteps,
        fraction(finalFraction), true);
  }

  /**
   * Linear warmup from 0 to {@code peak} over {@code warmupSteps}, then linear decay to {@code
   * finalFraction·peak} at {@code totalSteps}, held after.
   *
   * @param peak the rate after warmup, finite and ≥ 0
   * @param warmupSteps ≥ 0
   * @param totalSteps &gt; warmupSteps
   * @param finalFraction the end value over the peak, in [0, 1]
   * @return the schedule
   */
  public static Computed warmupLinear(double peak, long warmupSteps, long totalSteps, double finalFraction) {
    return new WarmupDecay(rate("peak", peak), warmup(warmupSteps, totalSteps), totalSteps,
        fraction(finalFraction), false);
  }

  /**
   * peak·t/warmup for t &lt; warmup, then peak·√(warmup/t) (the Transformer's schedule).
   *
   * @param peak the rate at t = warmup, finite and ≥ 0
   * @param warmupSteps ≥ 1
   * @return the schedule
   */
  public static Computed warmupInverseSqrt(double peak, long warmupSteps) {
    if (warmupSteps < 1) {
      throw new IllegalArgumentException("warmupSteps must be ≥ 1 for warmupInverseSqrt; got " + warmupSteps);
    }
    return new InverseSqrt(rate("peak", peak), warmupSteps);
  }

  private static double rate(String what, double v) {
    if (!Double.isFinite(v) || v < 0) {
      throw new IllegalArgumentException(what + " must be finite and ≥ 0; got " + v);
    }
    return v;
  }

  private static long warmup(long warmupSteps, long totalSteps) {
    if (warmupSteps < 0) {
      throw new IllegalArgumentException("warmupSteps must be ≥ 0; got " + warmupSteps);
    }
    if (warmupSteps >= totalSteps) {
      throw new IllegalArgumentException("warmupSteps " + warmupSteps + " must be less than totalSteps "
          + totalSteps + " (the decay needs at least one step)");
    }
    return warmupSteps;
  }

  private static double fraction(double f) {
    if (!(f >= 0 && f <= 1)) {
      throw new IllegalArgumentException("finalFraction must be in [0, 1]; got " + f);
    }
    return f;
  }

  /** t as T. */
  private static <T extends TFloating> Operand<T> steps(Ops tf, Operand<TInt64> t, Class<T> type) {
    return tf.dtypes.cast(t, type);
  }

  @SuppressWarnings("unchecked")
  private static <T extends TFloating> Operand<T> c(Ops tf, double v, Class<T> type) {
    return type == TFloat64.class ? (Operand<T>) tf.constant(v) : tf.dtypes.cast(tf.constant((float) v), type);
  }

  private record Constant(double lr) implements Computed {
    @Override
    public <T extends TFloating> Operand<T> value(Ops tf, Operand<TInt64> t, Class<T> type) {
      return c(tf, lr, type);
    }

    @Override
    public String toString() {
      return "constant(" + lr + ")";
    }
  }

  private record WarmupDecay(double peak, long warmup, long total, double finalFraction, boolean cosine)
      implements Computed {
    @Override
    public <T extends TFloating> Operand<T> value(Ops tf, Operand<TInt64> t, Class<T> type) {
      Operand<T> x = steps(tf, t, type);
      Operand<T> end = c(tf, finalFraction * peak, type);
      // warmup: peak·t/warmup for t < warmup (optax linear_schedule from 0)
      Operand<T> rising = warmup == 0 ? c(tf, peak, type)
          : tf.math.mul(c(tf, peak, type), tf.math.div(x, c(tf, warmup, type)));
      // progress p = min(t − warmup, D)/D, D = total − warmup
      Operand<T> p = tf.math.div(tf.math.minimum(tf.math.sub(x, c(tf, warmup, type)), c(tf, total - warmup, type)),
          c(tf, total - warmup, type));
      Operand<T> shape = cosine
          // ½(1 + cos(π p)) (optax cosine_decay_schedule)
          ? tf.math.mul(c(tf, 0.5, type), tf.math.add(c(tf, 1, type), tf.math.cos(tf.math.mul(c(tf, Math.PI, type), p))))
          : tf.math.sub(c(tf, 1, type), p); // 1 − p
      // end + (peak − end)·shape
      Operand<T> decaying = tf.math.add(end, tf.math.mul(c(tf, peak - finalFraction * peak, type), shape));
      return tf.select(tf.math.less(t, tf.constant(warmup)), rising, decaying);
    }

    @Override
    public String toString() {
      return (cosine ? "warmupCosine" : "warmupLinear") + "(peak=" + peak + ", warmup=" + warmup + ", total="
          + total + ", final=" + finalFraction + ")";
    }
  }

  private record InverseSqrt(double peak, long warmup) implements Computed {
    @Override
    public <T extends TFloating> Operand<T> value(Ops tf, Operand<TInt64> t, Class<T> type) {
      Operand<T> x = steps(tf, t, type);
      Operand<T> w = c(tf, warmup, type);
      Operand<T> rising = tf.math.mul(c(tf, peak, type), tf.math.div(x, w)); // peak·t/warmup
      // peak·√(warmup/t), t ≥ warmup ≥ 1 where chosen (max keeps the unchosen branch finite)
      Operand<T> falling = tf.math.mul(c(tf, peak, type), tf.math.sqrt(tf.math.div(w, tf.math.maximum(x, w))));
      return tf.select(tf.math.less(t, tf.constant(warmup)), rising, falling);
    }

    @Override
    public String toString() {
      return "warmupInverseSqrt(peak=" + peak + ", warmup=" + warmup + ")";
    }
  }
}
