package org.fadam;

import org.tensorflow.Operand;
import org.tensorflow.types.TBool;
import org.tensorflow.types.family.TFloating;

/**
 * The scalars of one tensor's step, with the non-finite policy already folded in, so that {@link
 * Rule}'s algorithm branches never see the policy. Where the policy skips the step ({@code keep}
 * false) they become the values that leave θ and every slot exactly as they were — η → 0, β → 1,
 * 1 − β → 0, ε̂ → 1, {@code applied} → 0 — so no full-size select or copy is needed
 * (docs/design.md, "Non-finite gradients").
 *
 * @param t the step number, after this step's increment (Alg. 1 l.4)
 * @param eta η_t, the learning rate
 * @param beta1 β1 (Alg. 1 l.11)
 * @param oneMinusBeta1 1 − β1
 * @param beta2Hat β̂2, the bias-corrected β2 of Algorithms 1, 2 and 4 (l.6)
 * @param oneMinusBeta2Hat 1 − β̂2, computed without cancellation
 * @param beta2 β2 uncorrected, Algorithm 3's EMA (l.6)
 * @param oneMinusBeta2 1 − β2
 * @param epsHat ε̂ = min(ε, ε2·RMS(g)) (Alg. 1 l.8); null where the algorithm has no adaptive ε
 * @param applied 1, or 0 where the step is skipped: Algorithm 4's update, whose λθ carries no η
 * @param lambda λ, the weight decay of this tensor (Alg. 1 l.14, Alg. 3 l.10, Alg. 4 l.13); null
 *     where the tensor is not decayed (λ = 0 or masked out), so that no decay term is built
 * @param <W> the working dtype
 */
record StepScalars<W extends TFloating>(
    Operand<W> t,
    Operand<W> eta,
    Operand<W> beta1,
    Operand<W> oneMinusBeta1,
    Operand<W> beta2Hat,
    Operand<W> oneMinusBeta2Hat,
    Operand<W> beta2,
    Operand<W> oneMinusBeta2,
    Operand<W> epsHat,
    Operand<W> applied,
    Operand<W> lambda) {

  /**
   * The scalars of a step.
   *
   * @param k the kernels of the working dtype
   * @param o the options
   * @param lr η_t
   * @param t the step number after this step's increment
   * @param rmsG RMS(g) for the adaptive ε, or null where the algorithm has none
   * @param keep whether the step is kept, or null without a non-finite policy
   * @param lambda this tensor's λ, or null where it is not decayed (needs no folding: every
   *     algorithm multiplies its decay term by η or by {@code applied})
   * @param <W> the working dtype
   * @return the scalars, folded by {@code keep}
   */
  static <W extends TFloating> StepScalars<W> of(
      Kernels<W> k, FisherOptions o, Operand<W> lr, Operand<W> t, Operand<W> rmsG,
      Operand<TBool> keep, Operand<W> lambda) {
    Kept<W> kept = new Kept<>(k, keep);
    return new StepScalars<>(
        t,
        kept.or(lr, 0),
        kept.or(k.c(o.beta1()), 1),
        kept.or(k.c(1 - o.beta1()), 0),
        kept.or(k.biasCorrectedBeta2(o.beta2(), t), 1), // Alg. 1, 2, 4 l.6: β̂2
        kept.or(k.oneMinusBiasCorrectedBeta2(o.beta2(), t), 0),
        kept.or(k.c(o.beta2()), 1), // Alg. 3 l.6
        kept.or(k.c(1 - o.beta2()), 0),
        rmsG == null ? null : kept.or(k.adaptiveEpsilon(o.epsilon(), o.epsilon2(), rmsG), 1), // l.8
        kept.or(k.c(1), 0),
        lambda);
  }

  /** A scalar chosen by the policy: the kept value, or the skipped one where keep is false. */
  private record Kept<W extends TFloating>(Kernels<W> k, Operand<TBool> keep) {
    Operand<W> or(Operand<W> value, double skipped) {
      return keep == null ? value : k.tf.select(keep, value, k.c(skipped));
    }
  }
}
