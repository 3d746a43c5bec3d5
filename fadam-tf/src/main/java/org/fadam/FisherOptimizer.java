package org.fadam;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Deque;
import java.util.HashSet;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.WeakHashMap;
import java.util.function.Predicate;
import org.tensorflow.Graph;
import org.tensorflow.GraphOperation;
import org.tensorflow.Operand;
import org.tensorflow.Output;
import org.tensorflow.framework.optimizers.Optimizer;
import org.tensorflow.ndarray.Shape;
import org.tensorflow.op.Op;
import org.tensorflow.op.Ops;
import org.tensorflow.op.core.Variable;
import org.tensorflow.types.TInt64;
import org.tensorflow.types.family.TType;

/**
 * The common base of {@link FAdam}, {@link FAdafactor}, {@link PaperAdam} and {@link
 * PaperAdafactor} on the framework's
 * ref variables ({@code VariableV2}): slots, step counters, gradients with respect to model
 * variables only, and the non-finite policy. The math is the package's one rule of
 * the four algorithms ({@link Algorithm}).
 */
public abstract class FisherOptimizer extends Optimizer {

  /** Slot of m, the momentum of the invariant natural gradient (Adam's first moment). */
  public static final String FIRST_MOMENT = Algorithm.M;
  /** Slot of f, the diagonal empirical Fisher (FAdam, Adam; (F)Adafactor's unfactored tensors). */
  public static final String FIM = Algorithm.FIM;
  /** Slot of R, the row factor of f ((F)Adafactor's factored tensors). */
  public static final String FIM_ROW = Algorithm.FIM_ROW;
  /** Slot of C, the column factor of f ((F)Adafactor's factored tensors). */
  public static final String FIM_COL = Algorithm.FIM_COL;
  /** Slot of t, the variable's own step counter (int64). */
  public static final String STEP = Algorithm.STEP;

  /** Names of the ops of every slot and counter any FisherOptimizer created, per graph. */
  private static final Map<Graph, Set<String>> OWN_STATE =
      Collections.synchronizedMap(new WeakHashMap<>());

  private final Algorithm algorithm;
  private final String name;
  /** η, fixed or an operand; null with a schedule. */
  private final LearningRate learningRate;
  /** η_t as a function of {@link #iterations}; null without a schedule. */
  private final FisherTrainStep.Schedule schedule;
  /** The optimizer's own step counter, read by its schedule; null without a schedule. */
  private final Variable<TInt64> iterations;
  private final FisherOptions options;
  private final Ops ops;
  /** Variable op name → slot name → slot variable (the step counter under {@link Algorithm#STEP}). */
  private final Map<String, Map<String, Variable<?>>> slots = new LinkedHashMap<>();
  private Variable<TInt64> skippedSteps;
  /** Each {@link #applyGradients} step op's telemetry outputs by name. */
  private final Map<Op, Map<String, Output<?>>> telemetry = new java.util.IdentityHashMap<>();
  /** Which variables (by op name) the weight decay applies to; null: every one. */
  private Predicate<String> decayMask;

  FisherOptimizer(
      Graph graph, String name, LearningRate learningRate, FisherOptions options, Algorithm algorithm) {
    super(graph, checkName(name));
    this.algorithm = algorithm;
    this.name = name;
    this.learningRate = learningRate;
    this.options = java.util.Objects.requireNonNull(options, "`options` must not be null");
    this.ops = Ops.create(graph).withSubScope(name);
    this.schedule = null;
    this.iterations = null;
  }

  /** An optimizer whose η_t is {@code schedule} at its own counter {@code <name>-iterations}. */
  FisherOptimizer(
      Graph graph, String name, FisherTrainStep.Schedule schedule, FisherOptions options, Algorithm algorithm) {
    super(graph, checkName(name));
    this.schedule = java.util.Objects.requireNonNull(schedule, "`schedule` must not be null");
    this.algorithm = algorithm;
    this.name = name;
    this.options = java.util.Objects.requireNonNull(options, "`options` must not be null");
    this.ops = Ops.create(graph).withSubScope(name);
    this.iterations = newVariable(name + "-iterations", Shape.scalar(), TInt64.class, 0);
    this.learningRate = null;
  }

  private static String checkName(String name) {
    if (name == null || name.isEmpty()) {
      throw new IllegalArgumentException("`name` must be a non-empty op name; got " + name);
    }
    return name;
  }

  /**
   * The drop-in optimizer of an algorithm: {@link FAdam}, {@link FAdafactor}, {@link PaperAdam}
   * or {@link PaperAdafactor}.
   *
   * @param algorithm the algorithm
   * @param graph the graph
   * @param name the optimizer's name (its ops' scope)
   * @param learningRate η, finite and ≥ 0
   * @param options the other hyperparameters
   * @return the optimizer
   */
  public static FisherOptimizer create(
      Algorithm algorithm, Graph graph, String name, double learningRate, FisherOptions options) {
    return switch (algorithm) {
      case FADAM -> new FAdam(graph, name, learningRate, options);
      case FADAFACTOR -> new FAdafactor(graph, name, learningRate, options);
      case ADAM -> new PaperAdam(graph, name, learningRate, options);
      case ADAFACTOR -> new PaperAdafactor(graph, name, learningRate, options);
    };
  }

  /**
   * The drop-in optimizer of an algorithm whose η_t is a schedule ({@link Schedules}) of its own
   * step counter ({@link #iterations()}).
   *
   * @param algorithm the algorithm
   * @param graph the graph
   * @param name the optimizer's name (its ops' scope)
   * @param schedule η_t from the steps taken before this one
   * @param options the other hyperparameters
   * @return the optimizer
   */
  public static FisherOptimizer create(
      Algorithm algorithm, Graph graph, String name, FisherTrainStep.Schedule schedule, FisherOptions options) {
    return switch (algorithm) {
      case FADAM -> new FAdam(graph, name, schedule, options);
      case FADAFACTOR -> new FAdafactor(graph, name, schedule, options);
      case ADAM -> new PaperAdam(graph, name, schedule, options);
      case ADAFACTOR -> new PaperAdafactor(graph, name, schedule, options);
    };
  }

  /**
   * The drop-in optimizer of an algorithm with its default name ({@link Algorithm#displayName()})
   * and options.
   *
   * @param algorithm the algorithm
   * @param graph the graph
   * @param learningRate η, finite and ≥ 0
   * @return the optimizer
   */
  public static FisherOptimizer create(Algorithm algorithm, Graph graph, double learningRate) {
    return create(algorithm, graph, algorithm.displayName(), learningRate, algorithm.defaultOptions());
  }

  /**
   * Which variables the weight decay λ applies to, by the variable's op name, as optax's {@code
   * mask}: true = decayed ({@link WeightDecayMasks#excludingNames}). The others take the step of
   * λ = 0, bit for bit. Set it before the first {@code minimize} or {@code applyGradients}.
   *
   * @param decayedNames true for each variable name to decay
   * @return this optimizer
   * @throws IllegalArgumentException if λ is 0 (there is nothing to mask)
   * @throws IllegalStateException if a step was already built
   */
  public FisherOptimizer weightDecayMask(Predicate<String> decayedNames) {
    java.util.Objects.requireNonNull(decayedNames, "weightDecayMask");
    if (options.weightDecay() == 0) {
      throw new IllegalArgumentException(
          "weightDecayMask is set but weightDecay is 0: set FisherOptions.weightDecay(λ > 0) or drop the mask");
    }
    if (!slots.isEmpty()) {
      throw new IllegalStateException("weightDecayMask must be set before the first minimize or applyGradients");
    }
    this.decayMask = decayedNames;
    return this;
  }

  /**
   * {@return the optimizer's step counter {@code <name>-iterations} (int64, saved with the model),
   * which its schedule reads and each {@code applyGradients} run advances by 1, skipped steps
   * included; empty without a schedule}
   */
  public Optional<Variable<TInt64>> iterations() {
    return Optional.ofNullable(iterations);
  }

  /** {@return the algorithm this optimizer computes} */
  public Algorithm algorithm() {
    return algorithm;
  }

  /** {@return the hyperparameters other than the learning rate} */
  public FisherOptions getOptions() {
    return options;
  }

  /**
   * {@return the number of steps skipped for a non-finite gradient ({@link
   * FisherOptions.NonFinitePolicy#SKIP}), an int64 scalar variable saved with the model; empty
   * before the first {@code minimize} or {@code applyGradients}}
   */
  public Optional<Variable<TInt64>> skippedSteps() {
    return Optional.ofNullable(skippedSteps);
  }

  /**
   * Gradients with respect to the model variables the loss depends on: every {@code VariableV2}
   * that is an ancestor of the loss, never a slot or counter of any optimizer (unlike the
   * framework, which takes every {@code VariableV2} in the graph, tensorflow/java#307).
   *
   * @throws IllegalArgumentException if no variable reaches the loss
   */
  @Override
  public <T extends TType> List<GradAndVar<?>> computeGradients(Operand<?> loss) {
    List<Operand<?>> variables = modelVariables(loss);
    if (variables.isEmpty()) {
      throw new IllegalArgumentException(
          "no trainable variable (VariableV2) reaches the loss '" + loss.op().name() + "'");
    }
    return computeGradients(loss, variables);
  }

  /**
   * Gradients of {@code loss} with respect to exactly these variables.
   *
   * @param loss the loss to differentiate
   * @param variables the model's {@code VariableV2} variables, not empty
   * @return each variable's gradient, paired with it, in the order of {@code variables}
   * @throws IllegalArgumentException if {@code variables} is empty, holds an op that is not a
   *     {@code VariableV2}, or holds a variable the loss has no gradient for (naming it)
   */
  public List<GradAndVar<?>> computeGradients(Operand<?> loss, List<? extends Operand<?>> variables) {
    if (variables.isEmpty()) {
      throw new IllegalArgumentException("`variables` must not be empty");
    }
    Output<?>[] outputs = new Output<?>[variables.size()];
    for (int i = 0; i < outputs.length; i++) {
      Output<?> v = variables.get(i).asOutput();
      if (!Optimizer.VARIABLE_V2.equals(v.op().type())) {
        throw new IllegalArgumentException(
            "variable '" + v.op().name() + "' is a " + v.op().type()
                + " op, not a VariableV2: use FisherTrainStep for resource variables");
      }
      outputs[i] = v;
    }
    Output<?>[] grads = graph.addGradients(loss.asOutput(), outputs);
    List<GradAndVar<?>> pairs = new ArrayList<>();
    for (int i = 0; i < outputs.length; i++) {
      if (grads[i] == null) {
        throw new IllegalArgumentException(
            "the loss '" + loss.op().name() + "' has no gradient with respect to variable '"
                + outputs[i].op().name() + "'");
      }
      pairs.add(pair(grads[i], outputs[i]));
    }
    return pairs;
  }

  @SuppressWarnings("unchecked")
  private static <T extends TType> GradAndVar<T> pair(Output<?> grad, Output<?> var) {
    return new GradAndVar<>((Output<T>) grad, (Output<T>) var);
  }

  /**
   * Minimizes {@code loss} over exactly these variables: {@link #computeGradients(Operand, List)},
   * then {@link #applyGradients}.
   *
   * @param loss the loss to minimize
   * @param name the name of the returned op
   * @param variables the model's {@code VariableV2} variables, not empty
   * @return the op that applies one step to every variable
   * @throws IllegalArgumentException as {@link #computeGradients(Operand, List)} does
   */
  public Op minimize(Operand<?> loss, String name, List<? extends Operand<?>> variables) {
    return applyGradients(computeGradients(loss, variables), name);
  }

  @Override
  public Op applyGradients(List<GradAndVar<? extends TType>> gradsAndVars, String name) {
    if (gradsAndVars.isEmpty()) {
      throw new IllegalArgumentException("`gradsAndVars` must not be empty");
    }
    List<Updater.Target> targets = new ArrayList<>();
    for (GradAndVar<? extends TType> gv : gradsAndVars) {
      targets.add(target(gv.getGradient(), gv.getVariable()));
    }
    if (decayMask != null && targets.stream().noneMatch(Updater.Target::decayed)) {
      throw new IllegalArgumentException("weightDecayMask decays none of the variables "
          + targets.stream().map(Updater.Target::name).toList()
          + " (a typo?); to decay none, set FisherOptions.weightDecay(0)");
    }
    // with a schedule, η_t reads the counter and the step's writes advance it: one op named `name`
    Map<String, Output<?>> outputs = new LinkedHashMap<>();
    Op step = XlaUpdate.build(ops, spec(), targets, new RefVar(skippedCounter()),
        iterations == null ? null : new RefVar(iterations), name, outputs);
    telemetry.put(step, Collections.unmodifiableMap(outputs));
    return step;
  }

  /**
   * The telemetry outputs of a step {@link #applyGradients} built (docs/design.md, "Step
   * telemetry"): float32 scalars ({@value StepTelemetry#SKIPPED}: int64) by {@link
   * StepTelemetry#NAMES} name. Fetched in the same run that targets {@code step}, they describe that
   * step; fetched alone, they compute a step's telemetry without applying it.
   *
   * @param step an op {@link #applyGradients} of this optimizer returned
   * @return the outputs by name
   * @throws IllegalArgumentException if this optimizer did not build {@code step}
   */
  public Map<String, Output<?>> telemetry(Op step) {
    Map<String, Output<?>> t = telemetry.get(step);
    if (t == null) {
      throw new IllegalArgumentException("op " + step.op().name() + " is not a step this optimizer's"
          + " applyGradients built");
    }
    return t;
  }

  /**
   * One variable's step (the framework's per-variable hook); {@link #applyGradients} is whole. With
   * a schedule it reads η_t at {@link #iterations()} and leaves the counter to {@link
   * #applyGradients}, which counts whole steps.
   */
  @Override
  protected <T extends TType> Op applyDense(Ops deps, Output<T> gradient, Output<T> variable) {
    return new Updater(spec(), false).buildAsserting(ops, List.of(target(gradient, variable)),
        new RefVar(skippedCounter()), ops.scope().makeOpName("apply"));
  }

  /** What a step computes; with a schedule, η_t at a fresh read of {@link #iterations}. */
  private Updater.Spec spec() {
    LearningRate eta = schedule == null ? learningRate : LearningRate.of(schedule, ops.identity(iterations));
    return new Updater.Spec(algorithm, options, eta);
  }

  private Updater.Target target(Output<? extends TType> gradient, Output<? extends TType> variable) {
    String varName = variable.op().name();
    Class<? extends TType> type = floatType(variable);
    Map<String, StateVar> slotVars = new LinkedHashMap<>();
    Map<String, Variable<?>> own = slotsOf(variable, type);
    own.forEach((slot, v) -> {
      if (!slot.equals(Algorithm.STEP)) {
        slotVars.put(slot, new RefVar(v));
      }
    });
    return new Updater.Target(
        varName, variable.shape(), type, gradient, new RefVar(variable), slotVars,
        new RefVar(own.get(Algorithm.STEP)), decayMask == null || decayMask.test(varName));
  }

  private static Class<? extends TType> floatType(Output<? extends TType> variable) {
    Kernels.checkFloat(variable.op().name(), variable.type());
    return variable.type();
  }

  /** The slots of a variable, created (in the init scope) on first use. */
  private Map<String, Variable<?>> slotsOf(Output<? extends TType> variable, Class<? extends TType> type) {
    return slots.computeIfAbsent(variable.op().name(), n -> OptimizerSlots.create(
        algorithm, options, n, variable.shape(), type,
        (slotName, slotType, shape, init) -> newVariable(slotName, shape, slotType, init)));
  }

  private Variable<TInt64> skippedCounter() {
    if (skippedSteps == null) {
      skippedSteps = newVariable(name + "-skipped_steps", Shape.scalar(), TInt64.class, 0);
    }
    return skippedSteps;
  }

  /** A ref variable filled with {@code init}, initialized by the graph's initializers. */
  private <X extends TType> Variable<X> newVariable(String opName, Shape shape, Class<X> type, double init) {
    Ops initOps = Ops.create(graph).withInitScope();
    Variable<X> v = initOps.withName(opName).variable(shape, type);
    Operand<X> value =
        initOps.fill(initOps.constant(shape), initOps.dtypes.cast(initOps.constant(init), type));
    initOps.assign(v, value);
    OWN_STATE.computeIfAbsent(graph, g -> Collections.synchronizedSet(new HashSet<>())).add(v.op().name());
    return v;
  }

  /**
   * The slot {@code slotName} ({@link #FIRST_MOMENT}, {@link #FIM}, {@link #FIM_ROW},
   * {@link #FIM_COL}, {@link #STEP}) of a variable. Slots are
   * float32 for float16/bfloat16 variables (m in bfloat16 under {@link FisherOptions#momentumDtype};
   * no m where β1 = 0) and the step counter is int64, whatever {@code T} says.
   */
  @Override
  @SuppressWarnings("unchecked")
  public <T extends TType> Optional<Variable<T>> getSlot(Output<T> var, String slotName) {
    Map<String, Variable<?>> own = slots.get(var.op().name());
    return own == null ? Optional.empty() : Optional.ofNullable((Variable<T>) own.get(slotName));
  }

  /**
   * The diagonal Fisher estimate of a variable this optimizer updates, as a graph operand of the
   * variable's shape (float64 for float64 variables, else float32) that reads its slots each time
   * it is fetched: the slot {@link #FIM}, or R C / 1ᵀR from {@link #FIM_ROW} and {@link #FIM_COL}
   * where FAdafactor factors the tensor (Alg. 2 l.9). Bias-corrected, as {@link
   * FisherTrainStep#fisher} (which says what it estimates);
   * docs/design.md, "The Fisher as a product".
   *
   * @param variable a variable whose step this optimizer built ({@link #minimize} or {@link
   *     #applyGradients})
   * @return the estimate
   * @throws IllegalArgumentException naming the variable if this optimizer has no state for it
   */
  public Operand<? extends org.tensorflow.types.family.TFloating> fisher(Operand<?> variable) {
    String varName = variable.op().name();
    Map<String, Variable<?>> own = slots.get(varName);
    if (own == null) {
      throw new IllegalArgumentException("variable '" + varName + "' has no state in optimizer '"
          + name + "', so it has no Fisher estimate: it is not a variable this optimizer updates,"
          + " or its minimize/applyGradients was not built yet; its variables are " + slots.keySet());
    }
    Map<String, Operand<?>> values = new LinkedHashMap<>();
    Ops read = Ops.create(graph).withSubScope(name + "_fisher");
    own.forEach((slot, v) -> values.put(slot, read.identity(v)));
    return Rule.fisherEstimate(algorithm, options, variable.shape(), variable.type(), values, read);
  }

  /** The VariableV2 ancestors of {@code loss} (data edges), in graph order, minus optimizer state. */
  private List<Operand<?>> modelVariables(Operand<?> loss) {
    Set<GraphOperation> seen = new HashSet<>();
    Deque<GraphOperation> todo = new ArrayDeque<>();
    todo.add((GraphOperation) loss.op());
    while (!todo.isEmpty()) {
      GraphOperation op = todo.pop();
      if (seen.add(op)) {
        for (Operand<?> in : op.inputs()) {
          todo.add((GraphOperation) in.op());
        }
      }
    }
    Set<String> state = OWN_STATE.getOrDefault(graph, Set.of());
    List<Operand<?>> result = new ArrayList<>();
    for (Iterator<GraphOperation> it = graph.operations(); it.hasNext(); ) {
      GraphOperation op = it.next();
      if (op.type().equals(Optimizer.VARIABLE_V2) && seen.contains(op) && !state.contains(op.name())) {
        result.add(op.output(0));
      }
    }
    return result;
  }

  @Override
  public String getOptimizerName() {
    return name;
  }

  /** The optimizer's name, learning rate and every option its algorithm reads. */
  @Override
  public String toString() {
    StringBuilder out = new StringBuilder(getClass().getSimpleName())
        .append("{name=").append(getOptimizerName()).append(", learningRate=").append(schedule == null ? learningRate : schedule);
    List<String> read = algorithm.optionNames();
    for (java.lang.reflect.RecordComponent c : FisherOptions.class.getRecordComponents()) {
      if (read.contains(c.getName())) {
        try {
          out.append(", ").append(c.getName()).append('=').append(c.getAccessor().invoke(options));
        } catch (ReflectiveOperationException e) {
          throw new IllegalStateException(e);
        }
      }
    }
    return out.append('}').toString();
  }

  /** A ref variable read through {@code Identity} (never a raw ref into math ops) and assigned. */
  private record RefVar(Operand<? extends TType> variable) implements StateVar {
    @Override
    public Operand<? extends TType> read(Ops tf) {
      return tf.identity(variable);
    }

    @Override
    @SuppressWarnings("unchecked")
    public Op write(Ops tf, Operand<? extends TType> value) {
      return tf.assign((Operand<TType>) variable, (Operand<TType>) value);
    }
  }
}
