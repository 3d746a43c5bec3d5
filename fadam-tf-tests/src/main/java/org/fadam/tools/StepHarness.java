package org.fadam.tools;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.fadam.Algorithm;
import org.fadam.FisherOptimizer;
import org.fadam.FisherOptions;
import org.tensorflow.Graph;
import org.tensorflow.Operand;
import org.tensorflow.Session;
import org.tensorflow.ndarray.Shape;
import org.tensorflow.ndarray.buffer.DataBuffers;
import org.tensorflow.op.Op;
import org.tensorflow.op.Ops;
import org.tensorflow.op.core.Placeholder;
import org.tensorflow.op.core.Variable;
import org.tensorflow.types.TBfloat16;
import org.tensorflow.types.TFloat16;
import org.tensorflow.types.TFloat32;
import org.tensorflow.types.TFloat64;
import org.tensorflow.types.family.TType;

/**
 * Runs one graph optimizer on one variable with gradients given step by step, and reads back the
 * variable and every slot as doubles. Serves the trace tool and the conformance tests.
 */
public final class StepHarness implements AutoCloseable {

  /**
   * The algorithm of a trace-tool name: "fadam", "fadafactor", "adam" or "adafactor" (any case).
   *
   * @throws IllegalArgumentException naming the four
   */
  public static Algorithm algorithm(String s) {
    try {
      return Algorithm.parse(s);
    } catch (IllegalArgumentException e) {
      throw new IllegalArgumentException(
          "`optimizer` must be one of fadam, fadafactor, adam, adafactor; got " + s, e);
    }
  }

  private final Graph graph = new Graph();
  private final Session session;
  private final Placeholder<TFloat64> grad;
  private final Op train;
  private final Shape shape;
  private final Map<String, Operand<TFloat64>> fetches = new LinkedHashMap<>();
  /** The step's telemetry outputs, fetched with it, as float64. */
  private final Map<String, Operand<TFloat64>> telemetryFetches = new LinkedHashMap<>();
  /** The last step's telemetry by name. */
  private final Map<String, Double> telemetry = new LinkedHashMap<>();

  /**
   * @param algorithm the optimizer's algorithm
   * @param dtype the variable's dtype: float32, float64, float16 or bfloat16
   * @param lr the learning rate
   * @param options every other hyperparameter
   * @param shape the variable's shape
   * @param theta the variable's initial value, row-major
   */
  public StepHarness(
      Algorithm algorithm, String dtype, double lr, FisherOptions options, long[] shape, double[] theta) {
    this.shape = Shape.of(shape);
    if (this.shape.size() != theta.length) {
      throw new IllegalArgumentException(
          "theta has " + theta.length + " values, shape " + this.shape + " needs " + this.shape.size());
    }
    Class<? extends TType> type = dtypeClass(dtype);
    Ops tf = Ops.create(graph);
    Operand<TFloat64> init = tf.constant(this.shape, DataBuffers.of(theta, true, false));
    Variable<? extends TType> var = tf.withName("theta").variable(tf.dtypes.cast(init, type));
    grad = tf.withName("grad").placeholder(TFloat64.class);
    FisherOptimizer opt =
        FisherOptimizer.create(algorithm, graph, algorithm.displayName(), lr, options);
    train = opt.applyGradients(List.of(pair(tf.dtypes.cast(grad, type), var)), "train");
    opt.telemetry(train).forEach((n, o) -> telemetryFetches.put(n, tf.dtypes.cast(o, TFloat64.class)));
    fetches.put("theta", tf.dtypes.cast(var, TFloat64.class));
    for (String slot :
        List.of(
            FisherOptimizer.FIRST_MOMENT,
            FisherOptimizer.FIM,
            FisherOptimizer.FIM_ROW,
            FisherOptimizer.FIM_COL,
            FisherOptimizer.STEP)) {
      opt.getSlot(var.asOutput(), slot)
          .ifPresent(s -> fetches.put(slot, tf.dtypes.cast(tf.identity(s), TFloat64.class)));
    }
    session = new Session(graph);
    session.initialize();
  }

  @SuppressWarnings("unchecked")
  private static <T extends TType> org.tensorflow.framework.optimizers.Optimizer.GradAndVar<T> pair(
      Operand<? extends TType> g, Variable<? extends TType> v) {
    return new org.tensorflow.framework.optimizers.Optimizer.GradAndVar<>(
        ((Operand<T>) g).asOutput(), ((Operand<T>) v).asOutput());
  }

  /** The TF Java class of a dtype name. */
  public static Class<? extends TType> dtypeClass(String dtype) {
    return switch (dtype) {
      case "float32" -> TFloat32.class;
      case "float64" -> TFloat64.class;
      case "float16" -> TFloat16.class;
      case "bfloat16" -> TBfloat16.class;
      default -> throw new IllegalArgumentException(
          "`dtype` must be one of float32, float64, float16, bfloat16; got " + dtype);
    };
  }

  /** One optimizer step with this gradient (row-major, the variable's shape). */
  public void step(double[] g) {
    if (g.length != shape.size()) {
      throw new IllegalArgumentException(
          "gradient has " + g.length + " values, the variable " + shape.size() + " (shape " + shape + ")");
    }
    try (TFloat64 t = TFloat64.tensorOf(shape, DataBuffers.of(g, true, false))) {
      Session.Runner r = session.runner().feed(grad, t).addTarget(train);
      telemetryFetches.values().forEach(r::fetch);
      try (var result = r.run()) {
        int i = 0;
        for (String name : telemetryFetches.keySet()) {
          telemetry.put(name, ((TFloat64) result.get(i++)).getDouble());
        }
      }
    }
  }

  /**
   * {@return the last step's telemetry (org.fadam.StepTelemetry's names → value), the outputs of
   * that step's own run}
   */
  public Map<String, Double> telemetry() {
    return java.util.Collections.unmodifiableMap(telemetry);
  }

  /** The variable and every slot (and the step counter), as doubles, row-major. */
  public Map<String, double[]> state() {
    Session.Runner runner = session.runner();
    fetches.values().forEach(runner::fetch);
    Map<String, double[]> out = new LinkedHashMap<>();
    try (var result = runner.run()) {
      int i = 0;
      for (String name : fetches.keySet()) {
        TFloat64 t = (TFloat64) result.get(i++);
        double[] values = new double[(int) t.shape().size()];
        t.copyTo(DataBuffers.of(values, false, false));
        out.put(name, values);
      }
    }
    return out;
  }

  @Override
  public void close() {
    session.close();
    graph.close();
  }
}
