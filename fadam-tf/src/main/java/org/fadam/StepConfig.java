package org.fadam;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.function.Predicate;
import org.tensorflow.Graph;
import org.tensorflow.ndarray.Shape;
import org.tensorflow.types.family.TType;

/**
 * The settings of a {@link FisherTrainStep}: the optimizer, the inputs, the variables, the loss
 * and the predictions, XLA and the name. {@link FisherTrainStep.Builder} is the public face of
 * this class (the fluent setters return it).
 *
 * @param <B> the builder type the setters return
 */
abstract class StepConfig<B extends StepConfig<B>> {
  final Graph graph;
  Algorithm algorithm = Algorithm.FADAM;
  double learningRate = FisherOptions.exact(FisherOptions.LEARNING_RATE_DEFAULT);
  FisherTrainStep.Schedule schedule;
  FisherOptions options = FisherOptions.defaults();
  final Map<String, StepFunctions.InputSpec> inputs = new LinkedHashMap<>();
  List<ResourceVariable<?>> variables = List.of();
  FisherTrainStep.Model model;
  FisherTrainStep.Predictor predictor;
  List<String> serveInputs = List.of();
  boolean jit = true;
  String name = "train_step";
  Predicate<ResourceVariable<?>> decayMask;
  int accumulate = 1;
  boolean microBatchFisher;

  StepConfig(Graph graph) {
    this.graph = Objects.requireNonNull(graph, "graph");
  }

  /** This builder, as its own type. */
  abstract B self();

  /**
   * The optimizer.
   *
   * @param algorithm the algorithm
   * @param learningRate η, finite and ≥ 0 (a {@link #schedule} replaces it)
   * @param options the other hyperparameters
   * @return this builder
   */
  public B algorithm(Algorithm algorithm, double learningRate, FisherOptions options) {
    this.algorithm = Objects.requireNonNull(algorithm, "algorithm");
    this.learningRate = FisherOptions.checkLearningRate(learningRate);
    this.options = Objects.requireNonNull(options, "options");
    return self();
  }

  /**
   * FAdam (Algorithm 1): {@code algorithm(Algorithm.FADAM, …)}.
   *
   * @param learningRate η
   * @param options the other hyperparameters
   * @return this builder
   */
  public B fadam(double learningRate, FisherOptions options) {
    return algorithm(Algorithm.FADAM, learningRate, options);
  }

  /**
   * FAdafactor (Algorithm 2): {@code algorithm(Algorithm.FADAFACTOR, …)}.
   *
   * @param learningRate η
   * @param options the other hyperparameters
   * @return this builder
   */
  public B fadafactor(double learningRate, FisherOptions options) {
    return algorithm(Algorithm.FADAFACTOR, learningRate, options);
  }

  /**
   * The paper's Adam (Algorithm 3), for comparisons: {@code algorithm(Algorithm.ADAM, …)}.
   *
   * @param learningRate η
   * @param options the other hyperparameters
   * @return this builder
   */
  public B adam(double learningRate, FisherOptions options) {
    return algorithm(Algorithm.ADAM, learningRate, options);
  }

  /**
   * The paper's Adafactor (Algorithm 4), FAdafactor's baseline; its ε is {@link
   * FisherOptions#adafactorEpsilon()} (see {@link PaperAdafactor}).
   *
   * @param learningRate η
   * @param options the other hyperparameters
   * @return this builder
   */
  public B adafactor(double learningRate, FisherOptions options) {
    return algorithm(Algorithm.ADAFACTOR, learningRate, options);
  }

  /**
   * A learning-rate schedule (replaces the fixed rate).
   *
   * @param s η_t as a function of the step count
   * @return this builder
   */
  public B schedule(FisherTrainStep.Schedule s) {
    this.schedule = s;
    return self();
  }

  /**
   * Which parameters the weight decay λ applies to, as optax's {@code mask}: true = decayed. The
   * others take the step of λ = 0, bit for bit. The default decays every parameter; {@link
   * WeightDecayMasks#matrices()} is the usual rule (layer-norm gains and biases excluded).
   *
   * @param decayed true for each parameter to decay
   * @return this builder
   */
  public B weightDecayMask(Predicate<ResourceVariable<?>> decayed) {
    this.decayMask = Objects.requireNonNull(decayed, "weightDecayMask");
    return self();
  }

  /**
   * Gradient accumulation, as {@code optax.MultiSteps}: each {@code train} (or {@code
   * apply_gradients}) call adds its gradients to sums (state variables, exported and
   * checkpointed), and every k-th call steps the optimizer on their mean and clears them; only
   * those calls move the parameters, slots and counters ({@link FisherTrainStep.Result#applied}).
   * Under SKIP a non-finite micro-batch drops the whole accumulated step (the sum is not finite
   * at the k-th call, which is counted as a skipped step); under ERROR it is refused at its own
   * call, changing nothing.
   *
   * @param k the calls per optimizer step, ≥ 1 (1: no accumulation, the default)
   * @return this builder
   * @throws IllegalArgumentException if {@code k < 1}
   */
  public B accumulate(int k) {
    if (k < 1) {
      throw new IllegalArgumentException("accumulate k must be ≥ 1; got " + k);
    }
    this.accumulate = k;
    return self();
  }

  /**
   * The Fisher from micro-batches (paper Eq. 20): with {@link #accumulate} k &gt; 1, the Fisher EMA
   * of the k-th call is fed with the mean of the k micro-batches' squared gradients, (1/k) Σ g_i²,
   * instead of the square of their mean, ((1/k) Σ g_i)² (Eq. 21, the default and the paper's
   * algorithms). The squares are summed in a state variable per parameter, {@code
   * <parameter>-grad_sq_sum}, exported and checkpointed; the rest of the step (m, the clip, the
   * adaptive ε) still reads the mean gradient. See docs/design.md, "The Fisher from micro-batches".
   *
   * @param on whether the Fisher EMA takes the micro-batches' mean square
   * @return this builder
   */
  public B microBatchFisher(boolean on) {
    this.microBatchFisher = on;
    return self();
  }

  /**
   * An input of the step (a placeholder in the outer graph and in the step function).
   *
   * @param name the input's name
   * @param type its dtype
   * @param shape its shape (-1 for the batch dimension)
   * @return this builder
   */
  public B input(String name, Class<? extends TType> type, Shape shape) {
    if (inputs.put(name, new StepFunctions.InputSpec(type, shape)) != null) {
      throw new IllegalArgumentException("input '" + name + "' is declared twice");
    }
    return self();
  }

  /**
   * The trainable variables.
   *
   * @param vars the parameters
   * @return this builder
   */
  public B variables(List<? extends ResourceVariable<?>> vars) {
    this.variables = List.copyOf(vars);
    return self();
  }

  /**
   * The model's loss.
   *
   * @param m the loss function
   * @return this builder
   */
  public B loss(FisherTrainStep.Model m) {
    this.model = m;
    return self();
  }

  /**
   * The model's predictions and the inputs they need (the {@value FisherTrainStep#SERVE} signature).
   *
   * @param p the predictor
   * @param inputNames the inputs it reads
   * @return this builder
   */
  public B predictions(FisherTrainStep.Predictor p, String... inputNames) {
    this.predictor = p;
    this.serveInputs = List.of(inputNames);
    return self();
  }

  /**
   * Whether to XLA-compile the step.
   *
   * @param on true (the default) to compile
   * @return this builder
   */
  public B jit(boolean on) {
    this.jit = on;
    return self();
  }

  /**
   * The name of the step function and its call op.
   *
   * @param n the name (default "train_step")
   * @return this builder
   */
  public B name(String n) {
    this.name = n;
    return self();
  }

  /** Checks that the step can be built. */
  void validate() {
    if (model == null) {
      throw new IllegalStateException("no loss: call loss(...) before build()");
    }
    if (variables.isEmpty()) {
      throw new IllegalStateException("no variables: call variables(...) before build()");
    }
    if (decayMask != null) {
      if (options.weightDecay() == 0) {
        throw new IllegalArgumentException(
            "weightDecayMask is set but weightDecay is 0: set FisherOptions.weightDecay(λ > 0) or drop the mask");
      }
      if (variables.stream().noneMatch(decayMask)) {
        throw new IllegalArgumentException("weightDecayMask decays none of the variables "
            + variables.stream().map(ResourceVariable::name).toList()
            + " (a typo?); to decay none, set FisherOptions.weightDecay(0)");
      }
    }
    if (microBatchFisher && accumulate < 2) {
      throw new IllegalArgumentException("microBatchFisher(true) needs accumulate(k ≥ 2); got"
          + " accumulate(" + accumulate + "), where the mean of one micro-batch's squared gradient"
          + " is the square of its mean (the default Fisher)");
    }
    for (String n : serveInputs) {
      if (!inputs.containsKey(n)) {
        throw new IllegalArgumentException("prediction input '" + n + "' is not a declared input");
      }
    }
  }

  /** What the step functions are built from. */
  StepFunctions.Spec functionSpec() {
    return new StepFunctions.Spec(name, inputs, model, algorithm, options, learningRate, schedule, jit,
        predictor, serveInputs, decayMask == null ? v -> true : decayMask, accumulate, microBatchFisher);
  }
}
