package org.fadam.tools;

import com.google.gson.GsonBuilder;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.fadam.Algorithm;
import org.fadam.FAdam;
import org.fadam.FisherOptions;
import org.fadam.FisherTrainStep;
import org.fadam.Operands;
import org.fadam.ResourceVariable;
import org.fadam.demo.Batches;
import org.fadam.demo.Demo;
import org.fadam.demo.DemoModel;
import org.fadam.demo.MarkovSource;
import org.tensorflow.Graph;
import org.tensorflow.Operand;
import org.tensorflow.SavedModelBundle;
import org.tensorflow.Session;
import org.tensorflow.Signature;
import org.tensorflow.Tensor;
import org.tensorflow.ndarray.Shape;
import org.tensorflow.op.Ops;
import org.tensorflow.op.core.Placeholder;
import org.tensorflow.types.TBfloat16;
import org.tensorflow.types.TFloat32;
import org.tensorflow.types.TFloat64;
import org.tensorflow.types.TString;
import org.tensorflow.types.family.TFloating;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/**
 * The Java side of the Python test suite ({@code fadam-tf-tests/src/test/python}): the models
 * Python TensorFlow must run as its own, and the check that Python's re-export continues in Java.
 *
 * <ul>
 *   <li>{@code export --out OUT}: for each model of {@link #TRAINED} ({@code demo}: the demo's
 *       FAdam language model; {@code bf16}: bfloat16 parameters under FAdafactor with a factored
 *       matrix) trains {@value #BEFORE} steps, exports {@code OUT/<model>/model}, then trains
 *       {@value #STEPS} more and writes their batches, Java's losses, the predictions at the
 *       export, every variable's value after the last step and {@code manifest.json}. Also
 *       exports {@code OUT/float64/model} (a float64 parameter) and {@code OUT/print/model} (a
 *       PrintV2 op in the step), which a TPU job cannot run, {@code OUT/error/model} (a float32
 *       model under the ERROR policy, for the launcher's non-finite check) and {@code
 *       OUT/dropin/model} (the drop-in path's VariableV2 model, exported with TF Java's exporter).
 *   <li>{@code continue --model MODEL --from SAVEDMODEL --first K --steps N --out FILE.npy}: loads
 *       SAVEDMODEL with {@link FisherTrainStep#loadSavedModel}, calls its {@code train} signature
 *       on batches K … K+N−1 of MODEL and writes the losses.
 *   <li>{@code summaries --model MODEL --steps N --out DIR}: trains MODEL N steps, writing every
 *       step's TensorBoard scalars with {@link org.fadam.Summaries} into {@code DIR/java} and what
 *       each step returned (its step, loss and {@link org.fadam.StepTelemetry}) into {@code
 *       DIR/steps.json}, for the suite to read back from the event file.
 * </ul>
 *
 * Arrays are {@code .npy} files ({@link Npz#npy}; bfloat16 as its raw bits, {@code <u2}).
 */
@Command(name = "python-interop",
    description = "The Java side of the Python suite: export its models, or continue training a "
        + "SavedModel (Python's re-export) on a model's batches.")
public final class PythonInterop extends Tool {

  /** Models that train and whose numbers Python compares. */
  static final List<String> TRAINED = List.of("demo", "bf16");
  /** Java steps before the export. */
  static final int BEFORE = 2;
  /** Java steps after the export, whose losses Python must reproduce. */
  static final int STEPS = 6;

  private static final int DEMO_BATCH = 64;
  private static final int BF16_FEATURES = 8;
  private static final int BF16_HIDDEN = 16;
  private static final int BF16_CLASSES = 4;
  private static final int BF16_BATCH = 32;

  @Parameters(index = "0", paramLabel = "ACTION", description = "export or continue")
  String action;

  @Option(names = "--out", paramLabel = "PATH", required = true,
      description = "export: the folder to create; continue: the .npy file of the losses")
  Path out;

  @Option(names = "--model", paramLabel = "NAME", description = "continue: demo or bf16 (whose batches)")
  String model;

  @Option(names = "--from", paramLabel = "DIR", description = "continue: the SavedModel to load")
  Path savedModel;

  @Option(names = "--first", paramLabel = "K", defaultValue = "0", description = "continue: the first batch")
  int first;

  @Option(names = "--steps", paramLabel = "N", defaultValue = "1", converter = PositiveInt.class,
      description = "continue: the number of steps")
  int steps;

  @Override
  protected int run() throws IOException {
    switch (action) {
      case "export" -> {
        for (String m : TRAINED) {
          exportTrained(m, out.resolve(m));
        }
        exportUntrained("float64", out.resolve("float64"));
        exportUntrained("print", out.resolve("print"));
        exportUntrained("error", out.resolve("error"));
        exportDropIn(out.resolve("dropin"));
      }
      case "continue" -> {
        if (model == null || savedModel == null || first < 0) {
          throw usageError("continue needs --model, --from and --first >= 0");
        }
        continueIn(model, savedModel, first, steps, out);
      }
      case "summaries" -> {
        if (model == null) {
          throw usageError("summaries needs --model");
        }
        summaries(model, steps, out);
      }
      default -> throw usageError("ACTION must be export, continue or summaries; got " + action);
    }
    return 0;
  }

  /** Entry point. */
  public static void main(String[] args) {
    exit(new PythonInterop(), args);
  }

  /** A model with its train step, session and deterministic batches. */
  private interface Subject extends AutoCloseable {
    FisherTrainStep step();

    Session session();

    /** The inputs of batch {@code k} (a function of k alone), by input name. */
    Map<String, Tensor> batch(int k);

    @Override
    void close();
  }

  private static Subject create(String model) {
    return switch (model) {
      case "demo" -> new DemoSubject();
      case "bf16" -> new GraphSubject(Bf16Model.build(new Graph()), Bf16Model::batch);
      default -> throw new IllegalArgumentException("unknown model '" + model + "'; expected demo or bf16");
    };
  }

  /** Trains {@code steps} steps writing summaries into {@code dir/java} and the steps' results into {@code dir/steps.json}. */
  private static void summaries(String model, int steps, Path dir) throws IOException {
    List<Map<String, Object>> rows = new ArrayList<>();
    try (Subject m = create(model);
        org.fadam.Summaries board = org.fadam.Summaries.open(dir.resolve("java"), 1)) {
      for (int k = 0; k < steps; k++) {
        Map<String, Tensor> feeds = m.batch(k);
        FisherTrainStep.Result r;
        try {
          r = m.step().train(m.session(), feeds);
        } finally {
          feeds.values().forEach(Tensor::close);
        }
        board.write(r);
        Map<String, Object> row = new LinkedHashMap<>();
        row.put("step", r.step());
        row.put(org.fadam.Summaries.LOSS, (double) r.loss());
        for (String n : org.fadam.StepTelemetry.NAMES) {
          row.put(n, r.telemetry().get(n));
        }
        rows.add(row);
      }
    }
    Files.writeString(dir.resolve("steps.json"),
        new GsonBuilder().serializeSpecialFloatingPointValues().create().toJson(rows), StandardCharsets.UTF_8);
  }

  private static void exportTrained(String model, Path dir) throws IOException {
    Files.createDirectories(dir);
    try (Subject s = create(model)) {
      for (int k = 0; k < BEFORE; k++) {
        train(s, k);
      }
      s.step().export(s.session(), dir.resolve("model"));
      // Predictions at the exported state, on the first batch after it.
      Map<String, Tensor> predictIn = s.batch(BEFORE);
      List<String> serveInputs = List.copyOf(s.step().serveSignature().orElseThrow().getInputs().keySet());
      Session.Runner r = s.session().runner();
      for (String n : serveInputs) {
        r.feed(s.step().input(n), predictIn.get(n));
        writeNpy(dir.resolve("predict." + n + ".npy"), predictIn.get(n));
      }
      try (var out = r.fetch(s.step().predictions().orElseThrow()).run()) {
        writeNpy(dir.resolve("predictions.npy"), out.get(0));
      }
      predictIn.values().forEach(Tensor::close);
      float[] losses = new float[STEPS];
      for (int i = 0; i < STEPS; i++) {
        int k = BEFORE + i;
        Map<String, Tensor> in = s.batch(k);
        for (Map.Entry<String, Tensor> e : in.entrySet()) {
          writeNpy(dir.resolve("batch" + k + "." + e.getKey() + ".npy"), e.getValue());
        }
        in.values().forEach(Tensor::close);
        losses[i] = train(s, k);
      }
      try (TFloat32 l = TFloat32.vectorOf(losses)) {
        writeNpy(dir.resolve("losses.npy"), l);
      }
      Ops tf = Ops.create((Graph) s.step().parameters().get(0).handle().env());
      List<Map<String, Object>> vars = new ArrayList<>();
      Session.Runner read = s.session().runner();
      for (ResourceVariable<?> v : s.step().variables()) {
        read.fetch(v.read(tf));
      }
      try (var values = read.run()) {
        int i = 0;
        for (ResourceVariable<?> v : s.step().variables()) {
          String file = "final." + v.name().replace('/', '.') + ".npy";
          Tensor value = values.get(i++);
          writeNpy(dir.resolve(file), value);
          Map<String, Object> m = new LinkedHashMap<>();
          m.put("name", v.name());
          m.put("dtype", ReplayExport.dtype(value.dataType()));
          m.put("shape", v.shape().asArray());
          m.put("trainable", s.step().parameters().contains(v));
          m.put("final", file);
          vars.add(m);
        }
      }
      Map<String, Object> manifest = new LinkedHashMap<>();
      manifest.put("model", model);
      manifest.put("before", BEFORE);
      manifest.put("steps", STEPS);
      manifest.put("inputs", signatureInputs(s.step()));
      manifest.put("serve_inputs", serveInputs);
      manifest.put("variables", vars);
      Files.writeString(dir.resolve("manifest.json"),
          new GsonBuilder().setPrettyPrinting().create().toJson(manifest), StandardCharsets.UTF_8);
    }
  }

  private static float train(Subject s, int k) {
    Map<String, Tensor> in = s.batch(k);
    try {
      return s.step().train(s.session(), in).loss();
    } finally {
      in.values().forEach(Tensor::close);
    }
  }

  private static List<String> signatureInputs(FisherTrainStep step) {
    return List.copyOf(step.trainSignature().getInputs().keySet());
  }

  /** Loads a SavedModel (Java's or Python's) and continues training on MODEL's batches. */
  private static void continueIn(String model, Path savedModel, int first, int steps, Path out) throws IOException {
    float[] losses = new float[steps];
    try (Subject s = create(model); SavedModelBundle bundle = FisherTrainStep.loadSavedModel(savedModel)) {
      var train = bundle.function(FisherTrainStep.TRAIN);
      for (int i = 0; i < steps; i++) {
        Map<String, Tensor> in = s.batch(first + i);
        try (var result = train.call(in)) {
          losses[i] = ((TFloat32) result.get(FisherTrainStep.LOSS).orElseThrow()).getFloat();
        } finally {
          in.values().forEach(Tensor::close);
        }
      }
    }
    try (TFloat32 l = TFloat32.vectorOf(losses)) {
      writeNpy(out, l);
    }
  }

  /** The demo's FAdam model at the demo's default sizes, on batches of its Markov source. */
  private static final class DemoSubject implements Subject {
    private final DemoModel model;
    private final List<Batches.Batch> batches = new ArrayList<>();
    private final Batches sampler;

    DemoSubject() {
      Demo.Settings demo = Demo.Options.defaults(Path.of("unused")).settings();
      DemoModel.Config config = new DemoModel.Config(MarkovSource.DEFAULT_VOCAB_SIZE, demo.embed(),
          demo.hidden(), demo.learningRate(), demo.seed(), true);
      this.model = DemoModel.create(Algorithm.FADAM, config);
      int[] stream = MarkovSource.createDefault().sample(demo.seed(), 1 << 14);
      this.sampler = new Batches(stream, DEMO_BATCH, DemoModel.CONTEXT, demo.seed());
    }

    @Override
    public FisherTrainStep step() {
      return model.step();
    }

    @Override
    public Session session() {
      return model.session();
    }

    @Override
    public Map<String, Tensor> batch(int k) {
      while (batches.size() <= k) {
        batches.add(sampler.next());
      }
      Batches.Batch b = batches.get(k);
      Map<String, Tensor> m = new LinkedHashMap<>();
      m.put(DemoModel.TOKENS, DemoModel.tokens(b));
      m.put(DemoModel.LABELS, DemoModel.labels(b));
      return m;
    }

    @Override
    public void close() {
      model.close();
    }
  }

  /** A train step built in a graph of its own, with its session. */
  private static final class GraphSubject implements Subject {
    private final FisherTrainStep step;
    private final Session session;
    private final java.util.function.IntFunction<Map<String, Tensor>> batches;
    private final Graph graph;

    GraphSubject(FisherTrainStep step, java.util.function.IntFunction<Map<String, Tensor>> batches) {
      this.step = step;
      this.graph = (Graph) step.parameters().get(0).handle().env();
      this.session = new Session(graph);
      session.initialize();
      this.batches = batches;
    }

    @Override
    public FisherTrainStep step() {
      return step;
    }

    @Override
    public Session session() {
      return session;
    }

    @Override
    public Map<String, Tensor> batch(int k) {
      return batches.apply(k);
    }

    @Override
    public void close() {
      session.close();
      graph.close();
    }
  }

  /**
   * A two-layer classifier with bfloat16 parameters (the TPU's native type): float32 inputs are
   * cast to bfloat16, the logits back to float32 for the loss. FAdafactor with
   * {@code factoredMinDim} 8, so {@code w1} (8×16) keeps row and column factors; slots are float32.
   */
  static final class Bf16Model {
    private Bf16Model() {}

    static FisherTrainStep build(Graph graph) {
      Ops tf = Ops.create(graph);
      Random rnd = new Random(7);
      var w1 = ResourceVariable.create(tf, "w1", bf16(tf, normal(rnd, BF16_FEATURES, BF16_HIDDEN)));
      var b1 = ResourceVariable.create(tf, "b1", bf16(tf, new float[BF16_HIDDEN]));
      var w2 = ResourceVariable.create(tf, "w2", bf16(tf, normal(rnd, BF16_HIDDEN, BF16_CLASSES)));
      var b2 = ResourceVariable.create(tf, "b2", bf16(tf, new float[BF16_CLASSES]));
      return FisherTrainStep.builder(graph)
          .fadafactor(0.01, FisherOptions.builder().factoredMinDim(8).build())
          .input("x", TFloat32.class, Shape.of(-1, BF16_FEATURES))
          .input("y", TFloat32.class, Shape.of(-1, BF16_CLASSES))
          .variables(List.of(w1, b1, w2, b2))
          .loss((ops, in, v) -> ops.math.mean(
              ops.nn.softmaxCrossEntropyWithLogits(logits(ops, in.float32("x"), v), in.float32("y")).loss(),
              ops.constant(0)))
          .predictions((ops, in, v) -> ops.nn.softmax(logits(ops, in.float32("x"), v)), "x")
          .build();
    }

    private static Operand<TFloat32> logits(Ops tf, Operand<TFloat32> x, Operands v) {
      Operand<TBfloat16> h = tf.math.tanh(tf.math.add(
          tf.linalg.matMul(tf.dtypes.cast(x, TBfloat16.class), v.get("w1", TBfloat16.class)),
          v.get("b1", TBfloat16.class)));
      Operand<TBfloat16> z = tf.math.add(tf.linalg.matMul(h, v.get("w2", TBfloat16.class)),
          v.get("b2", TBfloat16.class));
      return tf.dtypes.cast(z, TFloat32.class);
    }

    private static Operand<TBfloat16> bf16(Ops tf, float[][] values) {
      Ops init = tf.withInitScope();
      return init.dtypes.cast(init.constant(values), TBfloat16.class);
    }

    private static Operand<TBfloat16> bf16(Ops tf, float[] values) {
      Ops init = tf.withInitScope();
      return init.dtypes.cast(init.constant(values), TBfloat16.class);
    }

    /** Batch k: a seeded classification batch ({@link ResumeProbe#classBatch}). */
    static Map<String, Tensor> batch(int k) {
      return new LinkedHashMap<>(ResumeProbe.classBatch(2000L + k, BF16_BATCH, BF16_FEATURES, BF16_CLASSES));
    }
  }

  private static float[][] normal(Random rnd, int rows, int cols) {
    float[][] m = new float[rows][cols];
    for (float[] row : m) {
      for (int j = 0; j < cols; j++) {
        row[j] = (float) (rnd.nextGaussian() / Math.sqrt(rows));
      }
    }
    return m;
  }

  /**
   * Exports a drop-in model ({@code VariableV2} parameter, {@link FAdam} as a graph optimizer)
   * with TF Java's exporter, as a user of the drop-in path would: a {@code train} signature whose
   * {@code loss} (input {@code x}, 3 floats) runs one step. Python loads it, but TensorFlow 2 makes
   * no variables of reference variables, and XLA compiles none.
   */
  private static void exportDropIn(Path dir) throws IOException {
    Files.createDirectories(dir);
    try (Graph g = new Graph()) {
      Ops tf = Ops.create(g);
      var x = tf.withName("x").placeholder(TFloat32.class, Placeholder.shape(Shape.of(3)));
      var w = tf.withName("w").variable(tf.constant(new float[] {0.5f, -1f, 2f}));
      var loss = tf.reduceSum(tf.math.square(tf.math.mul(tf.identity(w), x)), tf.constant(0));
      var train = new FAdam(g, 0.1f).minimize(loss, "train");
      var stepped = tf.withControlDependencies(List.of(train)).withName("loss").identity(loss);
      try (Session s = new Session(g)) {
        s.initialize();
        SavedModelBundle.exporter(dir.resolve("model").toString()).withSession(s)
            .withSignature(Signature.builder().key(FisherTrainStep.TRAIN).input("x", x)
                .output(FisherTrainStep.LOSS, stepped).build())
            .export();
      }
    }
  }

  /**
   * Exports an untrained model (input {@code x} [batch, 4], one-hot {@code y} [batch, 3], weight
   * {@code w} [4, 3]): {@code float64}, a float64 weight, and {@code print}, a float32 model whose
   * step prints its loss (PrintV2, a host-only op), which a TPU job cannot run; {@code error}, a
   * float32 model under the non-finite policy ERROR, XLA-compiled.
   */
  private static void exportUntrained(String kind, Path dir) throws IOException {
    Files.createDirectories(dir);
    try (Graph g = new Graph()) {
      Ops tf = Ops.create(g);
      Random rnd = new Random(3);
      boolean f64 = kind.equals("float64");
      Operand<? extends TFloating> init = f64
          ? tf.withInitScope().dtypes.cast(tf.withInitScope().constant(normal(rnd, 4, 3)), TFloat64.class)
          : tf.withInitScope().constant(normal(rnd, 4, 3));
      var w = ResourceVariable.create(tf, "w", init);
      FisherOptions options = kind.equals("error")
          ? FisherOptions.builder().nonFinite(FisherOptions.NonFinitePolicy.ERROR).build()
          : FisherOptions.defaults();
      FisherTrainStep step = FisherTrainStep.builder(g)
          .fadam(0.01, options)
          .input("x", TFloat32.class, Shape.of(-1, 4))
          .input("y", TFloat32.class, Shape.of(-1, 3))
          .variables(List.of(w))
          .loss((ops, in, v) -> {
            Operand<TFloat32> wf = f64 ? ops.dtypes.cast(v.float64("w"), TFloat32.class) : v.float32("w");
            Operand<TFloat32> logits = ops.linalg.matMul(in.float32("x"), wf);
            Operand<TFloat32> loss = ops.math.mean(
                ops.nn.softmaxCrossEntropyWithLogits(logits, in.float32("y")).loss(), ops.constant(0));
            if (!kind.equals("print")) {
              return loss;
            }
            Operand<TString> text = ops.strings.stringFormat(List.of(loss));
            return ops.withControlDependencies(List.of(ops.print(text))).identity(loss);
          })
          .jit(kind.equals("error"))
          .build();
      try (Session s = new Session(g)) {
        s.initialize();
        step.export(s, dir.resolve("model"));
      }
    }
  }

  /** Writes a tensor as a {@code .npy} file (bfloat16 as its raw bits, {@code <u2}). */
  static void writeNpy(Path file, Tensor t) throws IOException {
    var data = t.asRawTensor().data();
    byte[] raw = new byte[(int) data.size()];
    data.read(raw);
    Files.write(file, Npz.npy(ReplayExport.descr(t.dataType()), t.shape().asArray(), raw));
  }
}
