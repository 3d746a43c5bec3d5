package org.fadam;

import org.tensorflow.Graph;
import org.tensorflow.Operand;
import org.tensorflow.types.family.TNumber;

/**
 * Adafactor as the paper writes it (Algorithm 4 of arXiv 2405.12807v2, after Shazeer &amp; Stern
 * and their reference implementation), the baseline of {@link FAdafactor}: the same factoring
 * (tensors of rank ≥ 2 whose last two dimensions are both ≥ {@link FisherOptions#factoredMinDim()}
 * keep only R and C; every other tensor keeps the full diagonal f), but R0 = C0 = 0 (f0 = 0), ε
 * added to g² inside the EMAs, no adaptive ε and no ρ, the learning rate inside the momentum and
 * weight decay λθ without the learning rate.
 *
 * <table>
 *   <caption>Paper symbols</caption>
 *   <tr><th>paper</th><th>option</th><th>default (Alg. 4 l.1)</th><th>slot</th></tr>
 *   <tr><td>η</td><td>learning rate</td><td>{@value FisherOptions#LEARNING_RATE_DEFAULT} (Adam's)</td><td></td></tr>
 *   <tr><td>β1</td><td>{@code beta1}</td><td>{@value FisherOptions#BETA1_DEFAULT}</td><td></td></tr>
 *   <tr><td>β2</td><td>{@code beta2}</td><td>{@value FisherOptions#BETA2_DEFAULT}</td><td></td></tr>
 *   <tr><td>ε</td><td>{@code adafactorEpsilon}</td><td>{@value FisherOptions#ADAFACTOR_EPSILON_DEFAULT}</td><td></td></tr>
 *   <tr><td>c</td><td>{@code clipThreshold}</td><td>{@value FisherOptions#CLIP_THRESHOLD_DEFAULT}</td><td></td></tr>
 *   <tr><td>λ</td><td>{@code weightDecay}</td><td>{@value FisherOptions#WEIGHT_DECAY_DEFAULT}</td><td></td></tr>
 *   <tr><td>m</td><td></td><td>0</td><td>{@value FisherOptimizer#FIRST_MOMENT}</td></tr>
 *   <tr><td>f</td><td></td><td>0</td><td>{@value FisherOptimizer#FIM} (unfactored)</td></tr>
 *   <tr><td>R, C</td><td></td><td>0</td><td>{@value FisherOptimizer#FIM_ROW}, {@value FisherOptimizer#FIM_COL}</td></tr>
 * </table>
 *
 * <pre>
 * t ← t + 1                                                   (l.4)
 * β̂2 ← β2 (1 − β2^(t−1)) / (1 − β2^t)                         (l.6)
 * R ← β̂2 R + (1 − β̂2)(g² + ε 1_n 1ᵀ_m) 1_m                     (l.7)
 * C ← β̂2 C + (1 − β̂2) 1ᵀ_n (g² + ε 1_n 1ᵀ_m)                   (l.8)
 * f ← R C / 1ᵀ_n R          (unfactored: f ← β̂2 f + (1 − β̂2)(g² + ε))   (l.9)
 * ḡ ← g / √f;   ḡ ← ḡ / max(1, RMS(ḡ)/c)                       (l.10–11)
 * m ← β1 m + (1 − β1) η ḡ                                      (l.12)
 * θ ← θ − (m + λ θ)                                            (l.13)
 * </pre>
 *
 * <p>Its ε is {@link FisherOptions#adafactorEpsilon()} (default 1e-30), not {@link
 * FisherOptions#epsilon()} (1e-8, the other algorithms' ε, which this class ignores together with
 * ε2 and ρ): {@code FisherOptions.defaults()} is Algorithm 4's line 1. The Adam-shaped
 * constructor's {@code epsilon} argument sets Algorithm 4's ε. Note that λ = 0.001 without the
 * learning rate shrinks θ by 0.1 % every step, whatever η is (Algorithm 4 l.13).
 */
public final class PaperAdafactor extends FisherOptimizer {

  /** The default name of the optimizer's ops. */
  public static final String DEFAULT_NAME = "Adafactor";

  /**
   * PaperAdafactor with the paper's defaults and learning rate {@value
   * FisherOptions#LEARNING_RATE_DEFAULT}.
   *
   * @param graph the graph of the variables to train; the slots and update ops are added to it
   */
  public PaperAdafactor(Graph graph) {
    this(graph, DEFAULT_NAME, FisherOptions.LEARNING_RATE_DEFAULT);
  }

  /**
   * PaperAdafactor with the paper's defaults.
   *
   * @param graph the graph of the variables to train; the slots and update ops are added to it
   * @param learningRate η, which Algorithm 4 multiplies into the momentum (m ← β1 m + (1 − β1) η ḡ,
   *     line 12), finite and ≥ 0
   */
  public PaperAdafactor(Graph graph, float learningRate) {
    this(graph, DEFAULT_NAME, learningRate);
  }

  /**
   * PaperAdafactor with the given β1, β2 and ε (the framework Adam's constructor shape; ε is
   * Algorithm 4's, added to g² inside the EMAs).
   *
   * @param graph the graph of the variables to train; the slots and update ops are added to it
   * @param learningRate η, which Algorithm 4 multiplies into the momentum (m ← β1 m + (1 − β1) η ḡ,
   *     line 12), finite and ≥ 0
   * @param beta1 β1, the decay of the momentum m, in [0, 1)
   * @param beta2 β2, the decay of the Fisher EMAs R and C, or f
   *     (used as the bias-corrected β̂2), in [0, 1)
   * @param epsilon Algorithm 4's ε, added to g² inside the Fisher EMAs (lines 7–8), finite and ≥ 0
   */
  public PaperAdafactor(Graph graph, float learningRate, float beta1, float beta2, float epsilon) {
    this(graph, DEFAULT_NAME, learningRate, beta1, beta2, epsilon);
  }

  /**
   * PaperAdafactor named {@code name}, with the paper's defaults.
   *
   * @param graph the graph of the variables to train; the slots and update ops are added to it
   * @param name the optimizer's name: the scope of its ops and the prefix of its {@code
   *     <name>-skipped_steps} counter (not empty)
   * @param learningRate η, which Algorithm 4 multiplies into the momentum (m ← β1 m + (1 − β1) η ḡ,
   *     line 12), finite and ≥ 0
   */
  public PaperAdafactor(Graph graph, String name, float learningRate) {
    this(graph, name, FisherOptions.exact(learningRate), FisherOptions.defaults());
  }

  /**
   * PaperAdafactor named {@code name} with the given β1, β2 and ε (the framework Adam's shape).
   *
   * @param graph the graph of the variables to train; the slots and update ops are added to it
   * @param name the optimizer's name: the scope of its ops and the prefix of its {@code
   *     <name>-skipped_steps} counter (not empty)
   * @param learningRate η, which Algorithm 4 multiplies into the momentum (m ← β1 m + (1 − β1) η ḡ,
   *     line 12), finite and ≥ 0
   * @param beta1 β1, the decay of the momentum m, in [0, 1)
   * @param beta2 β2, the decay of the Fisher EMAs R and C, or f
   *     (used as the bias-corrected β̂2), in [0, 1)
   * @param epsilon Algorithm 4's ε, added to g² inside the Fisher EMAs (lines 7–8), finite and ≥ 0
   */
  public PaperAdafactor(
      Graph graph, String name, float learningRate, float beta1, float beta2, float epsilon) {
    this(
        graph,
        name,
        FisherOptions.exact(learningRate),
        FisherOptions.ofAdafactor(beta1, beta2, epsilon));
  }

  /**
   * PaperAdafactor with a fixed learning rate and every other hyperparameter from {@code options}.
   *
   * @param graph the graph of the variables to train; the slots and update ops are added to it
   * @param name the optimizer's name: the scope of its ops and the prefix of its {@code
   *     <name>-skipped_steps} counter (not empty)
   * @param learningRate η, which Algorithm 4 multiplies into the momentum (m ← β1 m + (1 − β1) η ḡ,
   *     line 12), finite and ≥ 0
   * @param options β1, β2, {@code adafactorEpsilon}, c, λ, {@code factoredMinDim} and the
   *     non-finite policy (ε, ε2 and ρ are ignored)
   */
  public PaperAdafactor(Graph graph, String name, double learningRate, FisherOptions options) {
    super(graph, name, LearningRate.of(learningRate), options, Algorithm.ADAFACTOR);
  }

  /**
   * PaperAdafactor whose learning rate is a scalar graph operand (a placeholder, or a schedule
   * computed from the step), read at every step.
   *
   * @param graph the graph of the variables to train; the slots and update ops are added to it
   * @param learningRate η_t, a scalar operand of any numeric dtype in {@code graph}
   */
  public PaperAdafactor(Graph graph, Operand<? extends TNumber> learningRate) {
    this(graph, DEFAULT_NAME, learningRate, FisherOptions.defaults());
  }

  /**
   * PaperAdafactor with a learning-rate operand and every other hyperparameter from {@code
   * options}.
   *
   * @param graph the graph of the variables to train; the slots and update ops are added to it
   * @param name the optimizer's name: the scope of its ops and the prefix of its {@code
   *     <name>-skipped_steps} counter (not empty)
   * @param learningRate η_t, a scalar operand of any numeric dtype in {@code graph}
   * @param options β1, β2, {@code adafactorEpsilon}, c, λ, {@code factoredMinDim} and the
   *     non-finite policy (ε, ε2 and ρ are ignored)
   */
  public PaperAdafactor(
      Graph graph, String name, Operand<? extends TNumber> learningRate, FisherOptions options) {
    super(graph, name, LearningRate.of(learningRate), options, Algorithm.ADAFACTOR);
  }

  /**
   * PaperAdafactor whose η_t is a schedule ({@link Schedules}) of its own step counter {@code
   * <name>-iterations} ({@link #iterations()}), which every {@code applyGradients} run advances.
   *
   * @param graph the graph of the variables to train; the slots and update ops are added to it
   * @param name the optimizer's name: the scope of its ops and the prefix of its counters (not
   *     empty)
   * @param schedule η_t from the steps taken before this one
   * @param options the other hyperparameters
   */
  public PaperAdafactor(Graph graph, String name, FisherTrainStep.Schedule schedule, FisherOptions options) {
    super(graph, name, schedule, options, Algorithm.ADAFACTOR);
  }
}
