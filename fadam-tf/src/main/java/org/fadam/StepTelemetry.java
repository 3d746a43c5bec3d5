package org.fadam;

import java.util.List;

/**
 * What one optimizer step reports about itself besides its result, read from scalars the step
 * already computes (no extra pass over any tensor): docs/design.md, "Step telemetry". Fractions
 * are by element count over every parameter of the step.
 *
 * @param gradRms RMS of all gradients together, sqrt(Σ_tensors Σg² / Σ_tensors n), of the gradient
 *     the optimizer step sees (with accumulation: the window's mean); NaN or ∞ where a gradient is
 *     not finite
 * @param clippedNatural fraction of parameters whose natural gradient ḡ was cut by the RMS clip
 *     this step (per-tensor clip factor 1/max(1, RMS(ḡ)/c) &lt; 1: Alg. 1 l.10; Adam's Alg. 3 l.9
 *     and Adafactor's Alg. 4 l.11 clip too and are counted the same way); 0 on a step not applied
 * @param clippedDecay fraction of all parameters whose weight-decay gradient ḡw was cut (Alg. 1
 *     l.13); a tensor without decay (masked out, λ = 0) and every tensor of Adam and Adafactor
 *     (whose λθ is not clipped) count as not clipped; 0 on a step not applied
 * @param epsFloor fraction of parameters whose ε̂ = min(ε, ε2·RMS(g)) (Alg. 1 l.8) took ε2·RMS(g),
 *     ε2·RMS(g) &lt; ε (the paper's C.1.1); 0 for Adam and Adafactor (no adaptive ε) and on a step not
 *     applied
 * @param skipped the {@code skipped_steps} counter after this step: steps skipped so far for a
 *     non-finite gradient (only SKIP counts; 0 under PROPAGATE and ERROR)
 * @param learningRate η_t, the learning rate of this step (the schedule's value at the steps
 *     taken before it, times the run-time scale), in float32, also on a skipped step
 */
public record StepTelemetry(
    float gradRms, float clippedNatural, float clippedDecay, float epsFloor, long skipped,
    float learningRate) {

  /** Name of the gradient RMS output. */
  public static final String GRAD_RMS = "grad_rms";
  /** Name of the output of the fraction of parameters whose ḡ was clipped. */
  public static final String CLIPPED_NATURAL = "clipped_natural";
  /** Name of the output of the fraction of parameters whose ḡw was clipped. */
  public static final String CLIPPED_DECAY = "clipped_decay";
  /** Name of the output of the fraction of parameters whose ε̂ took ε2·RMS(g). */
  public static final String EPS_FLOOR = "eps_floor";
  /** Name of the output of the skipped-steps counter after the step. */
  public static final String SKIPPED = "skipped";
  /** Name of the output of η_t. */
  public static final String LEARNING_RATE = "learning_rate";
  /** Every telemetry output's name, in the order the step functions emit them. */
  public static final List<String> NAMES =
      List.of(GRAD_RMS, CLIPPED_NATURAL, CLIPPED_DECAY, EPS_FLOOR, SKIPPED, LEARNING_RATE);

  /**
   * {@return the value under one of {@link #NAMES}, as a double}
   *
   * @param name one of {@link #NAMES}
   * @throws IllegalArgumentException naming the known names
   */
  public double get(String name) {
    return switch (name) {
      case GRAD_RMS -> gradRms;
      case CLIPPED_NATURAL -> clippedNatural;
      case CLIPPED_DECAY -> clippedDecay;
      case EPS_FLOOR -> epsFloor;
      case SKIPPED -> skipped;
      case LEARNING_RATE -> learningRate;
      default -> throw new IllegalArgumentException("no telemetry '" + name + "'; names are " + NAMES);
    };
  }
}
