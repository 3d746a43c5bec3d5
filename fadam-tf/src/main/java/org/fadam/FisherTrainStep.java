package org.fadam;

import java.io.IOException;
import java.nio.file.Path;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.tensorflow.Graph;
import org.tensorflow.Operand;
import org.tensorflow.Output;
import org.tensorflow.SavedModelBundle;
import org.tensorflow.Session;
import org.tensorflow.Signature;
import org.tensorflow.Tensor;
import org.tensorflow.op.Ops;
import org.tensorflow.op.core.Placeholder;
import org.tensorflow.types.TFloat32;
import org.tensorflow.types.TInt64;
import org.tensorflow.types.family.TFloating;
import org.tensorflow.types.family.TNumber;

/**
 * One train step — forward pass, gradients and the update of an {@link Algorithm} — as a single
 * function over resource variables, compiled as a whole by XLA (on by default), and its export as
 * a SavedModel that carries every variable: parameters, slots, per-variable step counters, {@code
 * iterations} and {@code skipped_steps}. The same step also comes in two halves, {@link
 * #gradients} and {@link #applyGradients}, so that a data-parallel job can average its replicas'
 * gradients between them.
 *
 * <p>This class is the facade: the builder and the runners. Its parts are the state ({@link
 * TrainState}), what is built from the model ({@link StepFunctions}: inputs, functions, signatures),
 * the calls ({@link StepRunner}), the gradient keys ({@link GradientKeys}), SavedModel writing and
 * reading ({@link SavedModels}) and XLA error translation ({@link XlaErrors}).
 *
 * <pre>{@code
 * var w = ResourceVariable.create(tf, "w", tf.withInitScope().constant(new float[2][3]));
 * FisherTrainStep step = FisherTrainStep.builder(graph)
 *     .algorithm(Algorithm.FADAM, 0.01, FisherOptions.defaults())
 *     .input("x", TFloat32.class, Shape.of(-1, 2))
 *     .variables(List.of(w))
 *     .loss((ops, in, vars) -> ops.math.mean(                   // typed, no casts
 *         ops.math.square(ops.linalg.matMul(in.float32("x"), vars.float32("w"))),
 *         ops.constant(new int[] {0, 1})))
 *     .build();
 * try (Session s = new Session(graph)) {
 *   s.initialize();
 *   float loss = step.train(s, Map.of("x", batch)).loss();
 *   step.export(s, Path.of("model"));
 * }
 * }</pre>
 */
public final class FisherTrainStep {

  /** Name of the train signature. */
  public static final String TRAIN = "train";
  /** Name of the predict signature. */
  public static final String SERVE = "serve_default";
  /** Name of the loss output of {@link #TRAIN}. */
  public static final String LOSS = "loss";
  /** Name of the step output of {@link #TRAIN} (the {@code iterations} after the step). */
  public static final String STEP = "step";
  /** Name of the predictions output of {@link #SERVE}. */
  public static final String PREDICTIONS = "predictions";
  /**
   * Name of the gradients signature, the first half of a {@value #TRAIN} step: the same inputs →
   * {@value #LOSS} and one gradient per parameter, keyed by {@link #gradientKey}.
   */
  public static final String GRADIENTS = "gradients";
  /**
   * Name of the apply-gradients signature, the second half of a {@value #TRAIN} step: one gradient
   * per parameter, keyed by {@link #gradientKey} → {@value #STEP}, the same update as {@value #TRAIN}.
   */
  public static final String APPLY_GRADIENTS = "apply_gradients";
  /** Prefix of the gradient keys of {@value #GRADIENTS} and {@value #APPLY_GRADIENTS}. */
  public static final String GRADIENT_PREFIX = "grad_";
  /** The stateless gradients signature: inputs, parameters' values → loss, gradients. */
  public static final String STATELESS_GRADIENTS = "stateless_gradients";
  /** The stateless apply signature: every state value, gradients → new values, finite. */
  public static final String STATELESS_APPLY = "stateless_apply";
  /** Prefix of the value keys of the stateless signatures, followed as in {@link #gradientKey}. */
  public static final String VARIABLE_PREFIX = "var_";
  /** Name of the output that says whether every gradient of the step was finite. */
  public static final String FINITE = "finite";
  /**
   * Name of the output that says whether the optimizer stepped: the call ended an accumulation
   * window (every call without {@link Builder#accumulate}) and, under SKIP and ERROR, its
   * gradients were finite.
   */
  public static final String APPLIED = "applied";

  /** The loss as a function of the inputs and the variables' current values. */
  @FunctionalInterface
  public interface Model {
    /**
     * The loss.
     *
     * @param tf ops of the step function's graph
     * @param inputs the step's inputs by name, typed: {@code inputs.float32("x")}
     * @param variables each variable's value by {@link ResourceVariable#name()}, typed:
     *     {@code variables.float32("w")}, {@code variables.get("w", TFloat32.class)}
     * @return a float scalar
     */
    Operand<? extends TFloating> loss(Ops tf, Operands inputs, Operands variables);
  }

  /** Predictions as a function of the inputs and the variables' values. */
  @FunctionalInterface
  public interface Predictor {
    /**
     * The predictions.
     *
     * @param tf ops of the graph the predictions are built in
     * @param inputs the step's inputs by name, as for {@link Model#loss}
     * @param variables each variable's value by {@link ResourceVariable#name()}
     * @return the predictions
     */
    Operand<?> predict(Ops tf, Operands inputs, Operands variables);
  }

  /** A learning rate computed in the graph from the number of steps taken before this one. */
  @FunctionalInterface
  public interface Schedule {
    /**
     * η at a step.
     *
     * @param tf ops of the step function's graph
     * @param iterations the steps taken before this one (int64 scalar)
     * @return η_t, a scalar
     */
    Operand<? extends TNumber> learningRate(Ops tf, Operand<TInt64> iterations);
  }

  /**
   * What one call of {@link #train} returned.
   *
   * @param loss the loss on the batch, at the parameters before the step
   * @param step the number of steps taken, after this one
   * @param finite whether every gradient was finite (false: under SKIP the step was skipped, under
   *     PROPAGATE it was taken; ERROR throws instead); with accumulation, the window's sum so far
   * @param applied whether the optimizer stepped ({@value #APPLIED}): with {@link
   *     Builder#accumulate} only every k-th call does
   * @param telemetry what the step reports about itself (the {@link StepTelemetry#NAMES} outputs)
   */
  public record Result(float loss, long step, boolean finite, boolean applied, StepTelemetry telemetry) {}

  private final Graph graph;
  private final TrainState state;
  private final StepFunctions functions;
  private final StepRunner runner;
  /** The Fisher estimates built so far, by parameter. */
  private final Map<ResourceVariable<?>, Operand<? extends TFloating>> fishers = new java.util.HashMap<>();

  private FisherTrainStep(Builder b) {
    this.graph = b.graph;
    this.state = new TrainState(graph, b.name, b.algorithm, b.options, b.variables, b.accumulate,
        b.microBatchFisher);
    this.functions = new StepFunctions(graph, b.functionSpec(), state);
    this.runner = new StepRunner(graph, functions, state);
    ResourceSaver.build(graph, state.all());
  }

  /**
   * Runs one step. Calls are serialized (one step at a time per train step object), so threads
   * sharing a session each get a step of their own and every step is counted once. Under {@link
   * FisherOptions.NonFinitePolicy#ERROR} a non-finite gradient leaves every variable unchanged and
   * throws naming the variable.
   *
   * @param session a session of the step's graph
   * @param feeds a tensor for every input, by name
   * @return the loss, the step count after it, whether it was finite and applied, and its
   *     telemetry
   * @throws IllegalStateException if XLA cannot compile the step (naming the op) or on ERROR
   */
  public synchronized Result train(Session session, Map<String, ? extends Tensor> feeds) {
    return runner.train(session, feeds);
  }

  /**
   * The first half of {@link #train}: the loss and every parameter's gradient on a batch, with no
   * variable changed. {@link #applyGradients} of these gradients is {@link #train} of the batch,
   * bit for bit; a data-parallel job averages the gradients of its replicas in between.
   *
   * @param session a session of the step's graph
   * @param feeds a tensor for every input, by name
   * @return the loss and the gradients (close it)
   */
  public synchronized StepGradients gradients(Session session, Map<String, ? extends Tensor> feeds) {
    return runner.gradients(session, feeds);
  }

  /**
   * The second half of {@link #train}: the update of every parameter, slot and counter from the
   * given gradients (one per parameter, keyed by {@link #gradientKey}), under the same non-finite
   * policy. Serialized with {@link #train}.
   *
   * @param session a session of the step's graph
   * @param gradientsByKey one gradient per parameter
   * @return the number of steps taken, after this one
   * @throws IllegalArgumentException if a gradient is missing or unknown
   * @throws IllegalStateException on a non-finite gradient under ERROR (nothing changed), or if
   *     XLA cannot compile the update
   */
  public synchronized long applyGradients(Session session, Map<String, ? extends Tensor> gradientsByKey) {
    return runner.applyGradients(session, gradientsByKey);
  }

  /**
   * Exports a SavedModel to {@code dir} (which must not exist yet): the {@value #TRAIN}, {@value
   * #GRADIENTS}, {@value #APPLY_GRADIENTS}, {@value #STATELESS_GRADIENTS}, {@value
   * #STATELESS_APPLY} and, with a predictor, {@value #SERVE} signatures, a checkpoint of every variable, and the {@code variables} /
   * {@code trainable_variables} collections (parameters trainable; slots and counters not)
   * through which Python TensorFlow sees them as variables. Written beside and renamed into place
   * ({@link AtomicDirectory#create}): a crash never leaves a partial export under {@code dir}.
   *
   * @param session the session whose variables are saved
   * @param dir a directory that does not exist yet
   * @throws IOException if writing fails
   */
  public void export(Session session, Path dir) throws IOException {
    SavedModels.export(session, dir, false, null, graph, functions.signatures(), state);
  }

  /**
   * Exports like {@link #export}, replacing what {@code dir} holds only once the new export is
   * complete ({@link AtomicDirectory#replace}): a crash at any moment leaves the previous export
   * or the new one, whole.
   *
   * @param session the session whose variables are saved
   * @param dir the export's directory (it may exist)
   * @param extra writes more files into the new export before it is put in place (may be null)
   * @throws IOException if writing fails
   */
  public void exportReplacing(Session session, Path dir, AtomicDirectory.Writer extra) throws IOException {
    SavedModels.export(session, dir, true, extra, graph, functions.signatures(), state);
  }

  /**
   * Restores every variable from an exported SavedModel directory (or a checkpoint prefix) into a
   * session of a graph built the same way.
   *
   * @param session a session of this step's graph
   * @param dirOrPrefix a SavedModel directory or a checkpoint prefix
   * @throws IllegalArgumentException naming the missing or mismatched variable
   */
  public void restore(Session session, Path dirOrPrefix) {
    SavedModels.restore(session, dirOrPrefix);
  }

  /**
   * Loads a SavedModel directory (for example one {@link #export} wrote) with the
   * {@value SavedModelBundle#DEFAULT_TAG} tag: its {@value #TRAIN} function continues training.
   *
   * @param dir the SavedModel's directory
   * @return the loaded model (close it)
   * @throws IllegalArgumentException if the directory or its files are missing, or TensorFlow
   *     cannot read them (a truncated checkpoint), naming the directory and the reason
   */
  public static SavedModelBundle loadSavedModel(Path dir) {
    return SavedModels.load(dir);
  }

  /**
   * Numbered checkpoints of this step's variables in {@code dir}, keeping the newest {@code keep}
   * (see {@link CheckpointManager}).
   *
   * @param dir the checkpoints' directory
   * @param keep how many to keep (≥ 1)
   * @return the manager
   */
  public CheckpointManager checkpoints(Path dir, int keep) {
    return new CheckpointManager(graph, state.iterations(), dir, keep);
  }

  /**
   * The key of a parameter's gradient in the {@value #GRADIENTS} and {@value #APPLY_GRADIENTS}
   * signatures: {@value #GRADIENT_PREFIX} and the name with every character outside {@code
   * [A-Za-z0-9_]} replaced by {@code _} ({@code "layer1/w-0"} → {@code "grad_layer1_w_0"}).
   *
   * @param variableName the parameter's {@link ResourceVariable#name()}
   * @return its key
   */
  public static String gradientKey(String variableName) {
    return GradientKeys.of(variableName);
  }

  /** {@return each parameter's gradient key ({@link #gradientKey}), by name, in parameter order} */
  public Map<String, String> gradientKeys() {
    return Collections.unmodifiableMap(functions.keys);
  }

  /** {@return the {@value #TRAIN} signature: every input → loss, step, finite, applied and the {@link StepTelemetry#NAMES} outputs} */
  public Signature trainSignature() {
    return functions.trainSignature(TRAIN);
  }

  /** {@return the {@value #GRADIENTS} signature: every input → loss and each parameter's gradient} */
  public Signature gradientsSignature() {
    return functions.gradientsSignature(GRADIENTS);
  }

  /** {@return the {@value #APPLY_GRADIENTS} signature: each parameter's gradient → step, finite, applied and the {@link StepTelemetry#NAMES} outputs} */
  public Signature applyGradientsSignature() {
    return functions.applySignature(APPLY_GRADIENTS);
  }

  /** {@return each state variable's key in the stateless signatures, by name, in {@link #variables()} order} */
  public Map<String, String> valueKeys() {
    return Collections.unmodifiableMap(functions.stateless.valueKeys);
  }

  /** {@return the {@value #SERVE} signature (the predictor's inputs → predictions), if the builder had a predictor} */
  public Optional<Signature> serveSignature() {
    return functions.serveSignature(SERVE);
  }

  /** {@return the train step's loss output (fetching it runs the step {@link #train} runs)} */
  @SuppressWarnings("unchecked")
  public Output<TFloat32> loss() {
    return (Output<TFloat32>) functions.trainOutput(0);
  }

  /** {@return the train step's step output: steps taken, after this one (fetching it runs the step {@link #train} runs)} */
  @SuppressWarnings("unchecked")
  public Output<TInt64> step() {
    return (Output<TInt64>) functions.trainOutput(1);
  }

  /** {@return the model's loss at the current variables, without a step (held-out evaluation)} */
  public Operand<? extends TFloating> evalLoss() {
    return functions.evalLoss;
  }

  /** {@return the predictions, if the builder had a predictor} */
  public Optional<Operand<?>> predictions() {
    return Optional.ofNullable(functions.predictions);
  }

  /**
   * The outer graph's placeholder of an input.
   *
   * @param name the input's name
   * @return its placeholder
   * @throws IllegalArgumentException naming the known inputs
   */
  public Placeholder<?> input(String name) {
    return functions.input(name);
  }

  /** {@return the trainable variables, in order} */
  public List<ResourceVariable<?>> parameters() {
    return state.parameters();
  }

  /**
   * {@return every variable of the checkpoint: the parameters, then each one's slots and step
   * counter, then {@code iterations} and {@code skipped_steps}, then the run-time hyperparameters
   * ({@link #learningRateScale()}, {@link #weightDecay()})}
   */
  public List<ResourceVariable<?>> variables() {
    return state.all();
  }

  /**
   * A slot of a parameter.
   *
   * @param parameter one of {@link #parameters()}
   * @param slotName {@link Algorithm#M}, {@link Algorithm#FIM}, {@link Algorithm#FIM_ROW},
   *     {@link Algorithm#FIM_COL} or {@link Algorithm#STEP}
   * @return the slot, if the parameter has it
   */
  public Optional<ResourceVariable<?>> slot(ResourceVariable<?> parameter, String slotName) {
    return state.slot(parameter, slotName);
  }

  /**
   * The diagonal Fisher estimate of a parameter, as a graph operand of the parameter's shape (in
   * its working dtype: float64 for float64 parameters, else float32) that reads the step's slots
   * each time it is fetched: the f that the next step's EMA starts from and the last step divided
   * by. For FAdam it is the slot f; for FAdafactor's factored tensors R C / 1ᵀR (Alg. 2 l.9). It
   * is <b>bias-corrected</b>: the paper's β̂2 (Alg. 1, 2 l.6) makes the stored f the corrected
   * estimate f̂ = (1 − β2) Σ β2^(t−i) g_i² / (1 − β2^t) itself (f0 = 1 is forgotten at t = 1;
   * before any step it is that 1). For Adam it is f / (1 − β2^t) (Alg. 3 l.6; 0 before any step);
   * for Adafactor its f, ε inside (Alg. 4 l.9).
   *
   * <p>What it estimates: the EMA of the squared <em>mean-batch</em> gradient (Eq. 21), about
   * 1/B of the per-example empirical Fisher for batch B where the gradient's mean is small
   * (Eq. 20: E[ḡ²] = mean² + variance/B); with {@link Builder#microBatchFisher} it is the EMA of
   * the micro-batches' mean square, about 1/b for micro-batch b. See docs/fisher.md and {@link
   * Ewc}.
   *
   * @param parameter one of {@link #parameters()}
   * @return the estimate (one operand per parameter, built once)
   * @throws IllegalArgumentException naming the variable if it is not one of the parameters
   */
  public synchronized Operand<? extends TFloating> fisher(ResourceVariable<?> parameter) {
    Operand<? extends TFloating> f = fishers.get(parameter);
    if (f == null) {
      f = state.fisher(Ops.create(graph).withSubScope(functions.spec.name() + "_fisher"), parameter,
          functions.spec.algorithm(), functions.spec.options());
      fishers.put(parameter, f);
    }
    return f;
  }

  /** {@return the {@code iterations} counter: steps taken (skipped ones included)} */
  public ResourceVariable<TInt64> iterations() {
    return state.iterations();
  }

  /** {@return the counter of steps skipped for a non-finite gradient} */
  public ResourceVariable<TInt64> skippedSteps() {
    return state.skippedSteps();
  }

  /**
   * {@return the run-time multiplier of η_t, {@code <name>/hparams/learning_rate_scale} (1 at
   * creation; float32, float64 where a parameter is): a variable of the step, exported and
   * checkpointed, that a Python job changes with {@code .assign}}
   */
  public ResourceVariable<?> learningRateScale() {
    return state.learningRateScale();
  }

  /**
   * {@return λ at run time, {@code <name>/hparams/weight_decay} (the options' λ at creation),
   * exported and checkpointed; empty where the step was built with λ = 0, which builds no decay
   * term}
   */
  public Optional<ResourceVariable<?>> weightDecay() {
    return Optional.ofNullable(state.weightDecay());
  }

  /**
   * Sets the multiplier of η_t for the following steps, whatever the schedule (0 freezes every
   * parameter; the slots still take their EMAs).
   *
   * @param session a session of the step's graph
   * @param scale finite and ≥ 0
   * @throws IllegalArgumentException naming the value if it is negative or not finite
   */
  public void setLearningRateScale(Session session, double scale) {
    runner.set(session, state.learningRateScale(), "learning_rate_scale", scale);
  }

  /**
   * Sets λ for the following steps (the decayed parameters' only: see {@link
   * Builder#weightDecayMask}).
   *
   * @param session a session of the step's graph
   * @param weightDecay λ, finite and ≥ 0
   * @throws IllegalArgumentException naming the value if it is negative or not finite
   * @throws IllegalStateException if the step was built with λ = 0 (it has no decay term)
   */
  public void setWeightDecay(Session session, double weightDecay) {
    if (state.weightDecay() == null) {
      throw new IllegalStateException("the step was built with weightDecay 0, so it has no decay term"
          + " to set; build it with FisherOptions.weightDecay(λ > 0) to change λ at run time");
    }
    runner.set(session, state.weightDecay(), "weight_decay", weightDecay);
  }

  /** {@return the number of scalar parameters} */
  public long parameterCount() {
    return state.parameters().stream().mapToLong(p -> p.shape().size()).sum();
  }

  /** {@return the bytes of optimizer state: slots, step counters and the two global counters} */
  public long optimizerStateBytes() {
    return state.optimizerStateBytes();
  }

  /** {@return the algorithm the step computes} */
  public Algorithm algorithm() {
    return functions.spec.algorithm();
  }

  /** {@return the hyperparameters other than the learning rate} */
  public FisherOptions options() {
    return functions.spec.options();
  }

  /** {@return whether the step is XLA-compiled} */
  public boolean jit() {
    return functions.spec.jit();
  }

  /** {@return the name of the step function {@link #train} runs (its HLO module in an XLA dump carries it)} */
  public String functionName() {
    return functions.trainFunctionName();
  }

  /**
   * A builder; {@link Builder#build()} adds the variables, the step functions and their calls, and
   * the saver.
   *
   * @param graph the graph to build in
   * @return a builder with FAdam and the paper's defaults
   */
  public static Builder builder(Graph graph) {
    return new Builder(graph);
  }

  /** Collects the step's settings (the fluent setters) and builds the step. */
  public static final class Builder extends StepConfig<Builder> {

    private Builder(Graph graph) {
      super(graph);
    }

    @Override
    Builder self() {
      return this;
    }

    /**
     * Builds the step.
     *
     * @return the step
     * @throws IllegalStateException if the loss or the variables are missing
     * @throws IllegalArgumentException naming an input, variable or dtype that does not fit
     */
    public FisherTrainStep build() {
      validate();
      return new FisherTrainStep(this);
    }
  }
}
