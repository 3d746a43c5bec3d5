package org.fadam;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Function;
import java.util.function.Predicate;
import java.util.Optional;
import org.tensorflow.ConcreteFunction;
import org.tensorflow.Graph;
import org.tensorflow.Operand;
import org.tensorflow.Operation;
import org.tensorflow.Output;
import org.tensorflow.Signature;
import org.tensorflow.ndarray.Shape;
import org.tensorflow.op.Op;
import org.tensorflow.op.Ops;
import org.tensorflow.op.core.Placeholder;
import org.tensorflow.types.TBool;
import org.tensorflow.types.TFloat32;
import org.tensorflow.types.TInt32;
import org.tensorflow.types.TInt64;
import org.tensorflow.types.family.TFloating;
import org.tensorflow.types.family.TNumber;
import org.tensorflow.types.family.TType;

/**
 * The three functions of a {@link FisherTrainStep} and their calls in the outer graph: the whole
 * step (inputs and every variable's handle → loss, step, finite), its first half (inputs and the
 * parameters' handles → loss and gradients) and its second half (gradients and every handle →
 * step, finite). Each is one {@code StatefulPartitionedCall}, XLA-compiled when the step is. Also
 * the rest of what the step builds from the model in the outer graph: the input placeholders the
 * calls take, the evaluation loss and the predictions (reading the variables directly), and the
 * signatures of all of them.
 */
final class StepFunctions {

  /**
   * What the functions are built from.
   *
   * @param name the step's name (the functions' and calls' names start with it)
   * @param inputs each input's dtype and shape, by name
   * @param model the loss
   * @param algorithm the optimizer's algorithm
   * @param options its options
   * @param learningRate the fixed η, where {@code schedule} is null
   * @param schedule η_t computed from {@code iterations}, or null
   * @param jit whether the calls are XLA-compiled
   * @param predictor the predictions, or null
   * @param serveInputs the inputs the predictions read
   * @param decayMask which parameters the weight decay applies to
   * @param accumulate k: the optimizer steps once every k calls, on the mean of their gradients
   * @param microBatchFisher whether the Fisher EMA takes the mean of the k squared gradients (Eq. 20)
   */
  record Spec(
      String name,
      Map<String, InputSpec> inputs,
      FisherTrainStep.Model model,
      Algorithm algorithm,
      FisherOptions options,
      double learningRate,
      FisherTrainStep.Schedule schedule,
      boolean jit,
      FisherTrainStep.Predictor predictor,
      List<String> serveInputs,
      Predicate<ResourceVariable<?>> decayMask,
      int accumulate,
      boolean microBatchFisher) {}

  /**
   * An input's dtype and shape.
   *
   * @param type the dtype
   * @param shape the shape (-1 for the batch)
   */
  record InputSpec(Class<? extends TType> type, Shape shape) {}

  static final String INPUT = "input";
  static final String VARIABLE = "variable";

  /** What the functions were built from. */
  final Spec spec;
  private final TrainState state;
  /** Each parameter's gradient key ({@link GradientKeys}), by parameter name, in parameter order. */
  final Map<String, String> keys;
  /** The inputs' placeholders in the outer graph, by name, in declaration order. */
  final Map<String, Placeholder<?>> inputs = new LinkedHashMap<>();
  /** The whole step's function. */
  final ConcreteFunction trainFunction;
  /** The whole step's outputs: loss, step, finite (per parameter), applied, then the telemetry. */
  final Operation train;
  /** The first half's outputs: loss, then one gradient per parameter. */
  final Operation gradients;
  /** The second half's gradient inputs in the outer graph, by key. */
  final Map<String, Placeholder<?>> gradientInputs = new LinkedHashMap<>();
  /** The second half's outputs: step, finite (per parameter), applied, then the telemetry. */
  final Operation apply;
  /** Whether every gradient of the whole step was finite (a scalar of {@link #train}'s flags). */
  final Operand<TBool> trainFinite;
  /** Whether every gradient given to the second half was finite. */
  final Operand<TBool> applyFinite;
  /** The model's loss at the variables' current values, in the outer graph (no step). */
  final Operand<? extends TFloating> evalLoss;
  /** The predictions in the outer graph, or null without a predictor. */
  final Operand<?> predictions;
  /** The same step as pure functions of values. */
  final StatelessFunctions stateless;
  /** Under XLA, the step Java's {@code train} runs (over values, assigned after); else null. */
  private final ValueStep values;
  /** Under XLA, the second half Java's {@code applyGradients} runs; else null. */
  private final ValueStep applyValues;

  StepFunctions(Graph graph, Spec spec, TrainState state) {
    this.spec = spec;
    this.state = state;
    this.keys = GradientKeys.of(state.parameters());
    Ops tf = Ops.create(graph);
    spec.inputs().forEach((n, s) ->
        inputs.put(n, tf.withName(n).placeholder(s.type(), Placeholder.shape(s.shape()))));
    List<ResourceVariable<?>> all = state.all();
    List<ResourceVariable<?>> parameters = state.parameters();
    this.trainFunction = ConcreteFunction.create(this::trainBody);
    this.train = FunctionCalls.call(graph.baseScope(), spec.name(), trainFunction,
        args(inputs.values(), all), spec.jit());
    String gradName = spec.name() + "_" + FisherTrainStep.GRADIENTS;
    this.gradients = FunctionCalls.call(graph.baseScope(), gradName,
        ConcreteFunction.create(this::gradientsBody), args(inputs.values(), parameters), spec.jit());
    String applyName = spec.name() + "_" + FisherTrainStep.APPLY_GRADIENTS;
    Ops feed = Ops.create(graph).withSubScope(applyName);
    for (ResourceVariable<?> p : parameters) {
      String key = keys.get(p.name());
      gradientInputs.put(key, feed.withName(key).placeholder(p.type(), Placeholder.shape(p.shape())));
    }
    this.apply = FunctionCalls.call(graph.baseScope(), applyName,
        ConcreteFunction.create(this::applyBody), args(gradientInputs.values(), all), spec.jit());
    Operand<TInt32> axis = tf.constant(0);
    this.trainFinite = tf.withName(spec.name() + "_" + FisherTrainStep.FINITE).reduceAll(train.output(2), axis);
    this.applyFinite = tf.withName(applyName + "_" + FisherTrainStep.FINITE).reduceAll(apply.output(1), axis);
    Operands in = new Operands(INPUT, inputs);
    this.evalLoss = spec.model().loss(tf.withSubScope("eval"), in, state.values(tf));
    this.predictions = spec.predictor() == null
        ? null
        : spec.predictor().predict(tf.withSubScope("serve"), in, state.values(tf));
    this.stateless = new StatelessFunctions(graph, state, this);
    this.values = spec.jit() ? new ValueStep(graph, state, this, true) : null;
    this.applyValues = spec.jit() ? new ValueStep(graph, state, this, false) : null;
  }

  /** The outputs Java's {@code applyGradients} fetches: {@link #apply}'s, or under XLA the {@link ValueStep}'s. */
  Output<?> applyOutput(int i) {
    return applyValues != null ? applyValues.outputs.get(i) : apply.output(i);
  }

  /** The outputs Java's {@code train} fetches: {@link #train}'s, or under XLA the {@link ValueStep}'s. */
  Output<?> trainOutput(int i) {
    return values != null ? values.outputs.get(i) : train.output(i);
  }

  /** The name of the function Java's {@code train} runs. */
  String trainFunctionName() {
    return values != null ? values.functionName : trainFunction.getDefinedName();
  }

  /** The outer graph's placeholder of an input; throws naming the known inputs. */
  Placeholder<?> input(String name) {
    Placeholder<?> p = inputs.get(name);
    if (p == null) {
      throw new IllegalArgumentException("no input '" + name + "'; inputs are " + inputs.keySet());
    }
    return p;
  }

  /** Every signature of an export: train, gradients, apply gradients, the stateless two and, with a predictor, serve. */
  List<Signature> signatures() {
    List<Signature> all = new ArrayList<>(List.of(
        trainSignature(FisherTrainStep.TRAIN),
        gradientsSignature(FisherTrainStep.GRADIENTS),
        applySignature(FisherTrainStep.APPLY_GRADIENTS),
        stateless.gradientsSignature(),
        stateless.applySignature()));
    serveSignature(FisherTrainStep.SERVE).ifPresent(all::add);
    return all;
  }

  /** The whole step's signature under {@code key}: every input → loss, step, finite, applied. */
  Signature trainSignature(String key) {
    Signature.Builder s = Signature.builder().key(key);
    inputs.forEach(s::input);
    s.output(FisherTrainStep.LOSS, train.output(0)).output(FisherTrainStep.STEP, train.output(1))
        .output(FisherTrainStep.FINITE, trainFinite).output(FisherTrainStep.APPLIED, train.output(3));
    return telemetry(s, train, TRAIN_TELEMETRY).build();
  }

  /** Index of the first telemetry output of {@link #train}: after loss, step, finite, applied. */
  static final int TRAIN_TELEMETRY = 4;
  /** Index of the first telemetry output of {@link #apply}: after step, finite, applied. */
  static final int APPLY_TELEMETRY = 3;

  /** Adds the telemetry outputs of {@code call}, the first at {@code first}, under their names. */
  private static Signature.Builder telemetry(Signature.Builder s, Operation call, int first) {
    for (int i = 0; i < StepTelemetry.NAMES.size(); i++) {
      s.output(StepTelemetry.NAMES.get(i), call.output(first + i));
    }
    return s;
  }

  /** The first half's signature under {@code key}: every input → loss and each gradient. */
  Signature gradientsSignature(String key) {
    Signature.Builder s = Signature.builder().key(key);
    inputs.forEach(s::input);
    s.output(FisherTrainStep.LOSS, gradients.output(0));
    int i = 1;
    for (String k : keys.values()) {
      s.output(k, gradients.output(i++));
    }
    return s.build();
  }

  /** The second half's signature under {@code key}: each gradient → step, finite, applied. */
  Signature applySignature(String key) {
    Signature.Builder s = Signature.builder().key(key);
    gradientInputs.forEach(s::input);
    s.output(FisherTrainStep.STEP, apply.output(0)).output(FisherTrainStep.FINITE, applyFinite)
        .output(FisherTrainStep.APPLIED, apply.output(2));
    return telemetry(s, apply, APPLY_TELEMETRY).build();
  }

  /** The predictions' signature under {@code key}: the inputs they read → predictions. */
  Optional<Signature> serveSignature(String key) {
    if (predictions == null) {
      return Optional.empty();
    }
    Signature.Builder s = Signature.builder().key(key);
    spec.serveInputs().forEach(n -> s.input(n, input(n)));
    return Optional.of(s.output(FisherTrainStep.PREDICTIONS, predictions).build());
  }

  private static List<Output<?>> args(
      java.util.Collection<? extends Placeholder<?>> values, List<ResourceVariable<?>> vars) {
    List<Output<?>> args = new ArrayList<>();
    values.forEach(p -> args.add(p.asOutput()));
    vars.forEach(v -> args.add(v.handle()));
    return args;
  }

  /** The whole step: the inputs, then every variable's handle → loss, step, finite. */
  private Signature trainBody(Ops fn) {
    Signature.Builder sig = Signature.builder().key(spec.name());
    Map<String, Operand<?>> in = inputArgs(fn, sig);
    Map<ResourceVariable<?>, Output<TType>> handles = handleArgs(fn, state.all(), sig);
    Forward forward = forward(fn, in, handles);
    Update update = update(fn, List.of(forward.gradients()), handles, forward.loss());
    sig.output(FisherTrainStep.LOSS,
        update.done().withName(FisherTrainStep.LOSS).dtypes.cast(forward.loss(), TFloat32.class));
    return update.outputs(sig).build();
  }

  /** The first half: the inputs and the parameters' handles → loss, gradients. */
  private Signature gradientsBody(Ops fn) {
    Signature.Builder sig = Signature.builder().key(spec.name() + "_" + FisherTrainStep.GRADIENTS);
    Map<String, Operand<?>> in = inputArgs(fn, sig);
    List<ResourceVariable<?>> parameters = state.parameters();
    Forward forward = forward(fn, in, handleArgs(fn, parameters, sig));
    sig.output(FisherTrainStep.LOSS,
        fn.withName(FisherTrainStep.LOSS).dtypes.cast(forward.loss(), TFloat32.class));
    for (int k = 0; k < parameters.size(); k++) {
      String key = keys.get(parameters.get(k).name());
      sig.output(key, fn.withName(key).identity(forward.gradients()[k]));
    }
    return sig.build();
  }

  /** The second half: one gradient per parameter, then every variable's handle → step, finite. */
  private Signature applyBody(Ops fn) {
    Signature.Builder sig = Signature.builder().key(spec.name() + "_" + FisherTrainStep.APPLY_GRADIENTS);
    List<Operand<?>> grads = new ArrayList<>();
    for (ResourceVariable<?> p : state.parameters()) {
      String key = keys.get(p.name());
      Placeholder<?> g = fn.withName(key).placeholder(p.type(), Placeholder.shape(p.shape()));
      grads.add(g);
      sig.input(key, g);
    }
    Update update = update(fn, grads, handleArgs(fn, state.all(), sig), null);
    return update.outputs(sig).build();
  }

  private Map<String, Operand<?>> inputArgs(Ops fn, Signature.Builder sig) {
    Map<String, Operand<?>> in = new LinkedHashMap<>();
    spec.inputs().forEach((n, s) -> {
      Placeholder<?> p = fn.withName(n).placeholder(s.type(), Placeholder.shape(s.shape()));
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
      Output<TType> h = FunctionCalls.resourcePlaceholder(fn, "handle_" + i++);
      handles.put(v, h);
      sig.input("handle:" + v.name(), h);
    }
    return handles;
  }

  /** The loss and the gradient of every parameter (in parameter order). */
  record Forward(Operand<? extends TFloating> loss, Output<?>[] gradients) {}

  private Forward forward(Ops fn, Map<String, Operand<?>> in, Map<ResourceVariable<?>, Output<TType>> handles) {
    Map<ResourceVariable<?>, Operand<?>> values = new LinkedHashMap<>();
    for (ResourceVariable<?> p : state.parameters()) {
      values.put(p, fn.readVariableOp(handles.get(p), p.type()));
    }
    return forwardOf(fn, in, values);
  }

  /** The loss at the given parameter values and its gradient with respect to each of them. */
  Forward forwardOf(Ops fn, Map<String, Operand<?>> in, Map<ResourceVariable<?>, ? extends Operand<?>> paramValues) {
    List<ResourceVariable<?>> parameters = state.parameters();
    Map<String, Operand<?>> values = new LinkedHashMap<>();
    List<Output<?>> reads = new ArrayList<>();
    for (ResourceVariable<?> p : parameters) {
      Operand<?> r = paramValues.get(p);
      values.put(p.name(), r);
      reads.add(r.asOutput());
    }
    Operand<? extends TFloating> loss =
        spec.model().loss(fn, new Operands(INPUT, in), new Operands(VARIABLE, values));
    Shape lossShape = loss.shape();
    if (lossShape != null && !lossShape.isUnknown() && lossShape.numDimensions() != 0) {
      throw new IllegalArgumentException("the model's loss must be a scalar; got shape " + lossShape);
    }
    Output<?>[] grads = ((Graph) fn.scope().env()).addGradients(loss.asOutput(), reads.toArray(new Output<?>[0]));
    for (int k = 0; k < parameters.size(); k++) {
      if (grads[k] == null) {
        throw new IllegalArgumentException(
            "the loss has no gradient with respect to variable '" + parameters.get(k).name() + "'");
      }
    }
    return new Forward(loss, grads);
  }

  /**
   * The optimizer update and the {@code iterations} count, and what the outputs depend on.
   *
   * @param done ops that run after every write
   * @param next the step's new values
   */
  private record Update(Ops done, Next next) {

    /** Adds the step, finite and applied outputs, then the telemetry ({@link StepTelemetry#NAMES}). */
    Signature.Builder outputs(Signature.Builder sig) {
      sig.output(FisherTrainStep.STEP, done.withName(FisherTrainStep.STEP).identity(next.iterations()));
      sig.output(FisherTrainStep.FINITE, done.withName(FisherTrainStep.FINITE).stack(next.finite()));
      sig.output(FisherTrainStep.APPLIED, done.withName(FisherTrainStep.APPLIED).identity(next.applied()));
      List<Operand<?>> values = next.telemetry().outputs();
      for (int i = 0; i < values.size(); i++) {
        String n = StepTelemetry.NAMES.get(i);
        sig.output(n, done.withName(n).identity(values.get(i)));
      }
      return sig;
    }
  }

  /** The update of every parameter from its gradient (in parameter order), counted and written. */
  private Update update(Ops fn, List<? extends Operand<?>> grads,
      Map<ResourceVariable<?>, Output<TType>> handles, Operand<?> loss) {
    Next next = next(fn, grads, v -> new Handle(handles.get(v), v.type()), loss);
    Op write = Updater.write(fn, next.values(), next.vars(), List.of(), "apply");
    return new Update(fn.withControlDependencies(List.of(write)), next);
  }

  /**
   * Every new value of one call, computed from reads only: the optimizer's plan, {@code
   * iterations}, and with accumulation the gradient sums and their counter.
   *
   * @param values the new values
   * @param vars the variable each goes to
   * @param finite whether each parameter's gradient (with accumulation: the sum so far) was finite
   * @param iterations {@code iterations} after the call
   * @param applied whether the optimizer stepped: the call ends an accumulation window (every call
   *     without accumulation) and, under SKIP and ERROR, its gradients were finite
   * @param telemetry what the step reports about itself
   */
  record Next(List<Operand<?>> values, List<StateVar> vars, List<Operand<TBool>> finite,
      Operand<TInt64> iterations, Operand<TBool> applied, Updater.Telemetry telemetry) {}

  /**
   * One call's new values from the gradients of its batch. With accumulation (k &gt; 1, {@code
   * optax.MultiSteps}) the gradients are added to their sums; the k-th call of a window steps on
   * the sums' mean and clears them, the others leave parameters, slots and counters as they were.
   * Under ERROR a call whose gradient (or sum) is not finite changes nothing at all.
   */
  Next next(Ops fn, List<? extends Operand<?>> grads, Function<ResourceVariable<?>, StateVar> varOf,
      Operand<?> loss) {
    int k = spec.accumulate();
    List<Operand<?>> values = new ArrayList<>();
    List<StateVar> vars = new ArrayList<>();
    List<Operand<?>> stepGrads = new ArrayList<>(grads);
    List<Operand<?>> sums = new ArrayList<>();
    List<Operand<?>> squareSums = new ArrayList<>();
    List<Operand<?>> stepSquares = null;
    Operand<TBool> windowEnds = null;
    Operand<TInt64> micro = null;
    Operand<TInt64> microNext = null;
    List<ResourceVariable<?>> parameters = state.parameters();
    if (k > 1) {
      micro = fn.dtypes.cast(varOf.apply(state.microSteps()).read(fn), TInt64.class);
      microNext = fn.math.add(micro, fn.constant(1L));
      windowEnds = fn.math.equal(microNext, fn.constant((long) k));
      stepGrads.clear();
      for (int i = 0; i < parameters.size(); i++) {
        ResourceVariable<?> sumVar = state.accumulator(parameters.get(i));
        Operand<TFloating> sum = floating(varOf.apply(sumVar).read(fn));
        Operand<TFloating> g = floating(fn.dtypes.cast(grads.get(i), sum.type()));
        Operand<TFloating> added = fn.math.add(sum, g);
        sums.add(added);
        Operand<TFloating> kW = floating(fn.dtypes.cast(fn.constant((double) k), sum.type()));
        stepGrads.add(fn.math.div(added, kW)); // mean of k
        ResourceVariable<?> sqVar = state.squareAccumulator(parameters.get(i));
        if (sqVar != null) {
          if (stepSquares == null) {
            stepSquares = new ArrayList<>();
          }
          Operand<TFloating> sqAdded = fn.math.add(floating(varOf.apply(sqVar).read(fn)), fn.math.square(g));
          squareSums.add(sqAdded);
          stepSquares.add(fn.math.div(sqAdded, kW)); // Eq. 20: E_B[g²], the mean of the k micro-batches' g²
        }
      }
    }
    Updater.Plan plan = updater(fn, varOf, loss).plan(fn, targets(stepGrads, stepSquares, varOf),
        varOf.apply(state.skippedSteps()), windowEnds);
    values.addAll(plan.values());
    vars.addAll(plan.vars());
    boolean error = spec.options().nonFinite() == FisherOptions.NonFinitePolicy.ERROR;
    boolean policy = spec.options().nonFinite() != FisherOptions.NonFinitePolicy.PROPAGATE;
    Operand<TBool> finite = Updater.allTrue(fn, plan.finite());
    // the call counts, unless ERROR refuses it
    Operand<TBool> counts = error ? finite : fn.constant(true);
    Operand<TBool> stepped = windowEnds == null ? counts : fn.math.logicalAnd(counts, windowEnds);
    Operand<TInt64> before = fn.dtypes.cast(varOf.apply(state.iterations()).read(fn), TInt64.class);
    Operand<TInt64> after = fn.select(stepped, fn.math.add(before, fn.constant(1L)), before);
    values.add(after);
    vars.add(varOf.apply(state.iterations()));
    if (k > 1) {
      for (int i = 0; i < parameters.size(); i++) {
        Operand<TFloating> added = floating(sums.get(i));
        Operand<TFloating> sum = floating(varOf.apply(state.accumulator(parameters.get(i))).read(fn));
        Operand<TFloating> cleared = fn.select(windowEnds, fn.zerosLike(added), added);
        values.add(error ? fn.select(finite, cleared, sum) : cleared);
        vars.add(varOf.apply(state.accumulator(parameters.get(i))));
      }
      for (int i = 0; i < squareSums.size(); i++) { // the squares' sums, kept and cleared as the sums
        StateVar sqVar = varOf.apply(state.squareAccumulator(parameters.get(i)));
        Operand<TFloating> added = floating(squareSums.get(i));
        Operand<TFloating> cleared = fn.select(windowEnds, fn.zerosLike(added), added);
        values.add(error ? fn.select(finite, cleared, floating(sqVar.read(fn))) : cleared);
        vars.add(sqVar);
      }
      Operand<TInt64> microAfter = fn.select(windowEnds, fn.constant(0L), microNext);
      values.add(error ? fn.select(finite, microAfter, micro) : microAfter);
      vars.add(varOf.apply(state.microSteps()));
    }
    Operand<TBool> applied = policy ? fn.math.logicalAnd(stepped, finite) : stepped;
    return new Next(values, vars, plan.finite(), after, applied, plan.telemetry());
  }

  @SuppressWarnings("unchecked")
  private static Operand<TFloating> floating(Operand<?> x) {
    return (Operand<TFloating>) x;
  }

  /**
   * The optimizer's updater: η_t from the schedule at {@code iterations} (or the fixed η) times
   * {@code hparams/learning_rate_scale}, and λ from {@code hparams/weight_decay}, each variable
   * reached through {@code varOf}.
   */
  Updater updater(Ops fn, Function<ResourceVariable<?>, StateVar> varOf, Operand<?> loss) {
    LearningRate lr = spec.schedule() == null
        ? LearningRate.of(spec.learningRate())
        : LearningRate.of(spec.schedule(),
            fn.dtypes.cast(varOf.apply(state.iterations()).read(fn), TInt64.class));
    Operand<? extends TType> scale = varOf.apply(state.learningRateScale()).read(fn);
    if (loss != null && spec.jit()) {
      scale = tiedTo(fn, scale, loss);
    }
    lr = lr.scaled(number(scale));
    Operand<? extends TNumber> lambda =
        state.weightDecay() == null ? null : number(varOf.apply(state.weightDecay()).read(fn));
    return new Updater(new Updater.Spec(spec.algorithm(), spec.options(), lr, lambda), spec.jit());
  }

  /**
   * {@code scale} itself, read through a select on a predicate of the loss that is always true
   * (finite or not): every new θ reads η, so XLA computes the loss before it overwrites any θ in
   * place, and a loss that reads θ itself (½Σθ², an L2 term) needs no full-size copy of θ
   * (docs/performance.md). XLA keeps data dependencies, where it drops an optimization barrier's.
   */
  @SuppressWarnings("unchecked")
  private static <T extends TType> Operand<T> tiedTo(Ops fn, Operand<T> scale, Operand<?> loss) {
    Operand<TBool> finite = fn.math.isFinite((Operand<? extends TNumber>) loss);
    Operand<TBool> always = fn.math.logicalOr(finite, fn.math.logicalNot(finite));
    return fn.select(always, scale, fn.zerosLike(scale));
  }

  @SuppressWarnings("unchecked")
  private static Operand<? extends TNumber> number(Operand<? extends TType> x) {
    return (Operand<? extends TNumber>) x;
  }

  /**
   * Every parameter's update target, each variable reached through {@code varOf}, with the g² of
   * its Fisher EMA from {@code squares} (null: the gradients' squares).
   */
  List<Updater.Target> targets(List<? extends Operand<?>> grads, List<? extends Operand<?>> squares,
      Function<ResourceVariable<?>, StateVar> varOf) {
    List<Updater.Target> targets = new ArrayList<>();
    List<ResourceVariable<?>> parameters = state.parameters();
    for (int k = 0; k < parameters.size(); k++) {
      ResourceVariable<?> p = parameters.get(k);
      Map<String, StateVar> slotVars = new LinkedHashMap<>();
      state.slotsOf(p).forEach((slot, v) -> {
        if (!slot.equals(Algorithm.STEP)) {
          slotVars.put(slot, varOf.apply(v));
        }
      });
      targets.add(new Updater.Target(p.name(), p.shape(), p.type(), grads.get(k), varOf.apply(p),
          slotVars, varOf.apply(state.slotsOf(p).get(Algorithm.STEP)), spec.decayMask().test(p),
          squares == null ? null : squares.get(k)));
    }
    return targets;
  }

  /** A resource variable inside a step function, reached through its handle argument. */
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
}
