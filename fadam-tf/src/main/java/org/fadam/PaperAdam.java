package org.fadam;

import org.tensorflow.Graph;
import org.tensorflow.Operand;
import org.tensorflow.types.family.TNumber;

/**
 * Adam as the paper writes it (Algorithm 3 of arXiv 2405.12807v2), for side-by-side comparisons:
 * the EMAs m and f are stored uncorrected and bias-corrected where used, the step is clipped by
 * its RMS (threshold c) and decoupled weight decay η λ θ is applied. Not the framework {@code Adam}
 * (which has neither clip nor weight decay).
 *
 * <table>
 *   <caption>Symbols</caption>
 *   <tr><th>paper</th><th>here</th></tr>
 *   <tr><td>θ</td><td>the variable</td></tr>
 *   <tr><td>m</td><td>slot {@value FisherOptimizer#FIRST_MOMENT}</td></tr>
 *   <tr><td>f</td><td>slot {@value FisherOptimizer#FIM} (Adam's second moment)</td></tr>
 *   <tr><td>t</td><td>slot {@value FisherOptimizer#STEP} (per variable)</td></tr>
 *   <tr><td>η</td><td>{@code learningRate}</td></tr>
 *   <tr><td>β1, β2, ε, c, λ</td><td>{@link FisherOptions}</td></tr>
 * </table>
 *
 * <pre>
 * t ← t + 1
 * f ← β2 f + (1 − β2) g²;  m ← β1 m + (1 − β1) g        (f0 = m0 = 0)
 * ḡ ← (m / (1 − β1^t)) / (sqrt(f / (1 − β2^t)) + ε)
 * ḡ ← ḡ / max(1, RMS(ḡ)/c)
 * θ ← θ − η (ḡ + λ θ)
 * </pre>
 * ε2 and ρ are not used.
 */
public final class PaperAdam extends FisherOptimizer {

  /** The default name of the optimizer's ops. */
  public static final String DEFAULT_NAME = "Adam";

  /**
   * PaperAdam with the paper's defaults and learning rate {@value
   * FisherOptions#LEARNING_RATE_DEFAULT}.
   *
   * @param graph the graph of the variables to train; the slots and update ops are added to it
   */
  public PaperAdam(Graph graph) {
    this(graph, DEFAULT_NAME, FisherOptions.LEARNING_RATE_DEFAULT);
  }

  /**
   * PaperAdam with the paper's defaults.
   *
   * @param graph the graph of the variables to train; the slots and update ops are added to it
   * @param learningRate η of θ ← θ − η (ḡ + λ θ) (Algorithm 3 line 10), finite and ≥ 0
   */
  public PaperAdam(Graph graph, float learningRate) {
    this(graph, DEFAULT_NAME, learningRate);
  }

  /**
   * PaperAdam with the given β1, β2 and ε (the framework Adam's constructor shape).
   *
   * @param graph the graph of the variables to train; the slots and update ops are added to it
   * @param learningRate η of θ ← θ − η (ḡ + λ θ) (Algorithm 3 line 10), finite and ≥ 0
   * @param beta1 β1, the decay of the momentum m (bias-corrected where used), in [0, 1)
   * @param beta2 β2, the decay of the second moment f (bias-corrected where used), in [0, 1)
   * @param epsilon ε, added to the bias-corrected √f in the denominator (Algorithm 3 line 8),
   *     finite and ≥ 0
   */
  public PaperAdam(Graph graph, float learningRate, float beta1, float beta2, float epsilon) {
    this(graph, DEFAULT_NAME, learningRate, beta1, beta2, epsilon);
  }

  /**
   * PaperAdam named {@code name}, with the paper's defaults.
   *
   * @param graph the graph of the variables to train; the slots and update ops are added to it
   * @param name the optimizer's name: the scope of its ops and the prefix of its {@code
   *     <name>-skipped_steps} counter (not empty)
   * @param learningRate η of θ ← θ − η (ḡ + λ θ) (Algorithm 3 line 10), finite and ≥ 0
   */
  public PaperAdam(Graph graph, String name, float learningRate) {
    this(graph, name, FisherOptions.exact(learningRate), FisherOptions.defaults());
  }

  /**
   * PaperAdam named {@code name} with the given β1, β2 and ε (the framework Adam's shape).
   *
   * @param graph the graph of the variables to train; the slots and update ops are added to it
   * @param name the optimizer's name: the scope of its ops and the prefix of its {@code
   *     <name>-skipped_steps} counter (not empty)
   * @param learningRate η of θ ← θ − η (ḡ + λ θ) (Algorithm 3 line 10), finite and ≥ 0
   * @param beta1 β1, the decay of the momentum m (bias-corrected where used), in [0, 1)
   * @param beta2 β2, the decay of the second moment f (bias-corrected where used), in [0, 1)
   * @param epsilon ε, added to the bias-corrected √f in the denominator (Algorithm 3 line 8),
   *     finite and ≥ 0
   */
  public PaperAdam(
      Graph graph, String name, float learningRate, float beta1, float beta2, float epsilon) {
    this(
        graph,
        name,
        FisherOptions.exact(learningRate),
        FisherOptions.ofAdam(beta1, beta2, epsilon));
  }

  /**
   * PaperAdam with a fixed learning rate and every other hyperparameter from {@code options}.
   *
   * @param graph the graph of the variables to train; the slots and update ops are added to it
   * @param name the optimizer's name: the scope of its ops and the prefix of its {@code
   *     <name>-skipped_steps} counter (not empty)
   * @param learningRate η of θ ← θ − η (ḡ + λ θ) (Algorithm 3 line 10), finite and ≥ 0
   * @param options β1, β2, ε, c, λ and the non-finite policy (ε2, ρ, {@code adafactorEpsilon} and
   *     {@code factoredMinDim} are ignored)
   */
  public PaperAdam(Graph graph, String name, double learningRate, FisherOptions options) {
    super(graph, name, LearningRate.of(learningRate), options, Algorithm.ADAM);
  }

  /**
   * PaperAdam whose learning rate is a scalar graph operand (a placeholder, or a schedule
   * computed from the step), read at every step.
   *
   * @param graph the graph of the variables to train; the slots and update ops are added to it
   * @param learningRate η_t, a scalar operand of any numeric dtype in {@code graph}
   */
  public PaperAdam(Graph graph, Operand<? extends TNumber> learningRate) {
    this(graph, DEFAULT_NAME, learningRate, FisherOptions.defaults());
  }

  /**
   * PaperAdam with a learning-rate operand and every other hyperparameter from {@code options}.
   *
   * @param graph the graph of the variables to train; the slots and update ops are added to it
   * @param name the optimizer's name: the scope of its ops and the prefix of its {@code
   *     <name>-skipped_steps} counter (not empty)
   * @param learningRate η_t, a scalar operand of any numeric dtype in {@code graph}
   * @param options β1, β2, ε, c, λ and the non-finite policy (ε2, ρ, {@code adafactorEpsilon} and
   *     {@code factoredMinDim} are ignored)
   */
  public PaperAdam(
      Graph graph, String name, Operand<? extends TNumber> learningRate, FisherOptions options) {
    super(graph, name, LearningRate.of(learningRate), options, Algorithm.ADAM);
  }

  /**
   * PaperAdam whose η_t is a schedule ({@link Schedules}) of its own step counter {@code
   * <name>-iterations} ({@link #iterations()}), which every {@code applyGradients} run advances.
   *
   * @param graph the graph of the variables to train; the slots and update ops are added to it
   * @param name the optimizer's name: the scope of its ops and the prefix of its counters (not
   *     empty)
   * @param schedule η_t from the steps taken before this one
   * @param options the other hyperparameters
   */
  public PaperAdam(Graph graph, String name, FisherTrainStep.Schedule schedule, FisherOptions options) {
    super(graph, name, schedule, options, Algorithm.ADAM);
  }
}
