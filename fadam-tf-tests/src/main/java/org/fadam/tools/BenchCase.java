package org.fadam.tools;

import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;
import java.util.function.Function;
import org.fadam.Algorithm;
import org.fadam.FisherOptimizer;
import org.fadam.FisherOptions;
import org.fadam.FisherTrainStep;
import org.fadam.ResourceVariable;
import org.tensorflow.Graph;
import org.tensorflow.GraphOperation;
import org.tensorflow.Operand;
import org.tensorflow.Session;
import org.tensorflow.Tensor;
import org.tensorflow.framework.optimizers.Adam;
import org.tensorflow.framework.optimizers.GradientDescent;
import org.tensorflow.framework.optimizers.Optimizer;
import org.tensorflow.ndarray.Shape;
import org.tensorflow.op.Op;
import org.tensorflow.op.Ops;
import org.tensorflow.op.core.Placeholder;
import org.tensorflow.op.random.RandomUniform;
import org.tensorflow.proto.DataType;
import org.tensorflow.types.TFloat32;
import org.tensorflow.types.family.TType;

/**
 * One benchmarked train step: an optimizer on a path over a list of float32 variables, with the
 * loss ½·Σw² (its gradient is w, so every optimizer computes the same gradient). Owns its graph
 * and session.
 */
final class BenchCase implements AutoCloseable {

  /**
   * The optimizers compared, by their CSV names: the paper's four algorithms, each built through
   * its {@link Algorithm} (the CSV names of Algorithms 3 and 4 say "-paper", as the committed
   * results do), and two framework baselines that only the bench runs.
   */
  enum Candidate {
    ADAM_FRAMEWORK("adam-framework", null, g -> new Adam(g, LEARNING_RATE)),
    GD_FRAMEWORK("gd-framework", null, g -> new GradientDescent(g, LEARNING_RATE)),
    FADAM("fadam", Algorithm.FADAM, null),
    FADAFACTOR("fadafactor", Algorithm.FADAFACTOR, null),
    ADAM_PAPER("adam-paper", Algorithm.ADAM, null),
    ADAFACTOR_PAPER("adafactor-paper", Algorithm.ADAFACTOR, null);

    final String csv;
    /** The paper's algorithm, or null for a framework baseline. */
    final Algorithm algorithm;
    /** A framework baseline's optimizer, or null for the paper's algorithms. */
    private final Function<Graph, Optimizer> framework;

    Candidate(String csv, Algorithm algorithm, Function<Graph, Optimizer> framework) {
      this.csv = csv;
      this.algorithm = algorithm;
      this.framework = framework;
    }

    boolean framework() {
      return algorithm == null;
    }

    static Candidate parse(String s) {
      for (Candidate o : values()) {
        if (o.csv.equals(s)) {
          return o;
        }
      }
      throw new IllegalArgumentException("unknown optimizer '" + s + "'; known: " + names());
    }

    static String names() {
      List<String> n = new ArrayList<>();
      for (Candidate o : values()) {
        n.add(o.csv);
      }
      return String.join(",", n);
    }
  }

  /** How the step runs. */
  enum Path {
    /** The framework optimizers' own kernels (ApplyAdam, ApplyGradientDescent), ref variables. */
    FUSED_KERNEL("fused-kernel"),
    /** The drop-in optimizers' {@code minimize} on ref variables. */
    GRAPH("graph"),
    /** {@link FisherTrainStep} with {@code jit(false)}. */
    GRAPH_FUSED("graph-fused"),
    /** {@link FisherTrainStep}, XLA-compiled. */
    XLA("xla"),
    /**
     * Optimizer only, the gradient given: {@link FisherTrainStep#applyGradients} (XLA), or for the
     * framework Adam its {@code applyGradients} with the gradient fed.
     */
    XLA_APPLY("xla-apply");

    final String csv;

    Path(String csv) {
      this.csv = csv;
    }

    static Path parse(String s) {
      for (Path p : values()) {
        if (p.csv.equals(s)) {
          return p;
        }
      }
      throw new IllegalArgumentException(
          "unknown path '" + s + "'; known: graph, graph-fused, xla, xla-apply");
    }
  }

  static final float LEARNING_RATE = 0.001f;

  final Candidate optimizer;
  final Path path;
  final List<Shape> shapes;
  private final Graph graph = new Graph();
  private final Session session;
  private final Runnable step;
  /** Tensors fed at every step (the given gradients), closed with the case. */
  private final List<Tensor> fed;
  private final long stateBytes;

  private BenchCase(Candidate optimizer, Path path, List<Shape> shapes, boolean apply) {
    this.optimizer = optimizer;
    this.path = path;
    this.shapes = List.copyOf(shapes);
    Ops tf = Ops.create(graph);
    List<String> model = new ArrayList<>();
    List<Operand<TFloat32>> given = new ArrayList<>(); // gradients fed by optimizer-only cases
    for (int i = 0; i < shapes.size(); i++) {
      given.add(initial(tf.withName("given" + i), shapes.get(i), 1000 + i, false));
    }
    Map<Operand<?>, Tensor> feeds = new LinkedHashMap<>();
    if (optimizer.framework()) {
      List<Operand<TFloat32>> reads = new ArrayList<>();
      List<Optimizer.GradAndVar<? extends TType>> pairs = new ArrayList<>();
      List<Placeholder<TFloat32>> grads = new ArrayList<>();
      for (int i = 0; i < shapes.size(); i++) {
        var w = tf.withName("w" + i).variable(initial(tf, shapes.get(i), i, true));
        model.add(w.op().name());
        reads.add(tf.identity(w)); // never Square on a raw ref variable (docs/design.md, "TF Java 1.1.0 facts")
        Placeholder<TFloat32> g = tf.withName("g" + i).placeholder(TFloat32.class, Placeholder.shape(shapes.get(i)));
        grads.add(g);
        pairs.add(new Optimizer.GradAndVar<>(g.asOutput(), w.asOutput()));
      }
      Optimizer opt = refOptimizer(graph, optimizer);
      Op train = apply
          ? opt.applyGradients(pairs, "train")
          : opt.minimize(halfSumOfSquares(tf, reads, shapes), "train");
      session = new Session(graph);
      session.initialize();
      if (apply) {
        List<Tensor> values = fetchAll(session, given);
        for (int i = 0; i < grads.size(); i++) {
          feeds.put(grads.get(i), values.get(i));
        }
      }
      Session.Runner r = session.runner().addTarget(train);
      feeds.forEach((o, t) -> r.feed(o, t));
      step = () -> r.run().close();
    } else if (path == Path.GRAPH) {
      List<Operand<TFloat32>> reads = new ArrayList<>();
      for (int i = 0; i < shapes.size(); i++) {
        var w = tf.withName("w" + i).variable(initial(tf, shapes.get(i), i, true));
        model.add(w.op().name());
        reads.add(tf.identity(w));
      }
      Op train = refOptimizer(graph, optimizer).minimize(halfSumOfSquares(tf, reads, shapes), "train");
      session = new Session(graph);
      session.initialize();
      Session.Runner r = session.runner().addTarget(train);
      step = () -> r.run().close();
    } else {
      List<ResourceVariable<?>> vars = new ArrayList<>();
      for (int i = 0; i < shapes.size(); i++) {
        ResourceVariable<TFloat32> v = ResourceVariable.create(tf, "w" + i, initial(tf, shapes.get(i), i, true));
        vars.add(v);
        model.add(v.handle().op().name());
      }
      if (optimizer.framework()) {
        throw new IllegalArgumentException(optimizer.csv + " has no fused step");
      }
      FisherTrainStep fused = FisherTrainStep.builder(graph)
          .algorithm(optimizer.algorithm, LEARNING_RATE, optimizer.algorithm.defaultOptions())
          .variables(vars)
          .loss((ops, in, v) -> {
            List<Operand<TFloat32>> reads = new ArrayList<>();
            for (ResourceVariable<?> x : vars) {
              reads.add(v.float32(x.name()));
            }
            return halfSumOfSquares(ops, reads, shapes);
          })
          .jit(path != Path.GRAPH_FUSED)
          .build();
      session = new Session(graph);
      session.initialize();
      if (path == Path.XLA_APPLY) {
        Map<String, Tensor> byKey = new LinkedHashMap<>();
        List<Tensor> values = fetchAll(session, given);
        for (int i = 0; i < vars.size(); i++) {
          Tensor t = values.get(i);
          byKey.put(FisherTrainStep.gradientKey(vars.get(i).name()), t);
          feeds.put(given.get(i), t);
        }
        step = () -> fused.applyGradients(session, byKey);
      } else {
        Session.Runner r = session.runner().fetch(fused.loss());
        step = () -> r.run().close();
      }
    }
    fed = List.copyOf(feeds.values());
    stateBytes = stateBytes(graph, model);
  }

  /** The values of {@code ops}, in one run (the tensors outlive the run's result object). */
  private static List<Tensor> fetchAll(Session session, List<Operand<TFloat32>> ops) {
    Session.Runner r = session.runner();
    ops.forEach(r::fetch);
    var result = r.run();
    List<Tensor> out = new ArrayList<>();
    for (int i = 0; i < ops.size(); i++) {
      out.add(result.get(i));
    }
    return out;
  }

  /** Builds a case; the caller closes it. */
  static BenchCase create(Candidate optimizer, Path path, List<Shape> shapes) {
    if (optimizer.framework() != (path == Path.FUSED_KERNEL)) {
      throw new IllegalArgumentException(optimizer.csv + " does not run on path " + path.csv);
    }
    return new BenchCase(optimizer, path, shapes, false);
  }

  /** Framework Adam's {@code applyGradients} with the gradient fed: the xla-apply reference. */
  static BenchCase adamApplyOnly(List<Shape> shapes) {
    return new BenchCase(Candidate.ADAM_FRAMEWORK, Path.FUSED_KERNEL, shapes, true);
  }

  /**
   * The drop-in (ref-variable) optimizer of a candidate: the framework's own, or {@link
   * FisherOptimizer#create} of its algorithm with the default name and options (the float learning
   * rate read as the decimal it was written as, as the float constructors do).
   */
  private static Optimizer refOptimizer(Graph g, Candidate o) {
    return o.framework()
        ? o.framework.apply(g)
        : FisherOptimizer.create(o.algorithm, g, o.algorithm.displayName(),
            FisherOptions.exact(LEARNING_RATE), o.algorithm.defaultOptions());
  }

  /** Uniform values in [−1, 1), seeded per variable (made by the graph's initializers if init). */
  private static Operand<TFloat32> initial(Ops tf, Shape shape, int seed, boolean initScope) {
    Ops init = initScope ? tf.withInitScope() : tf;
    Operand<TFloat32> u = init.random.randomUniform(
        init.constant(shape), TFloat32.class, RandomUniform.seed(1L).seed2((long) seed));
    return init.math.sub(init.math.mul(u, init.constant(2f)), init.constant(1f));
  }

  /** ½·Σ over every variable of Σw². */
  private static Operand<TFloat32> halfSumOfSquares(
      Ops tf, List<Operand<TFloat32>> ws, List<Shape> shapes) {
    Operand<TFloat32> total = null;
    for (int i = 0; i < ws.size(); i++) {
      Operand<TFloat32> w = ws.get(i);
      int[] axes = new int[shapes.get(i).numDimensions()];
      for (int a = 0; a < axes.length; a++) {
        axes[a] = a;
      }
      Operand<TFloat32> s = tf.sum(tf.math.square(w), tf.constant(axes));
      total = total == null ? s : tf.math.add(total, s);
    }
    return tf.math.mul(tf.constant(0.5f), total);
  }

  /**
   * Bytes of every variable in the graph that is not a model variable: the optimizer's slots,
   * step counters and beta powers, from their dtypes and shapes.
   */
  private static long stateBytes(Graph graph, List<String> model) {
    long bytes = 0;
    for (Iterator<GraphOperation> it = graph.operations(); it.hasNext(); ) {
      GraphOperation op = it.next();
      String type = op.type();
      if (!(type.equals(Optimizer.VARIABLE_V2) || type.equals("VarHandleOp")) || model.contains(op.name())) {
        continue;
      }
      DataType dt = op.attributes().getAttrType("dtype");
      bytes += op.attributes().getAttrShape("shape").size() * byteSize(dt);
    }
    return bytes;
  }

  private static int byteSize(DataType dt) {
    return switch (dt) {
      case DT_FLOAT, DT_INT32 -> 4;
      case DT_DOUBLE, DT_INT64 -> 8;
      case DT_HALF, DT_BFLOAT16 -> 2;
      default -> throw new IllegalStateException("unexpected state dtype " + dt);
    };
  }

  /** Runs {@code n} steps. */
  void run(int n) {
    for (int i = 0; i < n; i++) {
      step.run();
    }
  }

  long params() {
    return shapes.stream().mapToLong(Shape::size).sum();
  }

  int variables() {
    return shapes.size();
  }

  /** Optimizer state bytes per parameter, measured from the graph's state variables. */
  double stateBytesPerParam() {
    return (double) stateBytes / params();
  }

  String label() {
    return String.format(Locale.ROOT, "%s/%s", optimizer.csv, path.csv);
  }

  @Override
  public void close() {
    fed.forEach(Tensor::close);
    session.close();
    graph.close();
  }

}
