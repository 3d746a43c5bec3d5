package org.fadam;

import org.tensorflow.Graph;
import org.tensorflow.Operand;
import org.tensorflow.types.family.TNumber;

/**
 * FAdafactor, Algorithm 2 of arXiv 2405.12807v2: FAdam with a factored Fisher for large matrices.
 * A tensor of rank ≥ 2 whose last two dimensions are both ≥ {@link FisherOptions#factoredMinDim()}
 * keeps only R (slot {@value FisherOptimizer#FIM_ROW}, the last axis reduced) and C (slot {@value
 * FisherOptimizer#FIM_COL}, the second-last reduced), leading axes being batch axes; every other
 * tensor keeps the full {@value FisherOptimizer#FIM} as in {@link FAdam}.
 *
 * <table>
 *   <caption>Symbols</caption>
 *   <tr><th>paper</th><th>here</th></tr>
 *   <tr><td>θ</td><td>the variable</td></tr>
 *   <tr><td>m</td><td>slot {@value FisherOptimizer#FIRST_MOMENT}</td></tr>
 *   <tr><td>R, C</td><td>slots {@value FisherOptimizer#FIM_ROW}, {@value FisherOptimizer#FIM_COL}
 *       (factored tensors)</td></tr>
 *   <tr><td>f</td><td>slot {@value FisherOptimizer#FIM} (other tensors)</td></tr>
 *   <tr><td>t</td><td>slot {@value FisherOptimizer#STEP} (per variable)</td></tr>
 *   <tr><td>η</td><td>{@code learningRate}</td></tr>
 *   <tr><td>β1, β2, ε, ε2, c, λ, ρ</td><td>{@link FisherOptions}</td></tr>
 * </table>
 *
 * <pre>
 * t ← t + 1
 * β̂2 ← β2 (1 − β2^(t−1)) / (1 − β2^t)
 * R ← β̂2 R + (1 − β̂2) g² 1_m            (R0 = 1)
 * C ← β̂2 C + (1 − β̂2) 1ᵀ_n g²           (C0 = 1)
 * f ← R C / 1ᵀ_n R
 * ε̂ ← min(ε, ε2 RMS(g))
 * ḡ ← g / (f^ρ + ε̂^(2ρ));   ḡ ← ḡ / max(1, RMS(ḡ)/c)
 * m ← β1 m + (1 − β1) ḡ
 * ḡw ← θ / (f^ρ + ε̂^(2ρ));  ḡw ← ḡw / max(1, RMS(ḡw)/c)
 * θ ← θ − η (m + λ ḡw)
 * </pre>
 */
public final class FAdafactor extends FisherOptimizer {

  /** The default name of the optimizer's ops. */
  public static final String DEFAULT_NAME = "FAdafactor";

  /**
   * FAdafactor with the paper's defaults and learning rate {@value
   * FisherOptions#LEARNING_RATE_DEFAULT}.
   *
   * @param graph the graph of the variables to train; the slots and update ops are added to it
   */
  public FAdafactor(Graph graph) {
    this(graph, DEFAULT_NAME, FisherOptions.LEARNING_RATE_DEFAULT);
  }

  /**
   * FAdafactor with the paper's defaults.
   *
   * @param graph the graph of the variables to train; the slots and update ops are added to it
   * @param learningRate η of θ ← θ − η (m + λ ḡw) (Algorithm 2 line 16), finite and ≥ 0
   */
  public FAdafactor(Graph graph, float learningRate) {
    this(graph, DEFAULT_NAME, learningRate);
  }

  /**
   * FAdafactor with the given β1, β2 and ε (the framework Adam's constructor shape).
   *
   * @param graph the graph of the variables to train; the slots and update ops are added to it
   * @param learningRate η of θ ← θ − η (m + λ ḡw) (Algorithm 2 line 16), finite and ≥ 0
   * @param beta1 β1, the decay of the momentum m, in [0, 1)
   * @param beta2 β2, the decay of the Fisher EMAs R and C, or f
   *     (used as the bias-corrected β̂2), in [0, 1)
   * @param epsilon ε, the upper bound of the adaptive ε̂ = min(ε, ε2 RMS(g)) (Algorithm 2 line 10),
   *     finite and ≥ 0
   */
  public FAdafactor(Graph graph, float learningRate, float beta1, float beta2, float epsilon) {
    this(graph, DEFAULT_NAME, learningRate, beta1, beta2, epsilon);
  }

  /**
   * FAdafactor named {@code name}, with the paper's defaults.
   *
   * @param graph the graph of the variables to train; the slots and update ops are added to it
   * @param name the optimizer's name: the scope of its ops and the prefix of its {@code
   *     <name>-skipped_steps} counter (not empty)
   * @param learningRate η of θ ← θ − η (m + λ ḡw) (Algorithm 2 line 16), finite and ≥ 0
   */
  public FAdafactor(Graph graph, String name, float learningRate) {
    this(graph, name, FisherOptions.exact(learningRate), FisherOptions.defaults());
  }

  /**
   * FAdafactor named {@code name} with the given β1, β2 and ε (the framework Adam's shape).
   *
   * @param graph the graph of the variables to train; the slots and update ops are added to it
   * @param name the optimizer's name: the scope of its ops and the prefix of its {@code
   *     <name>-skipped_steps} counter (not empty)
   * @param learningRate η of θ ← θ − η (m + λ ḡw) (Algorithm 2 line 16), finite and ≥ 0
   * @param beta1 β1, the decay of the momentum m, in [0, 1)
   * @param beta2 β2, the decay of the Fisher EMAs R and C, or f
   *     (used as the bias-corrected β̂2), in [0, 1)
   * @param epsilon ε, the upper bound of the adaptive ε̂ = min(ε, ε2 RMS(g)) (Algorithm 2 line 10),
   *     finite and ≥ 0
   */
  public FAdafactor(
      Graph graph, String name, float learningRate, float beta1, float beta2, float epsilon) {
    this(
        graph,
        name,
        FisherOptions.exact(learningRate),
        FisherOptions.ofAdam(beta1, beta2, epsilon));
  }

  /**
   * FAdafactor with a fixed learning rate and every other hyperparameter from {@code options}.
   *
   * @param graph the graph of the variables to train; the slots and update ops are added to it
   * @param name the optimizer's name: the scope of its ops and the prefix of its {@code
   *     <name>-skipped_steps} counter (not empty)
   * @param learningRate η of θ ← θ − η (m + λ ḡw) (Algorithm 2 line 16), finite and ≥ 0
   * @param options β1, β2, ε, ε2, c, λ, ρ, {@code factoredMinDim} and the non-finite policy
   *     ({@code adafactorEpsilon} is ignored)
   */
  public FAdafactor(Graph graph, String name, double learningRate, FisherOptions options) {
    super(graph, name, LearningRate.of(learningRate), options, Algorithm.FADAFACTOR);
  }

  /**
   * FAdafactor whose learning rate is a scalar graph operand (a placeholder, or a schedule
   * computed from the step), read at every step.
   *
   * @param graph the graph of the variables to train; the slots and update ops are added to it
   * @param learningRate η_t, a scalar operand of any numeric dtype in {@code graph}
   */
  public FAdafactor(Graph graph, Operand<? extends TNumber> learningRate) {
    this(graph, DEFAULT_NAME, learningRate, FisherOptions.defaults());
  }

  /**
   * FAdafactor with a learning-rate operand and every other hyperparameter from {@code options}.
   *
   * @param graph the graph of the variables to train; the slots and update ops are added to it
   * @param name the optimizer's name: the scope of its ops and the prefix of its {@code
   *     <name>-skipped_steps} counter (not empty)
   * @param learningRate η_t, a scalar operand of any numeric dtype in {@code graph}
   * @param options β1, β2, ε, ε2, c, λ, ρ, {@code factoredMinDim} and the non-finite policy
   *     ({@code adafactorEpsilon} is ignored)
   */
  public FAdafactor(
      Graph graph, String name, Operand<? extends TNumber> learningRate, FisherOptions options) {
    super(graph, name, LearningRate.of(learningRate), options, Algorithm.FADAFACTOR);
  }

  /**
   * FAdafactor whose η_t is a schedule ({@link Schedules}) of its own step counter {@code
   * <name>-iterations} ({@link #iterations()}), which every {@code applyGradients} run advances.
   *
   * @param graph the graph of the variables to train; the slots and update ops are added to it
   * @param name the optimizer's name: the scope of its ops and the prefix of its counters (not
   *     empty)
   * @param schedule η_t from the steps taken before this one
   * @param options the other hyperparameters
   */
  public FAdafactor(Graph graph, String name, FisherTrainStep.Schedule schedule, FisherOptions options) {
    super(graph, name, schedule, options, Algorithm.FADAFACTOR);
  }
}
