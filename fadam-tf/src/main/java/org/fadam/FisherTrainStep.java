package org.fadam;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.tensorflow.ConcreteFunction;
import org.tensorflow.Graph;
import org.tensorflow.Operand;
import org.tensorflow.Operation;
import org.tensorflow.Output;
import org.tensorflow.SavedModelBundle;
import org.tensorflow.Session;
import org.tensorflow.Signature;
import org.tensorflow.Tensor;
import org.tensorflow.ndarray.Shape;
import org.tensorflow.op.Op;
import org.tensorflow.op.Ops;
import org.tensorflow.op.core.Placeholder;
import org.tensorflow.proto.DataType;
import org.tensorflow.proto.OpDef;
import org.tensorflow.types.TBool;
import org.tensorflow.types.TFloat32;
import org.tensorflow.types.TInt64;
import org.tensorflow.types.family.TFloating;
import org.tensorflow.types.family.TNumber;
import org.tensorflow.types.family.TType;

/**
 * One train step — forward pass, gradients and the FAdam, FAdafactor, Adam (Algorithm 3) or
 * Adafactor (Algorithm 4) update — as a single function over resource variables, compiled as a whole by XLA (on by
 * default), plus the {@code train} and {@code serve} signatures of a SavedModel that carries every
 * variable: parameters, slots, per-variable step counters, {@code iterations} and
 * {@code skipped_steps}. The same step also comes in two halves, {@link #gradients} and
 * {@link #applyGradients} (signatures {@value #GRADIENTS} and {@value #APPLY_GRADIENTS}), so that a
 * data-parallel job can average its replicas' gradients between them.
 *
 * <pre>{@code
 * var w = ResourceVariable.create(tf, "w", tf.withInitScope().constant(new float[2][3]));
 * FisherTrainStep step = FisherTrainStep.builder(graph)
 *     .fadam(0.01, FisherOptions.defaults())
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
   * Name of the gradients signature: the {@value #TRAIN} inputs → {@value #LOSS} and one gradient
   * per parameter, keyed by {@link #gradientKey}. With {@value #APPLY_GRADIENTS} it splits one
   * {@value #TRAIN} step in two, so that a data-parallel job can average the gradients of its
   * replicas in between.
   */
  public static final String GRADIENTS = "gradients";
  /**
   * Name of the apply-gradients signature: one gradient per parameter, keyed by
   * {@link #gradientKey} → {@value #STEP}. It runs the optimizer update of every parameter, slot
   * and counter exactly as {@value #TRAIN} does after its own gradients.
   */
  public static final String APPLY_GRADIENTS = "apply_gradients";
  /** Prefix of the gradient keys of {@value #GRADIENTS} and {@value #APPLY_GRADIENTS}. */
  public static final String GRADIENT_PREFIX = "grad_";
  private static final Pattern NOT_KEY_CHAR = Pattern.compile("[^A-Za-z0-9_]");

  /** The loss as a function of the inputs and the variables' current values. */
  @FunctionalInterface
  public interface Model {
    /**
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
    /** η at the step whose {@code iterations} (steps taken so far, int64) is given. */
    Operand<? extends TNumber> learningRate(Ops tf, Operand<TInt64> iterations);
  }

  /** What one call of {@link #train} returned. */
  public record Result(float loss, long step) {}

  /**
   * What one call of {@link #gradients} returned: the loss and each parameter's gradient by its
   * {@link #gradientKey}. The tensors belong to this object: close it.
   */
  public static final class Gradients implements AutoCloseable {
    private final float loss;
    private final Map<String, Tensor> byKey;
    private final org.tensorflow.Result owner;

    private Gradients(float loss, Map<String, Tensor> byKey, org.tensorflow.Result owner) {
      this.loss = loss;
      this.byKey = java.util.Collections.unmodifiableMap(byKey);
      this.owner = owner;
    }

    /** The loss on the batch, at the parameters before the step. */
    public float loss() {
      return loss;
    }

    /** Each parameter's gradient, keyed as {@link #applyGradients} takes them. */
    public Map<String, Tensor> byKey() {
      return byKey;
    }

    @Override
    public void close() {
      owner.close();
    }
  }

  private final Graph graph;
  private final Map<String, Placeholder<?>> inputs;
  private final List<String> serveInputs;
  private final Output<TFloat32> loss;
  private final Output<TInt64> step;
  private final Output<TBool> finite;
  private final Operand<?> predictions;
  private final Operand<? extends TFloating> evalLoss;
  private final List<ResourceVariable<?>> parameters;
  private final List<ResourceVariable<?>> state;
  private final Map<String, Map<String, ResourceVariable<?>>> slots;
  private final ResourceVariable<TInt64> iterations;
  private final ResourceVariable<TInt64> skippedSteps;
  private final ConcreteFunction function;
  private final Map<String, String> gradientKeys;
  private final Output<TFloat32> gradientsLoss;
  private final Map<String, Output<?>> gradients;
  private final Map<String, Placeholder<?>> gradientInputs;
  private final Output<TInt64> appliedStep;
  private final Output<TBool> appliedFinite;
  private final FisherOptions options;
  private final boolean jit;

  private FisherTrainStep(Builder b) {
    this.graph = b.graph;
    this.options = b.options;
    this.jit = b.jit;
    this.parameters = List.copyOf(b.variables);
    this.gradientKeys = gradientKeys(parameters);
    Ops tf = Ops.create(graph);
    Ops state = tf.withSubScope(b.name);

    // Every resource variable of the optimizer, in the outer graph.
    this.slots = new LinkedHashMap<>();
    List<ResourceVariable<?>> all = new ArrayList<>(parameters);
    for (ResourceVariable<?> p : parameters) {
      Kernels.checkFloat(p.name(), p.type());
      Class<? extends TFloating> w = Kernels.workingType(p.type());
      Map<String, ResourceVariable<?>> own = new LinkedHashMap<>();
      for (Rule.SlotSpec spec : b.rule.slots(p.shape(), options)) {
        own.put(spec.name(), filled(state, p.name() + "-" + spec.name(), w, spec.shape(), spec.init()));
      }
      own.put(Rule.STEP, filled(state, p.name() + "-" + Rule.STEP, TInt64.class, Shape.scalar(), 0));
      slots.put(p.name(), own);
      all.addAll(own.values());
    }
    this.iterations = filled(state, b.name + "-iterations", TInt64.class, Shape.scalar(), 0);
    this.skippedSteps = filled(state, b.name + "-skipped_steps", TInt64.class, Shape.scalar(), 0);
    all.add(iterations);
    all.add(skippedSteps);
    this.state = List.copyOf(all);

    // The outer graph's inputs, then the step function over (inputs, handles).
    this.inputs = new LinkedHashMap<>();
    b.inputs.forEach((n, spec) -> inputs.put(n, tf.withName(n).placeholder(spec.type, Placeholder.shape(spec.shape))));
    this.function = ConcreteFunction.create(fn -> body(fn, b, all));
    List<Output<?>> args = new ArrayList<>();
    inputs.values().forEach(p -> args.add(p.asOutput()));
    all.forEach(v -> args.add(v.handle()));
    Operation call = XlaUpdate.call(graph.baseScope(), b.name, function, args, jit);
    this.loss = call.output(0);
    this.step = call.output(1);
    this.finite = call.output(2);

    // The same step in two halves: gradients (inputs, parameter handles) and their application.
    ConcreteFunction gradFn = ConcreteFunction.create(fn -> gradientsBody(fn, b));
    List<Output<?>> gradArgs = new ArrayList<>();
    inputs.values().forEach(p -> gradArgs.add(p.asOutput()));
    parameters.forEach(v -> gradArgs.add(v.handle()));
    Operation gradCall = XlaUpdate.call(graph.baseScope(), b.name + "_" + GRADIENTS, gradFn, gradArgs, jit);
    this.gradientsLoss = gradCall.output(0);
    this.gradients = new LinkedHashMap<>();
    int out = 1;
    for (String key : gradientKeys.values()) {
      gradients.put(key, gradCall.output(out++));
    }
    Ops feed = tf.withSubScope(b.name + "_" + APPLY_GRADIENTS);
    this.gradientInputs = new LinkedHashMap<>();
    ConcreteFunction applyFn = ConcreteFunction.create(fn -> applyBody(fn, b, all));
    List<Output<?>> applyArgs = new ArrayList<>();
    for (ResourceVariable<?> p : parameters) {
      String key = gradientKeys.get(p.name());
      Placeholder<?> g = feed.withName(key).placeholder(p.type(), Placeholder.shape(p.shape()));
      gradientInputs.put(key, g);
      applyArgs.add(g.asOutput());
    }
    all.forEach(v -> applyArgs.add(v.handle()));
    Operation applyCall = XlaUpdate.call(graph.baseScope(), b.name + "_" + APPLY_GRADIENTS, applyFn, applyArgs, jit);
    this.appliedStep = applyCall.output(0);
    this.appliedFinite = applyCall.output(1);

    // Evaluation and predictions read the variables directly in the outer graph.
    this.evalLoss = b.model.loss(tf.withSubScope("eval"), new Operands(INPUT, inputs), values(tf, parameters));
    this.serveInputs = List.copyOf(b.serveInputs);
    if (b.predictor != null) {
      this.predictions = b.predictor.predict(tf.withSubScope("serve"), new Operands(INPUT, inputs), values(tf, parameters));
    } else {
      this.predictions = null;
    }
    ResourceSaver.build(graph, all);
  }

  /** The body of the step function: its arguments are the inputs, then every variable's handle. */
  private Signature body(Ops fn, Builder b, List<ResourceVariable<?>> all) {
    Signature.Builder sig = Signature.builder().key(b.name);
    Map<String, Operand<?>> in = inputArgs(fn, b, sig);
    Map<ResourceVariable<?>, Output<TType>> handles = handleArgs(fn, all, sig);
    Forward forward = forward(fn, b, in, handles);
    Update update = update(fn, b, List.of(forward.gradients()), handles);
    sig.output(LOSS, update.done().withName(LOSS).dtypes.cast(forward.loss(), TFloat32.class));
    return update.outputs(sig).build();
  }

  /** The first half of the step: the inputs and the parameters' handles → loss, gradients. */
  private Signature gradientsBody(Ops fn, Builder b) {
    Signature.Builder sig = Signature.builder().key(b.name + "_" + GRADIENTS);
    Map<String, Operand<?>> in = inputArgs(fn, b, sig);
    Forward forward = forward(fn, b, in, handleArgs(fn, parameters, sig));
    sig.output(LOSS, fn.withName(LOSS).dtypes.cast(forward.loss(), TFloat32.class));
    for (int k = 0; k < parameters.size(); k++) {
      String key = gradientKeys.get(parameters.get(k).name());
      sig.output(key, fn.withName(key).identity(forward.gradients()[k]));
    }
    return sig.build();
  }

  /** The second half: one gradient per parameter, then every variable's handle → step. */
  private Signature applyBody(Ops fn, Builder b, List<ResourceVariable<?>> all) {
    Signature.Builder sig = Signature.builder().key(b.name + "_" + APPLY_GRADIENTS);
    List<Operand<?>> grads = new ArrayList<>();
    for (ResourceVariable<?> p : parameters) {
      String key = gradientKeys.get(p.name());
      Placeholder<?> g = fn.withName(key).placeholder(p.type(), Placeholder.shape(p.shape()));
      grads.add(g);
      sig.input(key, g);
    }
    Update update = update(fn, b, grads, handleArgs(fn, all, sig));
    return update.outputs(sig).build();
  }

  private static Map<String, Operand<?>> inputArgs(Ops fn, Builder b, Signature.Builder sig) {
    Map<String, Operand<?>> in = new LinkedHashMap<>();
    b.inputs.forEach((n, spec) -> {
      Placeholder<?> p = fn.withName(n).placeholder(spec.type, Placeholder.shape(spec.shape));
      in.put(n, p);
      sig.input(n, p);
    });
    return in;
  }

  private static Map<ResourceVariable<?>, Output<TType>> handleArgs(
      Ops fn, List<ResourceVariable<?>> vars, Signature.Builder sig) {
    Map<ResourceVariable<?>, Output<TType>> handles = new LinkedHashMap<>();
    int i = 0;
    for (ResourceVariable<?> v : vars) {
      Output<TType> h = resourcePlaceholder(fn, "handle_" + i++);
      handles.put(v, h);
      sig.input("handle:" + v.name(), h);
    }
    return handles;
  }

  /** The loss and the gradient of every parameter (in {@link #parameters} order). */
  private record Forward(Operand<? extends TFloating> loss, Output<?>[] gradients) {}

  private Forward forward(Ops fn, Builder b, Map<String, Operand<?>> in, Map<ResourceVariable<?>, Output<TType>> handles) {
    Map<String, Operand<?>> values = new LinkedHashMap<>();
    List<Output<?>> reads = new ArrayList<>();
    for (ResourceVariable<?> p : parameters) {
      Operand<?> r = fn.readVariableOp(handles.get(p), p.type());
      values.put(p.name(), r);
      reads.add(r.asOutput());
    }
    Operand<? extends TFloating> lossValue = b.model.loss(fn, new Operands(INPUT, in), new Operands(VARIABLE, values));
    Shape lossShape = lossValue.shape();
    if (lossShape != null && !lossShape.isUnknown() && lossShape.numDimensions() != 0) {
      throw new IllegalArgumentException("the model's loss must be a scalar; got shape " + lossShape);
    }
    Output<?>[] grads = ((Graph) fn.scope().env()).addGradients(lossValue.asOutput(), reads.toArray(new Output<?>[0]));
    for (int k = 0; k < parameters.size(); k++) {
      if (grads[k] == null) {
        throw new IllegalArgumentException(
            "the loss has no gradient with respect to variable '" + parameters.get(k).name() + "'");
      }
    }
    return new Forward(lossValue, grads);
  }

  /** The optimizer update and the {@code iterations} count, and what the outputs depend on. */
  private record Update(Ops done, Operand<TInt64> after, List<Operand<TBool>> finite, FisherOptions options) {

    /** Adds the {@value #STEP} and {@code finite} outputs. */
    Signature.Builder outputs(Signature.Builder sig) {
      sig.output(STEP, done.withName(STEP).identity(after));
      // Only ERROR reads the flags; otherwise a constant, so PROPAGATE's step has no finiteness work.
      boolean[] none = new boolean[finite.size()];
      java.util.Arrays.fill(none, true);
      return sig.output("finite", options.nonFinite() == FisherOptions.NonFinitePolicy.ERROR
          ? done.withName("finite").stack(finite)
          : done.withName("finite").constant(none));
    }
  }

  /** The update of every parameter from its gradient (in {@link #parameters} order), counted. */
  private Update update(Ops fn, Builder b, List<? extends Operand<?>> grads, Map<ResourceVariable<?>, Output<TType>> handles) {
    Operand<TInt64> before = fn.readVariableOp(handles.get(iterations), TInt64.class);
    LearningRate lr =
        b.schedule == null ? LearningRate.of(b.learningRate) : LearningRate.of(b.schedule.learningRate(fn, before));
    List<Updater.Target> targets = new ArrayList<>();
    for (int k = 0; k < parameters.size(); k++) {
      ResourceVariable<?> p = parameters.get(k);
      Map<String, StateVar> slotVars = new LinkedHashMap<>();
      slots.get(p.name()).forEach((slot, v) -> {
        if (!slot.equals(Rule.STEP)) {
          slotVars.put(slot, new Handle(handles.get(v), v.type()));
        }
      });
      ResourceVariable<?> stepVar = slots.get(p.name()).get(Rule.STEP);
      targets.add(new Updater.Target(p.name(), p.shape(), p.type(), grads.get(k),
          new Handle(handles.get(p), p.type()), slotVars, new Handle(handles.get(stepVar), TInt64.class)));
    }
    Updater.Step update = Updater.build(fn, b.rule, options, lr, targets,
        new Handle(handles.get(skippedSteps), TInt64.class), "apply", false, jit);
    Operand<TInt64> after = fn.math.add(before, fn.constant(1L));
    Op count = fn.withControlDependencies(List.of(update.op())).assignVariableOp(handles.get(iterations), after);
    return new Update(fn.withControlDependencies(List.of(update.op(), count)), after, update.finite(), options);
  }

  /**
   * The key of a parameter's gradient in the {@value #GRADIENTS} and {@value #APPLY_GRADIENTS}
   * signatures: {@value #GRADIENT_PREFIX} followed by the variable's name with every character
   * outside {@code [A-Za-z0-9_]} replaced by {@code _} ({@code "layer1/w-0"} →
   * {@code "grad_layer1_w_0"}).
   */
  public static String gradientKey(String variableName) {
    return GRADIENT_PREFIX + NOT_KEY_CHAR.matcher(variableName).replaceAll("_");
  }

  /** Each parameter's gradient key; two parameters with one key fail, naming both. */
  private static Map<String, String> gradientKeys(List<ResourceVariable<?>> parameters) {
    Map<String, String> keys = new LinkedHashMap<>();
    Map<String, String> owner = new LinkedHashMap<>();
    for (ResourceVariable<?> p : parameters) {
      String key = gradientKey(p.name());
      String other = owner.putIfAbsent(key, p.name());
      if (other != null) {
        throw new IllegalArgumentException("variables '" + other + "' and '" + p.name()
            + "' have the same gradient key '" + key + "' (every character outside [A-Za-z0-9_]"
            + " becomes '_'); rename one of them");
      }
      keys.put(p.name(), key);
    }
    return keys;
  }

  private static <X extends TType> ResourceVariable<X> filled(Ops tf, String name, Class<X> type, Shape shape, double init) {
    Ops i = tf.withInitScope();
    Operand<X> value = i.fill(i.constant(shape), i.dtypes.cast(i.constant(init), type));
    return ResourceVariable.create(tf, name, value);
  }

  private static Operands values(Ops tf, List<ResourceVariable<?>> vars) {
    Map<String, Operand<?>> out = new LinkedHashMap<>();
    vars.forEach(v -> out.put(v.name(), v.read(tf)));
    return new Operands(VARIABLE, out);
  }

  private static final String INPUT = "input";
  private static final String VARIABLE = "variable";

  /** A resource variable inside the step function, reached through its handle argument. */
  private record Handle(Operand<? extends TType> handle, Class<? extends TType> type) implements StateVar {
    @Override
    public Operand<? extends TType> read(Ops tf) {
      return tf.readVariableOp(handle, type);
    }

    @Override
    public Op write(Ops tf, Operand<? extends TType> value) {
      return tf.assignVariableOp(handle, value);
    }
  }

  private static Output<TType> resourcePlaceholder(Ops fn, String name) {
    return fn.scope().opBuilder("Placeholder", name)
        .setAttr("dtype", DataType.DT_RESOURCE)
        .setAttr("shape", Shape.scalar())
        .build()
        .output(0);
  }

  /** The loss output of the train step: fetching it runs the step. */
  public Output<TFloat32> loss() {
    return loss;
  }

  /** The number of steps taken, after this one (fetching it runs the step). */
  public Output<TInt64> step() {
    return step;
  }

  /** The model's loss at the current variables, without a step (for held-out evaluation). */
  public Operand<? extends TFloating> evalLoss() {
    return evalLoss;
  }

  /** Number of scalar parameters. */
  public long parameterCount() {
    return parameters.stream().mapToLong(p -> p.shape().size()).sum();
  }

  /** Bytes of optimizer state (slots, step counters, the two global counters). */
  public long optimizerStateBytes() {
    long bytes = 16;
    for (Map<String, ResourceVariable<?>> own : slots.values()) {
      for (ResourceVariable<?> v : own.values()) {
        bytes += v.shape().size()
            * org.tensorflow.internal.types.registry.TensorTypeRegistry.find(v.type()).byteSize();
      }
    }
    return bytes;
  }

  /** The predictions, if the builder had a predictor. */
  public Optional<Operand<?>> predictions() {
    return Optional.ofNullable(predictions);
  }

  /** The outer graph's placeholder of an input. */
  public Placeholder<?> input(String name) {
    Placeholder<?> p = inputs.get(name);
    if (p == null) {
      throw new IllegalArgumentException("no input '" + name + "'; inputs are " + inputs.keySet());
    }
    return p;
  }

  /** A slot ({@link FisherOptimizer#FIRST_MOMENT}, …, {@link FisherOptimizer#STEP}) of a parameter. */
  public Optional<ResourceVariable<?>> slot(ResourceVariable<?> parameter, String slotName) {
    Map<String, ResourceVariable<?>> own = slots.get(parameter.name());
    return own == null ? Optional.empty() : Optional.ofNullable(own.get(slotName));
  }

  /** Steps taken (skipped ones included). */
  public ResourceVariable<TInt64> iterations() {
    return iterations;
  }

  /** Steps skipped for a non-finite gradient. */
  public ResourceVariable<TInt64> skippedSteps() {
    return skippedSteps;
  }

  /**
   * Numbered checkpoints of this step's variables in {@code dir}, keeping the newest {@code keep}
   * (see {@link CheckpointManager}).
   */
  public CheckpointManager checkpoints(Path dir, int keep) {
    return new CheckpointManager(this, dir, keep);
  }

  Graph graph() {
    return graph;
  }

  /** Whether the step is XLA-compiled. */
  public boolean jit() {
    return jit;
  }

  /** The name of the step function (its HLO module in an XLA dump carries it). */
  public String functionName() {
    return function.getDefinedName();
  }

  /** The {@value #TRAIN} signature: every input → loss, step. */
  public Signature trainSignature() {
    Signature.Builder s = Signature.builder().key(TRAIN);
    inputs.forEach(s::input);
    return s.output(LOSS, loss).output(STEP, step).build();
  }

  /** The {@value #GRADIENTS} signature: every input → loss and each parameter's gradient. */
  public Signature gradientsSignature() {
    Signature.Builder s = Signature.builder().key(GRADIENTS);
    inputs.forEach(s::input);
    s.output(LOSS, gradientsLoss);
    gradients.forEach(s::output);
    return s.build();
  }

  /** The {@value #APPLY_GRADIENTS} signature: each parameter's gradient → step. */
  public Signature applyGradientsSignature() {
    Signature.Builder s = Signature.builder().key(APPLY_GRADIENTS);
    gradientInputs.forEach(s::input);
    return s.output(STEP, appliedStep).build();
  }

  /** Each parameter's gradient key ({@link #gradientKey}), by parameter name, in parameter order. */
  public Map<String, String> gradientKeys() {
    return java.util.Collections.unmodifiableMap(gradientKeys);
  }

  /** The {@value #SERVE} signature: the predictor's inputs → predictions. */
  public Optional<Signature> serveSignature() {
    if (predictions == null) {
      return Optional.empty();
    }
    Signature.Builder s = Signature.builder().key(SERVE);
    serveInputs.forEach(n -> s.input(n, input(n)));
    return Optional.of(s.output(PREDICTIONS, predictions).build());
  }

  /** The trainable variables. */
  public List<ResourceVariable<?>> parameters() {
    return parameters;
  }

  /**
   * Every variable the step's checkpoint holds: the parameters, then each one's slots and step
   * counter, then {@code iterations} and {@code skipped_steps}.
   */
  public List<ResourceVariable<?>> variables() {
    return state;
  }

  /**
   * Loads a SavedModel directory (for example one {@link #export} wrote) with the
   * {@value SavedModelBundle#DEFAULT_TAG} tag: its {@value #TRAIN} function continues training.
   *
   * @throws IllegalArgumentException if the directory or its files are missing, or TensorFlow
   *     cannot read them (a truncated checkpoint), naming the directory and the reason
   */
  public static SavedModelBundle loadSavedModel(Path dir) {
    if (!Files.isDirectory(dir)) {
      throw new IllegalArgumentException("no SavedModel at " + dir + ": the directory does not exist"
          + leftAsideHint(dir));
    }
    for (String f : List.of("saved_model.pb", "variables/variables.index")) {
      if (!Files.exists(dir.resolve(f))) {
        throw new IllegalArgumentException("no SavedModel at " + dir + ": " + f + " is missing");
      }
    }
    try {
      return SavedModelBundle.load(dir.toString(), SavedModelBundle.DEFAULT_TAG);
    } catch (RuntimeException e) {
      throw new IllegalArgumentException(
          "cannot load the SavedModel at " + dir + ": " + firstLine(e.getMessage()), e);
    }
  }

  /**
   * Runs one step. Calls are serialized (one step at a time per train step object), so threads
   * sharing a session each get a step of their own and every step is counted once. Under {@link FisherOptions.NonFinitePolicy#ERROR} a non-finite gradient leaves
   * every variable unchanged and throws naming the variable.
   *
   * @throws IllegalStateException if XLA cannot compile the step (naming the op) or on ERROR
   */
  public synchronized Result train(Session session, Map<String, ? extends Tensor> feeds) {
    Session.Runner r = session.runner();
    feedInputs(r, feeds);
    org.tensorflow.Result out;
    try {
      out = r.fetch(loss).fetch(step).fetch(finite).run();
    } catch (RuntimeException e) { // TF's errors extend IllegalArgumentException, RuntimeException, …
      throw xlaError(e).orElseThrow(() -> e);
    }
    try (out) {
      checkFinite((TBool) out.get(2));
      return new Result(((TFloat32) out.get(0)).getFloat(), ((TInt64) out.get(1)).getLong());
    }
  }

  /**
   * The first half of {@link #train}: the loss and every parameter's gradient on a batch, with no
   * variable changed. {@link #applyGradients} of these gradients is {@link #train} of the batch,
   * bit for bit; a data-parallel job averages the gradients of its replicas in between.
   */
  public synchronized Gradients gradients(Session session, Map<String, ? extends Tensor> feeds) {
    Session.Runner r = session.runner();
    feedInputs(r, feeds);
    r.fetch(gradientsLoss);
    gradients.values().forEach(r::fetch);
    org.tensorflow.Result out;
    try {
      out = r.run();
    } catch (RuntimeException e) {
      throw xlaError(e).orElseThrow(() -> e);
    }
    Map<String, Tensor> byKey = new LinkedHashMap<>();
    int i = 1;
    for (String key : gradients.keySet()) {
      byKey.put(key, out.get(i++));
    }
    return new Gradients(((TFloat32) out.get(0)).getFloat(), byKey, out);
  }

  /**
   * The second half of {@link #train}: the update of every parameter, slot and counter from the
   * given gradients (one per parameter, keyed by {@link #gradientKey}), under the same non-finite
   * policy. Serialized with {@link #train}.
   *
   * @return the number of steps taken, after this one
   * @throws IllegalArgumentException if a gradient is missing or unknown
   * @throws IllegalStateException on a non-finite gradient under ERROR (nothing changed), or if
   *     XLA cannot compile the update
   */
  public synchronized long applyGradients(Session session, Map<String, ? extends Tensor> gradientsByKey) {
    for (String key : gradientsByKey.keySet()) {
      if (!gradientInputs.containsKey(key)) {
        throw new IllegalArgumentException("no parameter has the gradient key '" + key + "'; keys are "
            + gradientInputs.keySet());
      }
    }
    Session.Runner r = session.runner();
    for (var e : gradientInputs.entrySet()) {
      Tensor g = gradientsByKey.get(e.getKey());
      if (g == null) {
        throw new IllegalArgumentException("gradient '" + e.getKey() + "' is not given; keys are "
            + gradientInputs.keySet());
      }
      r.feed(e.getValue(), g);
    }
    org.tensorflow.Result out;
    try {
      out = r.fetch(appliedStep).fetch(appliedFinite).run();
    } catch (RuntimeException e) {
      throw xlaError(e).orElseThrow(() -> e);
    }
    try (out) {
      checkFinite((TBool) out.get(1));
      return ((TInt64) out.get(0)).getLong();
    }
  }

  private void feedInputs(Session.Runner r, Map<String, ? extends Tensor> feeds) {
    feeds.forEach((n, t) -> r.feed(input(n), t));
    for (String n : inputs.keySet()) {
      if (!feeds.containsKey(n)) {
        throw new IllegalArgumentException("input '" + n + "' is not fed; inputs are " + inputs.keySet());
      }
    }
  }

  /** Under ERROR, throws naming the first parameter whose gradient was not finite. */
  private void checkFinite(TBool ok) {
    if (options.nonFinite() != FisherOptions.NonFinitePolicy.ERROR) {
      return;
    }
    for (int i = 0; i < parameters.size(); i++) {
      if (!ok.getBoolean(i)) {
        throw new IllegalStateException("non-finite gradient (NaN, Inf, or a sum of squares that"
            + " overflows) for variable `" + parameters.get(i).name() + "`; no variable was changed");
      }
    }
  }

  private static final Pattern UNSUPPORTED = Pattern.compile(
      "(\\w+) \\(No registered '\\w+' OpKernel for (\\S+) devices compatible with node \\{\\{node ([^}]+)\\}\\}\\)");

  /** TF's "unsupported operations" failure as an error that names the op. */
  static Optional<IllegalStateException> xlaError(RuntimeException e) {
    String m = e.getMessage();
    if (m == null || !m.contains("Detected unsupported operations")) {
      return Optional.empty();
    }
    Matcher op = UNSUPPORTED.matcher(m);
    if (!op.find()) {
      return Optional.empty();
    }
    return Optional.of(new IllegalStateException("XLA cannot compile the train step: op " + op.group(1)
        + " (node '" + op.group(3) + "') has no XLA kernel on " + op.group(2)
        + "; remove it from the model or build the step with jit(false)", e));
  }

  /**
   * Exports a SavedModel to {@code dir} (which must not exist yet): the {@value #TRAIN},
   * {@value #GRADIENTS}, {@value #APPLY_GRADIENTS} and, with a predictor, {@value #SERVE}
   * signatures, a checkpoint of every variable, and the {@code variables} /
   * {@code trainable_variables} collections (parameters trainable; slots and counters not)
   * through which Python TensorFlow sees them as variables. Written beside and renamed into place
   * ({@link AtomicDirectory#create}): a crash never leaves a partial export under {@code dir}.
   */
  public void export(Session session, Path dir) throws IOException {
    if (Files.exists(dir)) {
      throw new IllegalArgumentException("export directory " + dir + " already exists");
    }
    AtomicDirectory.create(dir, tmp -> exportTo(session, tmp));
  }

  /**
   * Exports like {@link #export}, replacing what {@code dir} holds only once the new export is
   * complete ({@link AtomicDirectory#replace}): a crash at any moment leaves the previous export
   * or the new one, whole.
   *
   * @param extra writes more files into the new export before it is put in place (may be null)
   */
  public void exportReplacing(Session session, Path dir, AtomicDirectory.Writer extra) throws IOException {
    AtomicDirectory.replace(dir, tmp -> {
      exportTo(session, tmp);
      if (extra != null) {
        extra.write(tmp);
      }
    });
  }

  private void exportTo(Session session, Path dir) throws IOException {
    var exporter = SavedModelBundle.exporter(dir.toString()).withSession(session)
        .withSignature(trainSignature())
        .withSignature(gradientsSignature())
        .withSignature(applyGradientsSignature());
    serveSignature().ifPresent(exporter::withSignature);
    exporter.export();
    VariableCollections.addTo(dir, graph, state, parameters);
  }

  /**
   * Restores every variable from an exported SavedModel directory (or a checkpoint prefix) into a
   * session of a graph built the same way.
   *
   * @throws IllegalArgumentException naming the missing or mismatched variable
   */
  public void restore(Session session, Path dirOrPrefix) {
    Path prefix = Files.isDirectory(dirOrPrefix) ? dirOrPrefix.resolve("variables").resolve("variables") : dirOrPrefix;
    if (!Files.exists(Path.of(prefix + ".index"))) {
      throw new IllegalArgumentException("no checkpoint at " + dirOrPrefix + " (expected " + prefix + ".index)");
    }
    try {
      session.restore(prefix.toString());
    } catch (RuntimeException e) { // TF's NotFound, InvalidArgument, … errors
      throw new IllegalArgumentException("checkpoint " + prefix + " does not match this train step: "
          + firstLine(e.getMessage()), e);
    }
  }

  private static String leftAsideHint(Path dir) {
    try {
      List<Path> aside = AtomicDirectory.leftAside(dir);
      return aside.isEmpty() ? "" : "; a crash while replacing it left the previous export at "
          + aside.get(0) + " (AtomicDirectory.recover(dir) or the next export puts it back)";
    } catch (IOException e) {
      return "";
    }
  }

  static String firstLine(String s) {
    if (s == null) {
      return "";
    }
    int nl = s.indexOf('\n');
    return nl < 0 ? s : s.substring(0, nl);
  }

  /** A builder; {@link Builder#build()} adds the variables, the step function, its call and the saver. */
  public static Builder builder(Graph graph) {
    return new Builder(graph);
  }

  private record InputSpec(Class<? extends TType> type, Shape shape) {}

  /** Collects the step's parts. */
  public static final class Builder {
    private final Graph graph;
    private Rule rule = Rule.FADAM;
    private double learningRate = FisherOptions.exact(FisherOptions.LEARNING_RATE_DEFAULT);
    private Schedule schedule;
    private FisherOptions options = FisherOptions.defaults();
    private final Map<String, InputSpec> inputs = new LinkedHashMap<>();
    private List<ResourceVariable<?>> variables = List.of();
    private Model model;
    private Predictor predictor;
    private List<String> serveInputs = List.of();
    private boolean jit = true;
    private String name = "train_step";

    private Builder(Graph graph) {
      this.graph = Objects.requireNonNull(graph, "graph");
    }

    /** FAdam (Algorithm 1). */
    public Builder fadam(double learningRate, FisherOptions options) {
      return optimizer(Rule.FADAM, learningRate, options);
    }

    /** FAdafactor (Algorithm 2). */
    public Builder fadafactor(double learningRate, FisherOptions options) {
      return optimizer(Rule.FADAFACTOR, learningRate, options);
    }

    /** The paper's Adam (Algorithm 3), for comparisons. */
    public Builder adam(double learningRate, FisherOptions options) {
      return optimizer(Rule.ADAM, learningRate, options);
    }

    /**
     * The paper's Adafactor (Algorithm 4), FAdafactor's baseline; its ε is {@link
     * FisherOptions#adafactorEpsilon()} (see {@link PaperAdafactor}).
     */
    public Builder adafactor(double learningRate, FisherOptions options) {
      return optimizer(Rule.ADAFACTOR, learningRate, options);
    }

    private Builder optimizer(Rule r, double lr, FisherOptions o) {
      this.rule = r;
      this.learningRate = FisherOptions.checkLearningRate(lr);
      this.options = Objects.requireNonNull(o, "options");
      return this;
    }

    /** A learning-rate schedule (replaces the fixed rate). */
    public Builder schedule(Schedule s) {
      this.schedule = s;
      return this;
    }

    /** An input of the step (a placeholder in the outer graph and in the step function). */
    public Builder input(String name, Class<? extends TType> type, Shape shape) {
      if (inputs.put(name, new InputSpec(type, shape)) != null) {
        throw new IllegalArgumentException("input '" + name + "' is declared twice");
      }
      return this;
    }

    /** The trainable variables. */
    public Builder variables(List<? extends ResourceVariable<?>> vars) {
      this.variables = List.copyOf(vars);
      return this;
    }

    /** The model's loss. */
    public Builder loss(Model m) {
      this.model = m;
      return this;
    }

    /** The model's predictions and the inputs they need (the {@value #SERVE} signature). */
    public Builder predictions(Predictor p, String... inputNames) {
      this.predictor = p;
      this.serveInputs = List.of(inputNames);
      return this;
    }

    /** XLA-compile the step (default true). */
    public Builder jit(boolean on) {
      this.jit = on;
      return this;
    }

    /** The name of the step function and its call op (default "train_step"). */
    public Builder name(String n) {
      this.name = n;
      return this;
    }

    /** Builds the step. */
    public FisherTrainStep build() {
      if (model == null) {
        throw new IllegalStateException("no loss: call loss(...) before build()");
      }
      if (variables.isEmpty()) {
        throw new IllegalStateException("no variables: call variables(...) before build()");
      }
      for (String n : serveInputs) {
        if (!inputs.containsKey(n)) {
          throw new IllegalArgumentException("prediction input '" + n + "' is not a declared input");
        }
      }
      return new FisherTrainStep(this);
    }
  }
}
