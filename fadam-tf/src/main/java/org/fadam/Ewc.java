package org.fadam;

import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.tensorflow.Operand;
import org.tensorflow.Result;
import org.tensorflow.Session;
import org.tensorflow.Tensor;
import org.tensorflow.ndarray.Shape;
import org.tensorflow.op.Ops;
import org.tensorflow.types.TFloat32;
import org.tensorflow.types.TFloat64;
import org.tensorflow.types.family.TFloating;
import org.tensorflow.types.family.TType;

/**
 * Elastic weight consolidation (Kirkpatrick et al., 2017) with the optimizer's own Fisher: after
 * task A, {@link #snapshot} keeps each parameter's value θ* and its diagonal Fisher estimate F
 * ({@link FisherTrainStep#fisher}, {@link FisherOptimizer#fisher}); while training task B, the loss
 * adds {@link #penalty} λ/2 · Σ F (θ − θ*)², which holds the parameters that mattered to A near
 * their values. docs/design.md, "The Fisher as a product"; docs/fisher.md for a worked example and
 * the demo's measurement.
 *
 * <pre>{@code
 * Ewc.Snapshot a = Ewc.snapshot(session, stepA);          // θ* and F after task A, on the host
 * FisherTrainStep stepB = FisherTrainStep.builder(graphB)
 *     ...
 *     .loss((ops, in, w) -> ops.math.add(taskLoss(ops, in, w), a.penalty(ops, w, 1e3, TFloat32.class)))
 *     .build();
 * }</pre>
 */
public final class Ewc {

  private Ewc() {}

  /**
   * λ/2 · Σ_p Σ_i F_p,i (θ_p,i − θ*_p,i)² over the parameters, as a scalar whose gradient with
   * respect to θ_p is λ F_p (θ_p − θ*_p). Each term is computed in its parameter's working dtype
   * (float64 for float64 parameters, else float32); the sum is float64 if any parameter is, else
   * float32.
   *
   * @param tf ops to build in (the loss's own, for example inside {@link FisherTrainStep.Model})
   * @param parameters θ by name (a float dtype each)
   * @param anchors θ* by name: the same names, the same shapes
   * @param fishers F by name: the same names, the same shapes
   * @param lambda λ, finite and ≥ 0
   * @return the penalty, a scalar
   * @throws IllegalArgumentException naming the variable whose anchor or Fisher is missing, left
   *     over or of another shape, or naming λ
   */
  public static Operand<? extends TFloating> penalty(Ops tf, Map<String, ? extends Operand<?>> parameters,
      Map<String, ? extends Operand<?>> anchors, Map<String, ? extends Operand<?>> fishers, double lambda) {
    if (!(lambda >= 0 && lambda < Double.POSITIVE_INFINITY)) {
      throw new IllegalArgumentException("EWC λ must be finite and ≥ 0; got " + lambda);
    }
    if (parameters.isEmpty()) {
      throw new IllegalArgumentException("EWC penalty over no parameters");
    }
    checkNames("anchor", anchors, parameters);
    checkNames("Fisher", fishers, parameters);
    boolean f64 = parameters.values().stream().anyMatch(p -> p.type() == TFloat64.class);
    List<Operand<? extends TFloating>> terms = new ArrayList<>();
    for (var e : parameters.entrySet()) {
      String name = e.getKey();
      Operand<?> theta = e.getValue();
      Kernels.checkFloat(name, theta.type());
      checkShape(name, "anchor", theta, anchors.get(name));
      checkShape(name, "Fisher", theta, fishers.get(name));
      terms.add(term(Kernels.forParameter(tf, theta.type(), false), theta, anchors.get(name),
          fishers.get(name), f64));
    }
    Operand<? extends TFloating> sum = terms.get(0);
    for (int i = 1; i < terms.size(); i++) {
      sum = add(tf, sum, terms.get(i));
    }
    return scaled(tf, sum, lambda / 2); // λ/2 · Σ
  }

  /** Σ F (θ − θ*)² of one parameter, in its working dtype, cast to the sum's dtype. */
  private static <W extends TFloating> Operand<? extends TFloating> term(
      Kernels<W> k, Operand<?> theta, Operand<?> anchor, Operand<?> fisher, boolean f64) {
    Ops tf = k.tf;
    Operand<W> d = tf.math.sub(k.cast(theta), k.cast(anchor)); // θ − θ*
    Operand<W> s = tf.reduceSum(tf.math.mul(k.cast(fisher), tf.math.square(d)), allAxes(tf, theta)); // Σ F (θ − θ*)²
    if (f64) {
      return s.type() == TFloat64.class ? s : tf.dtypes.cast(s, TFloat64.class);
    }
    return s;
  }

  @SuppressWarnings("unchecked")
  private static Operand<? extends TFloating> add(Ops tf, Operand<? extends TFloating> a, Operand<? extends TFloating> b) {
    return tf.math.add((Operand<TFloating>) a, (Operand<TFloating>) b);
  }

  @SuppressWarnings("unchecked")
  private static Operand<? extends TFloating> scaled(Ops tf, Operand<? extends TFloating> x, double c) {
    Operand<TFloating> cw = (Operand<TFloating>) (x.type() == TFloat64.class
        ? tf.constant(c) : tf.dtypes.cast(tf.constant((float) c), x.type()));
    return tf.math.mul((Operand<TFloating>) x, cw);
  }

  private static Operand<org.tensorflow.types.TInt32> allAxes(Ops tf, Operand<?> x) {
    Shape s = x.shape();
    if (!s.isUnknown()) { // static axes (what XLA wants)
      int[] axes = new int[s.numDimensions()];
      for (int i = 0; i < axes.length; i++) {
        axes[i] = i;
      }
      return tf.constant(axes);
    }
    return tf.range(tf.constant(0), tf.rank(x), tf.constant(1)); // the rank at run time

  }

  private static void checkNames(String what, Map<String, ? extends Operand<?>> given,
      Map<String, ? extends Operand<?>> parameters) {
    for (String n : parameters.keySet()) {
      if (!given.containsKey(n)) {
        throw new IllegalArgumentException("EWC: no " + what + " for variable '" + n + "'; the "
            + what + "s given are for " + given.keySet());
      }
    }
    for (String n : given.keySet()) {
      if (!parameters.containsKey(n)) {
        throw new IllegalArgumentException("EWC: " + what + " for variable '" + n
            + "', which is not among the parameters " + parameters.keySet());
      }
    }
  }

  private static void checkShape(String name, String what, Operand<?> theta, Operand<?> other) {
    Shape a = theta.shape();
    Shape b = other.shape();
    if (!a.isUnknown() && !b.isUnknown() && !a.isCompatibleWith(b)) {
      throw new IllegalArgumentException("EWC: variable '" + name + "' has shape " + a + ", its "
          + what + " " + b);
    }
  }

  /**
   * θ* and F of every parameter of a train step, copied to the host now (after task A).
   *
   * @param session a session of the step's graph
   * @param step the step
   * @return the snapshot (close it)
   */
  public static Snapshot snapshot(Session session, FisherTrainStep step) {
    return snapshot(session, step, step.parameters());
  }

  /**
   * θ* and F of some parameters of a train step, copied to the host now.
   *
   * @param session a session of the step's graph
   * @param step the step
   * @param parameters some of its parameters
   * @return the snapshot (close it)
   * @throws IllegalArgumentException naming a variable that is not one of the step's parameters
   */
  public static Snapshot snapshot(Session session, FisherTrainStep step, List<? extends ResourceVariable<?>> parameters) {
    Ops tf = Ops.create((org.tensorflow.Graph) step.loss().env());
    Map<String, Operand<?>> values = new LinkedHashMap<>();
    Map<String, Operand<?>> fishers = new LinkedHashMap<>();
    for (ResourceVariable<?> p : parameters) {
      fishers.put(p.name(), step.fisher(p)); // throws naming a variable the step does not own
      values.put(p.name(), p.read(tf));
    }
    return snapshot(session, values, fishers);
  }

  /**
   * θ* and F by name, fetched from a session now: for the drop-in optimizers, the variables and
   * {@link FisherOptimizer#fisher} of each.
   *
   * @param session the session
   * @param values θ by name
   * @param fishers F by name: the same names, the same shapes
   * @return the snapshot (close it)
   * @throws IllegalArgumentException naming a variable whose Fisher is missing or of another shape
   */
  public static Snapshot snapshot(Session session, Map<String, ? extends Operand<?>> values,
      Map<String, ? extends Operand<?>> fishers) {
    checkNames("Fisher", fishers, values);
    values.forEach((n, v) -> checkShape(n, "Fisher", v, fishers.get(n)));
    Session.Runner r = session.runner();
    List<String> names = new ArrayList<>(values.keySet());
    names.forEach(n -> r.fetch(values.get(n)).fetch(fishers.get(n)));
    Map<String, Tensor> anchors = new LinkedHashMap<>();
    Map<String, Tensor> fs = new LinkedHashMap<>();
    try (Result out = r.run()) {
      for (int i = 0; i < names.size(); i++) {
        anchors.put(names.get(i), copy(out.get(2 * i)));
        fs.put(names.get(i), copy(out.get(2 * i + 1)));
      }
    }
    return new Snapshot(anchors, fs);
  }

  /** A copy of a result's tensor that outlives the result. */
  private static Tensor copy(Tensor t) {
    if (t instanceof TFloat64 d) {
      TFloat64 c = TFloat64.tensorOf(d.shape());
      d.copyTo(c);
      return c;
    }
    if (t instanceof TFloat32 f) {
      TFloat32 c = TFloat32.tensorOf(f.shape());
      f.copyTo(c);
      return c;
    }
    throw new IllegalArgumentException("EWC snapshot of a " + t.dataType() + " tensor: the values and"
        + " Fisher estimates are float32 or float64 (a Fisher estimate is in its working dtype)");
  }

  /**
   * θ* and F of some parameters, held on the host (float32, or float64 for float64 parameters).
   * Build the penalty into a later loss with {@link #penalty(Ops, Operands, double, Class)}: they enter the
   * graph as constants, so a step function or an export carries them.
   */
  public static final class Snapshot implements AutoCloseable {
    private final Map<String, Tensor> anchors;
    private final Map<String, Tensor> fishers;

    private Snapshot(Map<String, Tensor> anchors, Map<String, Tensor> fishers) {
      this.anchors = Collections.unmodifiableMap(anchors);
      this.fishers = Collections.unmodifiableMap(fishers);
    }

    /** {@return the snapshot's parameter names, in order} */
    public Set<String> names() {
      return anchors.keySet();
    }

    /**
     * θ* of a parameter (owned by the snapshot: copy it to keep it past {@link #close}).
     *
     * @param name a parameter's name
     * @return its value at the snapshot
     * @throws IllegalArgumentException naming the variable if the snapshot has none of that name
     */
    public Tensor anchor(String name) {
      return get(anchors, name);
    }

    /**
     * F of a parameter (owned by the snapshot).
     *
     * @param name a parameter's name
     * @return its Fisher estimate at the snapshot
     * @throws IllegalArgumentException naming the variable if the snapshot has none of that name
     */
    public Tensor fisher(String name) {
      return get(fishers, name);
    }

    private Tensor get(Map<String, Tensor> m, String name) {
      Tensor t = m.get(name);
      if (t == null) {
        throw new IllegalArgumentException("EWC snapshot has no variable '" + name + "'; it has " + m.keySet());
      }
      return t;
    }

    /**
     * θ* of every parameter as constants in a graph.
     *
     * @param tf ops of the graph (a step function's, for example)
     * @return the constants by name
     */
    public Map<String, Operand<?>> anchors(Ops tf) {
      return constants(tf, anchors);
    }

    /**
     * F of every parameter as constants in a graph.
     *
     * @param tf ops of the graph
     * @return the constants by name
     */
    public Map<String, Operand<?>> fishers(Ops tf) {
      return constants(tf, fishers);
    }

    private static Map<String, Operand<?>> constants(Ops tf, Map<String, Tensor> m) {
      Map<String, Operand<?>> out = new LinkedHashMap<>();
      m.forEach((n, t) -> out.put(n, tf.constantOf((TType) t)));
      return out;
    }

    /**
     * {@link Ewc#penalty} of the snapshot's parameters, read from a loss's variables, with θ* and
     * F as constants in {@code tf}'s graph.
     *
     * @param tf the loss's ops
     * @param variables the loss's variables ({@link FisherTrainStep.Model#loss})
     * @param lambda λ, finite and ≥ 0
     * @param type the loss's dtype, to add the penalty to it ({@code TFloat32.class})
     * @param <T> the loss's dtype
     * @return λ/2 · Σ F (θ − θ*)², in {@code type}
     * @throws IllegalArgumentException naming a snapshot variable the loss does not have, or one
     *     whose shape differs
     */
    public <T extends TFloating> Operand<T> penalty(Ops tf, Operands variables, double lambda, Class<T> type) {
      Map<String, Operand<?>> theta = new LinkedHashMap<>();
      for (String n : names()) {
        theta.put(n, variables.get(n));
      }
      Operand<? extends TFloating> p = Ewc.penalty(tf, theta, anchors(tf), fishers(tf), lambda);
      @SuppressWarnings("unchecked")
      Operand<T> typed = p.type() == type ? (Operand<T>) p : tf.dtypes.cast(p, type);
      return typed;
    }

    /** Frees the host copies. */
    @Override
    public void close() {
      anchors.values().forEach(Tensor::close);
      fishers.values().forEach(Tensor::close);
    }
  }
}
