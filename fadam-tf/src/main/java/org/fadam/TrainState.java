package org.fadam;

import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.tensorflow.Graph;
import org.tensorflow.Operand;
import org.tensorflow.internal.types.registry.TensorTypeRegistry;
import org.tensorflow.ndarray.Shape;
import org.tensorflow.op.Ops;
import org.tensorflow.types.TFloat32;
import org.tensorflow.types.TFloat64;
import org.tensorflow.types.TInt64;
import org.tensorflow.types.family.TType;

/**
 * Every resource variable of a {@link FisherTrainStep}: the parameters, each one's slots and step
 * counter ({@link OptimizerSlots}), the step's {@code iterations} and {@code skipped_steps}
 * counters, its run-time hyperparameters ({@code hparams/learning_rate_scale}, and {@code
 * hparams/weight_decay} where the step decays), and with gradient accumulation each parameter's
 * gradient sum (and, with the micro-batch Fisher, its squared-gradient sum) and the {@code
 * micro_steps} counter, in the order the checkpoint and the step
 * function list them.
 */
final class TrainState {

  private final List<ResourceVariable<?>> parameters;
  /** Parameter name → slot name → variable (the step counter under {@link Algorithm#STEP}). */
  private final Map<String, Map<String, ResourceVariable<?>>> slots = new LinkedHashMap<>();
  private final ResourceVariable<TInt64> iterations;
  private final ResourceVariable<TInt64> skippedSteps;
  private final ResourceVariable<?> learningRateScale;
  private final ResourceVariable<?> weightDecay;
  /** Parameter name → the sum of its gradients since the last applied step (accumulation only). */
  private final Map<String, ResourceVariable<?>> accumulators = new LinkedHashMap<>();
  /** Parameter name → the sum of its squared gradients since then (micro-batch Fisher only). */
  private final Map<String, ResourceVariable<?>> squareAccumulators = new LinkedHashMap<>();
  /** The calls since the last applied step (accumulation only), else null. */
  private final ResourceVariable<TInt64> microSteps;
  private final List<ResourceVariable<?>> all;

  /**
   * Creates the state in {@code graph}, under the step's name.
   *
   * @param name the step's name (the counters are {@code <name>-iterations} and {@code
   *     <name>-skipped_steps})
   */
  TrainState(Graph graph, String name, Algorithm algorithm, FisherOptions options,
      List<ResourceVariable<?>> parameters, int accumulate, boolean microBatchFisher) {
    Ops scope = Ops.create(graph).withSubScope(name);
    this.parameters = List.copyOf(parameters);
    List<ResourceVariable<?>> vars = new ArrayList<>(this.parameters);
    for (ResourceVariable<?> p : this.parameters) {
      Map<String, ResourceVariable<?>> own = OptimizerSlots.create(algorithm, options, p.name(),
          p.shape(), p.type(), (n, type, shape, init) -> filled(scope, n, type, shape, init));
      slots.put(p.name(), own);
      vars.addAll(own.values());
    }
    this.iterations = filled(scope, name + "-iterations", TInt64.class, Shape.scalar(), 0);
    this.skippedSteps = filled(scope, name + "-skipped_steps", TInt64.class, Shape.scalar(), 0);
    vars.add(iterations);
    vars.add(skippedSteps);
    // float32 (what a TPU computes in), float64 where a parameter is (so its λ and η stay exact)
    Class<? extends TType> hp = this.parameters.stream().anyMatch(p -> p.type() == TFloat64.class)
        ? TFloat64.class : TFloat32.class;
    Ops hparams = scope.withSubScope(HPARAMS);
    this.learningRateScale = filled(hparams, LEARNING_RATE_SCALE, hp, Shape.scalar(), 1);
    vars.add(learningRateScale);
    this.weightDecay = options.weightDecay() == 0
        ? null
        : filled(hparams, WEIGHT_DECAY, hp, Shape.scalar(), options.weightDecay());
    if (weightDecay != null) {
      vars.add(weightDecay);
    }
    if (accumulate > 1) {
      for (ResourceVariable<?> p : this.parameters) {
        ResourceVariable<?> sum = filled(scope, p.name() + "-" + ACCUMULATOR,
            Kernels.workingType(p.type()), p.shape(), 0);
        accumulators.put(p.name(), sum);
        vars.add(sum);
      }
      if (microBatchFisher) {
        for (ResourceVariable<?> p : this.parameters) {
          ResourceVariable<?> sq = filled(scope, p.name() + "-" + SQUARE_ACCUMULATOR,
              Kernels.workingType(p.type()), p.shape(), 0);
          squareAccumulators.put(p.name(), sq);
          vars.add(sq);
        }
      }
      this.microSteps = filled(scope, name + "-micro_steps", TInt64.class, Shape.scalar(), 0);
      vars.add(microSteps);
    } else {
      this.microSteps = null;
    }
    this.all = List.copyOf(vars);
  }

  /** The name of a parameter's gradient accumulator after the parameter's ({@code w-grad_sum}). */
  static final String ACCUMULATOR = "grad_sum";
  /** The name of a parameter's squared-gradient accumulator after the parameter's ({@code w-grad_sq_sum}). */
  static final String SQUARE_ACCUMULATOR = "grad_sq_sum";

  /** The scope of the run-time hyperparameters under the step's name. */
  static final String HPARAMS = "hparams";
  /** η_t's multiplier. */
  static final String LEARNING_RATE_SCALE = "learning_rate_scale";
  /** λ. */
  static final String WEIGHT_DECAY = "weight_decay";

  private static <X extends TType> ResourceVariable<X> filled(
      Ops tf, String name, Class<X> type, Shape shape, double init) {
    Ops i = tf.withInitScope();
    Operand<X> value = i.fill(i.constant(shape), i.dtypes.cast(i.constant(init), type));
    return ResourceVariable.create(tf, name, value);
  }

  /** The trainable variables. */
  List<ResourceVariable<?>> parameters() {
    return parameters;
  }

  /** Parameters, then each one's slots and counter, then iterations and skipped steps. */
  List<ResourceVariable<?>> all() {
    return all;
  }

  /** Each parameter's current value read in {@code tf}'s graph, by name (outside the step functions). */
  Operands values(Ops tf) {
    Map<String, Operand<?>> out = new LinkedHashMap<>();
    parameters.forEach(v -> out.put(v.name(), v.read(tf)));
    return new Operands(StepFunctions.VARIABLE, out);
  }

  /**
   * A parameter's diagonal Fisher estimate read in {@code tf}'s graph ({@link Rule#fisherEstimate}).
   *
   * @throws IllegalArgumentException naming the variable if it is not one of the parameters
   */
  Operand<? extends org.tensorflow.types.family.TFloating> fisher(
      Ops tf, ResourceVariable<?> parameter, Algorithm algorithm, FisherOptions options) {
    Map<String, ResourceVariable<?>> own = parameters.contains(parameter) ? slots.get(parameter.name()) : null;
    if (own == null) {
      throw new IllegalArgumentException("variable '" + parameter.name() + "' is not a parameter of"
          + " this train step, so it has no Fisher estimate; its parameters are "
          + parameters.stream().map(ResourceVariable::name).toList());
    }
    Map<String, Operand<?>> values = new LinkedHashMap<>();
    own.forEach((slot, v) -> values.put(slot, v.read(tf)));
    return Rule.fisherEstimate(algorithm, options, parameter.shape(), parameter.type(),
        values, tf);
  }

  /** A parameter's slots and counter by slot name. */
  Map<String, ResourceVariable<?>> slotsOf(ResourceVariable<?> parameter) {
    return Collections.unmodifiableMap(slots.get(parameter.name()));
  }

  /** One slot of a parameter, if the parameter is the step's and has it. */
  Optional<ResourceVariable<?>> slot(ResourceVariable<?> parameter, String slotName) {
    Map<String, ResourceVariable<?>> own = slots.get(parameter.name());
    return own == null ? Optional.empty() : Optional.ofNullable(own.get(slotName));
  }

  ResourceVariable<TInt64> iterations() {
    return iterations;
  }

  ResourceVariable<TInt64> skippedSteps() {
    return skippedSteps;
  }

  /** The multiplier of η_t, 1 at creation. */
  ResourceVariable<?> learningRateScale() {
    return learningRateScale;
  }

  /** A parameter's gradient accumulator (in its working dtype), or null without accumulation. */
  ResourceVariable<?> accumulator(ResourceVariable<?> parameter) {
    return accumulators.get(parameter.name());
  }

  /** A parameter's squared-gradient accumulator, or null without the micro-batch Fisher. */
  ResourceVariable<?> squareAccumulator(ResourceVariable<?> parameter) {
    return squareAccumulators.get(parameter.name());
  }

  /** The calls since the last applied step, or null without accumulation. */
  ResourceVariable<TInt64> microSteps() {
    return microSteps;
  }

  /** λ, or null where the step was built with λ = 0 (then it has no decay term to scale). */
  ResourceVariable<?> weightDecay() {
    return weightDecay;
  }

  /**
   * Bytes of optimizer state: every slot and step counter, the two global counters, and with
   * accumulation the gradient sums (and squared-gradient sums) and their counter.
   */
  long optimizerStateBytes() {
    long bytes = 16;
    List<ResourceVariable<?>> counted = new ArrayList<>(accumulators.values());
    counted.addAll(squareAccumulators.values());
    slots.values().forEach(own -> counted.addAll(own.values()));
    if (microSteps != null) {
      counted.add(microSteps);
    }
    for (ResourceVariable<?> v : counted) {
      bytes += v.shape().size() * TensorTypeRegistry.find(v.type()).byteSize();
    }
    return bytes;
  }
}
