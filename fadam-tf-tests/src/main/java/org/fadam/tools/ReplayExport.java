package org.fadam.tools;

import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.io.IOException;
import java.io.Reader;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.OptionalInt;
import java.util.Random;
import java.util.function.Supplier;
import java.util.stream.Stream;
import org.fadam.Algorithm;
import org.fadam.FisherOptions;
import org.fadam.FisherTrainStep;
import org.fadam.ResourceVariable;
import org.fadam.demo.Batches;
import org.fadam.demo.Demo;
import org.fadam.demo.DemoModel;
import org.fadam.demo.LanguageModel;
import org.fadam.demo.TransformerModel;
import org.fadam.demo.MarkovSource;
import org.tensorflow.Graph;
import org.tensorflow.GraphOperation;
import org.tensorflow.Operand;
import org.tensorflow.Output;
import org.tensorflow.Session;
import org.tensorflow.Tensor;
import org.tensorflow.internal.types.registry.TensorTypeRegistry;
import org.tensorflow.ndarray.Shape;
import org.tensorflow.ndarray.buffer.DataBuffers;
import org.tensorflow.op.Ops;
import org.tensorflow.proto.DataType;
import org.tensorflow.types.TBfloat16;
import org.tensorflow.types.TFloat32;
import org.tensorflow.types.family.TType;

/**
 * Exports XLA-compiled train steps for replay by {@code scripts/gpu-replay} on a machine with
 * XLA (JAX) but no Java or TensorFlow: per configuration, the HLO module of the step as TF's XLA
 * compiled it ({@code NAME.hlo.pb}, an {@code HloModuleProto}), a manifest entry naming each HLO
 * parameter and output (dtype, shape, and which output is written back as which parameter), and
 * for a checked configuration an {@code NAME.npz} with the step's inputs and the outputs TF
 * computed on this CPU after steps 1 and 3.
 *
 * <p>XLA reads {@code XLA_FLAGS} once, when it starts, so each configuration runs in a child JVM
 * of its own, dumping into a folder of its own. The parameter order is not assumed: it is read
 * from the dumped module's entry computation and checked, parameter by parameter, against the
 * step's call op (its inputs are the data inputs, then every variable's handle), dtype and shape;
 * the outputs likewise against the call's results and the module's input/output aliasing.
 */
public final class ReplayExport {

  /** The manifest's file name in the output folder. */
  public static final String MANIFEST = "manifest.json";
  /** Steps after which the CPU's outputs are kept for checked configurations. */
  static final int[] CHECKED_STEPS = {1, 3};

  /** Where the configuration's step comes from. */
  public enum Model {
    /**
     * The optimizer alone on one variable: the step's {@code apply_gradients} function (gradient
     * in; the update of the parameter, its slots and the counters), as a data-parallel job runs it.
     */
    OPTIMIZER,
    /** The demo model's whole train step (forward, gradients, optimizer). */
    DEMO,
    /**
     * The demo's default transformer's whole train step (attention: batched matmuls, softmax,
     * the causal mask, layer norms, GELU), trained as {@code scripts/demo --model transformer}.
     */
    TRANSFORMER
  }

  /**
   * One exported step.
   *
   * @param name file stem and manifest key
   * @param model what the step trains
   * @param algorithm the update rule
   * @param dtype the parameters' dtype (float32 or bfloat16; the demo models are float32)
   * @param shape the variable's shape (OPTIMIZER), ignored for the demo models
   * @param checked whether the CPU's inputs and outputs after steps 1 and 3 are exported (small
   *     steps) or only the HLO (benchmark sizes, timed with random inputs)
   */
  public record Config(String name, Model model, Algorithm algorithm, String dtype, long[] shape, boolean checked) {

    /**
     * The bytes per parameter that the optimizer-only step must at least move ({@link
     * Algorithm#minimumBytesPerParameter} at the paper's defaults), or empty for the demo's whole
     * step, which has no such figure. {@code scripts/gpu-replay} reads it from the manifest.
     */
    public OptionalInt minimumBytesPerParameter() {
      if (model != Model.OPTIMIZER) {
        return OptionalInt.empty();
      }
      int parameterBytes = switch (dtype) {
        case "float32" -> 4;
        case "bfloat16" -> 2;
        default -> throw new IllegalArgumentException("no replay of " + dtype + " parameters");
      };
      return OptionalInt.of(algorithm.minimumBytesPerParameter(
          Shape.of(shape), algorithm.defaultOptions(), parameterBytes));
    }
  }

  /** The small, checked optimizer steps' shape: both dimensions ≥ 128, so FAdafactor factors. */
  static final long[] CHECK_SHAPE = {128, 256};
  /** The benchmark shape: 1.68·10^7 parameters, the largest of scripts/bench. */
  static final long[] BENCH_SHAPE = {4096, 4096};

  /** The optimizers of the {@code ci} set; the {@code gpu} set has every one (the baselines too). */
  static final List<Algorithm> CI_OPTIMIZERS = List.of(Algorithm.FADAM, Algorithm.FADAFACTOR);

  /** The named sets: {@code ci} (checked steps), {@code gpu} (those plus the benchmark sizes). */
  public static List<Config> set(String name) {
    List<Config> checked = new ArrayList<>(); // FAdam and FAdafactor: the ci set
    List<Config> extra = new ArrayList<>(); // the baselines, checked too, on the GPU machine only
    List<Config> timed = new ArrayList<>();
    for (Algorithm o : Algorithm.values()) {
      for (String dtype : List.of("float32", "bfloat16")) {
        String d = dtype.equals("float32") ? "f32" : "bf16";
        (CI_OPTIMIZERS.contains(o) ? checked : extra).add(new Config(o.cliName() + "_" + d + "_" + dims(CHECK_SHAPE), Model.OPTIMIZER, o, dtype, CHECK_SHAPE, true));
        timed.add(new Config(o.cliName() + "_" + d + "_" + dims(BENCH_SHAPE), Model.OPTIMIZER, o, dtype, BENCH_SHAPE, false));
      }
    }
    for (Algorithm o : Algorithm.values()) {
      (CI_OPTIMIZERS.contains(o) ? checked : extra)
          .add(new Config("demo_" + o.cliName(), Model.DEMO, o, "float32", new long[0], true));
    }
    for (Algorithm o : Algorithm.values()) { // FAdam's in the ci set: the suite replays attention
      (o == Algorithm.FADAM ? checked : extra)
          .add(new Config("transformer_" + o.cliName(), Model.TRANSFORMER, o, "float32", new long[0], true));
    }
    return switch (name) {
      case "ci" -> checked;
      case "gpu" -> {
        List<Config> all = new ArrayList<>(checked);
        all.addAll(extra);
        all.addAll(timed);
        yield all;
      }
      default -> throw new IllegalArgumentException("unknown set \"" + name + "\"; expected ci or gpu");
    };
  }

  private static String dims(long[] shape) {
    return String.join("x", Arrays.stream(shape).mapToObj(Long::toString).toList());
  }

  private ReplayExport() {}

  /**
   * The child JVM's entry: exports configuration {@code args[0]} into folder {@code args[1]}; XLA
   * dumps into {@code FADAM_REPLAY_DUMP}, which {@link #export} set with {@code XLA_FLAGS}.
   */
  public static void main(String[] args) {
    try {
      if (args.length != 2 || System.getenv("FADAM_REPLAY_DUMP") == null) {
        throw new IllegalArgumentException("usage: ReplayExport CONFIG OUT (started by scripts/xla-dump --replay)");
      }
      exportOne(find(args[0]), Path.of(args[1]), Path.of(System.getenv("FADAM_REPLAY_DUMP")));
    } catch (IOException | RuntimeException e) {
      System.err.println("xla-dump: " + e.getMessage());
      System.exit(1);
    }
  }

  private static Config find(String name) {
    for (Config c : set("gpu")) {
      if (c.name().equals(name)) {
        return c;
      }
    }
    throw new IllegalArgumentException("no configuration " + name);
  }

  /** The configurations of {@code set} named in {@code only} (all when it is empty). */
  static List<Config> select(List<Config> set, List<String> only) {
    if (only.isEmpty()) {
      return set;
    }
    List<Config> out = new ArrayList<>();
    for (String n : only) {
      out.add(set.stream().filter(c -> c.name().equals(n.strip())).findFirst().orElseThrow(() ->
          new IllegalArgumentException("no configuration \"" + n + "\" in the set; it has "
              + set.stream().map(Config::name).toList())));
    }
    return out;
  }

  /**
   * Exports every configuration into {@code out}, each in a child JVM, and writes the manifest.
   *
   * @throws IllegalStateException if a child fails (its output names the reason)
   */
  public static void export(List<Config> configs, Path out, java.io.PrintWriter log)
      throws IOException, InterruptedException {
    Files.createDirectories(out);
    JsonArray entries = new JsonArray();
    for (Config c : configs) {
      Path dump = Files.createTempDirectory("fadam-xla-dump-");
      try {
        runChild(c, out, dump);
      } finally {
        deleteTree(dump);
      }
      Path entry = out.resolve(c.name() + ".json");
      try (Reader r = Files.newBufferedReader(entry, StandardCharsets.UTF_8)) {
        entries.add(JsonParser.parseReader(r));
      }
      Files.delete(entry);
      log.println("exported " + c.name());
      log.flush();
    }
    JsonObject manifest = new JsonObject();
    manifest.addProperty("format", 1);
    manifest.addProperty("checked_steps", Arrays.toString(CHECKED_STEPS));
    manifest.add("configs", entries);
    write(out.resolve(MANIFEST), manifest);
  }

  private static void runChild(Config c, Path out, Path dump) throws IOException, InterruptedException {
    String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
    ProcessBuilder pb = new ProcessBuilder(java, "-cp", System.getProperty("java.class.path"),
        ReplayExport.class.getName(), c.name(), out.toString());
    String flags = System.getenv().getOrDefault("XLA_FLAGS", "")
        .replaceAll("--xla_dump_to=\\S*|--xla_dump_hlo_as_proto\\S*", "").strip();
    pb.environment().put("XLA_FLAGS", (flags.isEmpty() ? "" : flags + " ")
        + "--xla_dump_to=" + dump + " --xla_dump_hlo_as_proto");
    pb.environment().put("FADAM_REPLAY_DUMP", dump.toString());
    pb.environment().putIfAbsent("TF_CPP_MIN_LOG_LEVEL", "2");
    pb.inheritIO();
    int rc = pb.start().waitFor();
    if (rc != 0) {
      throw new IllegalStateException("exporting " + c.name() + " failed (exit status " + rc + ")");
    }
  }

  /** In the child: builds the step, runs it, and writes NAME.hlo.pb, NAME.npz, NAME.json. */
  static void exportOne(Config c, Path out, Path dump) throws IOException {
    Files.createDirectories(out);
    try (Stepper s = switch (c.model()) {
      case DEMO -> demo(c);
      case TRANSFORMER -> transformer(c);
      case OPTIMIZER -> optimizer(c);
    }) {
      s.export(c, out, dump);
    }
  }

  /** A built train step with its session, and the data inputs of each step. */
  private abstract static class Stepper implements AutoCloseable {
    abstract FisherTrainStep step();

    /**
     * The call op of the exported function: the whole train step over the variables' handles (the
     * {@code train} signature's, which the export carries) unless overridden.
     */
    GraphOperation call() {
      String loss = step().trainSignature().getOutputs().get(FisherTrainStep.LOSS).name;
      return graph().operationOrThrow(loss.substring(0, loss.indexOf(":")));
    }

    abstract Session session();

    abstract Graph graph();

    /** The data inputs of step {@code k} (1-based), by input name. */
    abstract Map<String, Tensor> feeds(int k);

    @Override
    public abstract void close();

    /** Model parameters, for bytes-per-parameter figures. */
    long parameterCount() {
      return step().parameterCount();
    }

    void export(Config c, Path out, Path dump) throws IOException {
      GraphOperation call = call();
      org.tensorflow.ConcreteFunction function = call.attributes().getAttrFunction("f");
      List<String> resultNames = function.getFunctionDef().getSignature().getOutputArgList().stream()
          .map(org.tensorflow.proto.OpDef.ArgDef::getName).toList();
      Ops tf = Ops.create(graph());
      int n = call.numInputs();
      List<Arg> args = new ArrayList<>();
      for (int i = 0; i < n; i++) {
        Output<?> in = call.input(i);
        GraphOperation op = (GraphOperation) in.op();
        switch (op.type()) {
          case "Placeholder" -> args.add(new Arg(op.name().substring(op.name().lastIndexOf('/') + 1), false, in, null));
          case "VarHandleOp" -> {
            DataType dt = op.attributes().getAttrType("dtype");
            Class<? extends TType> type = TensorTypeRegistry.find(dt).type();
            String name = op.name().endsWith("/handle") ? op.name().substring(0, op.name().length() - 7) : op.name();
            args.add(new Arg(name, true, in, tf.readVariableOp(in, type).asOutput()));
          }
          default -> throw new IllegalStateException("argument " + i + " of the step comes from a "
              + op.type() + " op, neither an input nor a variable handle");
        }
      }
      Map<Integer, Tensor> initial = readVariables(args);
      Npz npz = c.checked() ? Npz.create(out.resolve(c.name() + ".npz")) : null;
      List<long[]> argShapes = new ArrayList<>();
      List<String> argTypes = new ArrayList<>();
      List<String> outTypes = new ArrayList<>();
      List<long[]> outShapes = new ArrayList<>();
      try {
        for (int i = 0; i < n; i++) {
          if (args.get(i).variable()) {
            Tensor t = initial.get(i);
            argShapes.add(t.shape().asArray());
            argTypes.add(dtype(t.dataType()));
            if (npz != null) {
              add(npz, "init_p" + i, t);
            }
          } else {
            argShapes.add(null);
            argTypes.add(null);
          }
        }
        int steps = c.checked() ? CHECKED_STEPS[CHECKED_STEPS.length - 1] : 1;
        for (int k = 1; k <= steps; k++) {
          Map<String, Tensor> feeds = feeds(k);
          Session.Runner r = session().runner();
          for (int i = 0; i < n; i++) {
            Arg a = args.get(i);
            if (!a.variable()) {
              Tensor t = feeds.get(a.name());
              if (t == null) {
                throw new IllegalStateException("no data for input " + a.name());
              }
              r.feed(a.handle(), t);
              argShapes.set(i, t.shape().asArray());
              argTypes.set(i, dtype(t.dataType()));
              if (npz != null) {
                add(npz, "feed" + k + "_p" + i, t);
              }
            }
          }
          for (int j = 0; j < call.numOutputs(); j++) {
            r.fetch(call.output(j));
          }
          try (org.tensorflow.Result results = r.run()) {
            Map<Integer, Tensor> after = readVariables(args);
            try {
              if (k == 1) {
                for (int j = 0; j < call.numOutputs(); j++) {
                  outTypes.add(dtype(results.get(j).dataType()));
                  outShapes.add(results.get(j).shape().asArray());
                }
              }
              if (npz != null && isChecked(k)) {
                for (int j = 0; j < call.numOutputs(); j++) {
                  add(npz, "out" + k + "_r" + j, results.get(j));
                }
                for (Map.Entry<Integer, Tensor> e : after.entrySet()) {
                  add(npz, "out" + k + "_p" + e.getKey(), e.getValue());
                }
              }
            } finally {
              after.values().forEach(Tensor::close);
            }
          } finally {
            feeds.values().forEach(Tensor::close);
          }
        }
      } finally {
        if (npz != null) {
          npz.close();
        }
      }
      HloModuleInfo hlo = HloModuleInfo.fromHloProto(Files.readAllBytes(dumped(dump, function.getDefinedName())));
      Files.write(out.resolve(c.name() + ".hlo.pb"), hlo.moduleProto());
      JsonObject entry = manifestEntry(c, hlo, args, resultNames, argTypes, argShapes, outTypes, outShapes, initial);
      initial.values().forEach(Tensor::close);
      write(out.resolve(c.name() + ".json"), entry);
    }

    private static boolean isChecked(int step) {
      return Arrays.stream(CHECKED_STEPS).anyMatch(s -> s == step);
    }

    JsonObject manifestEntry(Config c, HloModuleInfo hlo, List<Arg> args, List<String> resultNames, List<String> argTypes,
        List<long[]> argShapes, List<String> outTypes, List<long[]> outShapes, Map<Integer, Tensor> initial) {
      if (hlo.parameters().size() != args.size()) {
        throw new IllegalStateException("the HLO module has " + hlo.parameters().size()
            + " parameters, the step's call " + args.size() + " arguments: cannot name them");
      }
      JsonArray params = new JsonArray();
      for (HloModuleInfo.Value p : hlo.parameters()) {
        Arg a = args.get(p.index());
        check("parameter " + p.index() + " (" + a.name() + ")", p, argTypes.get(p.index()), argShapes.get(p.index()));
        JsonObject o = describe(p.index(), a.name(), p);
        o.addProperty("role", a.variable() ? "variable" : "input");
        if (!c.checked()) {
          Double fill = a.variable() ? constant(initial.get(p.index())) : null;
          if (fill != null) {
            o.addProperty("fill", fill);
          } else {
            o.addProperty("random", a.variable() ? "normal(0, 1)" : "normal(0, 0.01)");
          }
        }
        params.add(o);
      }
      JsonArray outputs = new JsonArray();
      int results = 0;
      for (HloModuleInfo.Value v : hlo.outputs()) {
        Integer param = hlo.aliases().get(v.index());
        JsonObject o;
        if (param == null) {
          if (results >= outTypes.size() || v.index() != results) {
            throw new IllegalStateException("HLO output " + v.index() + " is neither one of the step's "
                + outTypes.size() + " results nor written back to a parameter");
          }
          check("output " + v.index() + " (result " + results + ")", v, outTypes.get(results), outShapes.get(results));
          o = describe(v.index(), resultNames.get(results), v);
          o.addProperty("role", "result");
          o.addProperty("key", "r" + results);
          results++;
        } else {
          Arg a = args.get(param);
          if (!a.variable()) {
            throw new IllegalStateException("HLO output " + v.index() + " is written back to input " + a.name());
          }
          check("output " + v.index() + " (" + a.name() + ")", v, argTypes.get(param), argShapes.get(param));
          o = describe(v.index(), a.name(), v);
          o.addProperty("role", "update");
          o.addProperty("param", param);
          o.addProperty("key", "p" + param);
        }
        outputs.add(o);
      }
      if (results != outTypes.size()) {
        throw new IllegalStateException("the HLO module returns " + results + " of the step's "
            + outTypes.size() + " results");
      }
      JsonObject e = new JsonObject();
      e.addProperty("name", c.name());
      e.addProperty("model", c.model().name().toLowerCase(Locale.ROOT));
      e.addProperty("algorithm", c.algorithm().cliName());
      e.addProperty("dtype", c.dtype());
      e.addProperty("parameters", parameterCount());
      c.minimumBytesPerParameter().ifPresent(b -> e.addProperty("min_bytes_per_param", b));
      e.addProperty("hlo", c.name() + ".hlo.pb");
      e.addProperty("hlo_module", hlo.name());
      if (c.checked()) {
        e.addProperty("data", c.name() + ".npz");
      }
      e.add("params", params);
      e.add("outputs", outputs);
      return e;
    }

    private Map<Integer, Tensor> readVariables(List<Arg> args) {
      Session.Runner r = session().runner();
      List<Integer> indices = new ArrayList<>();
      for (int i = 0; i < args.size(); i++) {
        if (args.get(i).variable()) {
          r.fetch(args.get(i).read());
          indices.add(i);
        }
      }
      org.tensorflow.Result res = r.run();
      Map<Integer, Tensor> out = new LinkedHashMap<>();
      for (int j = 0; j < indices.size(); j++) {
        out.put(indices.get(j), res.get(j));
      }
      return out;
    }
  }

  /** An argument of the step's call: a data input (its placeholder) or a variable (its handle). */
  private record Arg(String name, boolean variable, Output<?> handle, Output<?> read) {}

  private static JsonObject describe(int index, String name, HloModuleInfo.Value v) {
    JsonObject o = new JsonObject();
    o.addProperty("index", index);
    o.addProperty("name", name);
    o.addProperty("dtype", v.dtype());
    JsonArray shape = new JsonArray();
    Arrays.stream(v.shape()).forEach(shape::add);
    o.add("shape", shape);
    return o;
  }

  private static void check(String what, HloModuleInfo.Value v, String dtype, long[] shape) {
    if (!v.dtype().equals(dtype) || !Arrays.equals(v.shape(), shape)) {
      throw new IllegalStateException("HLO " + what + " is " + v.dtype() + Arrays.toString(v.shape())
          + " but the step's is " + dtype + Arrays.toString(shape));
    }
  }

  /** The value of a tensor whose elements are all equal, else null. */
  private static Double constant(Tensor t) {
    byte[] raw = bytes(t);
    int size = Npz.itemSize(descr(t.dataType()));
    for (int i = size; i < raw.length; i += size) {
      for (int b = 0; b < size; b++) {
        if (raw[i + b] != raw[b]) {
          return null;
        }
      }
    }
    if (raw.length == 0) {
      return null;
    }
    java.nio.ByteBuffer bb = java.nio.ByteBuffer.wrap(raw).order(java.nio.ByteOrder.LITTLE_ENDIAN);
    return switch (t.dataType()) {
      case DT_FLOAT -> (double) bb.getFloat(0);
      case DT_DOUBLE -> bb.getDouble(0);
      case DT_INT32 -> (double) bb.getInt(0);
      case DT_INT64 -> (double) bb.getLong(0);
      case DT_BFLOAT16 -> (double) Float.intBitsToFloat((bb.getShort(0) & 0xffff) << 16);
      default -> null;
    };
  }

  private static void add(Npz npz, String key, Tensor t) throws IOException {
    npz.add(key, descr(t.dataType()), t.shape().asArray(), bytes(t));
  }

  private static byte[] bytes(Tensor t) {
    var data = t.asRawTensor().data();
    byte[] raw = new byte[(int) data.size()];
    data.read(raw);
    return raw;
  }

  /** numpy's name of a TF dtype (as HloModuleInfo names XLA's). */
  static String dtype(DataType t) {
    return switch (t) {
      case DT_FLOAT -> "float32";
      case DT_DOUBLE -> "float64";
      case DT_HALF -> "float16";
      case DT_BFLOAT16 -> "bfloat16";
      case DT_INT32 -> "int32";
      case DT_INT64 -> "int64";
      case DT_BOOL -> "bool";
      default -> throw new IllegalArgumentException("no replay dtype for " + t);
    };
  }

  /** The .npy type string of a TF dtype (bfloat16 as its raw bits). */
  static String descr(DataType t) {
    return switch (t) {
      case DT_FLOAT -> "<f4";
      case DT_DOUBLE -> "<f8";
      case DT_HALF -> "<f2";
      case DT_BFLOAT16 -> "<u2";
      case DT_INT32 -> "<i4";
      case DT_INT64 -> "<i8";
      case DT_BOOL -> "|b1";
      default -> throw new IllegalArgumentException("no .npy type for " + t);
    };
  }

  /** The step function's module, before XLA's optimizations, in the child's dump folder. */
  static Path dumped(Path dump, String function) throws IOException {
    try (Stream<Path> files = Files.list(dump)) {
      List<Path> found = files.filter(p -> {
        String n = p.getFileName().toString();
        return n.contains(function) && n.endsWith(".before_optimizations.hlo.pb");
      }).sorted().toList();
      if (found.size() != 1) {
        throw new IllegalStateException("expected one HLO module of " + function + " in " + dump
            + ", found " + found + " (XLA_FLAGS must hold --xla_dump_to and --xla_dump_hlo_as_proto"
            + " when the JVM starts)");
      }
      return found.get(0);
    }
  }

  /**
   * The optimizer alone: θ of the configuration's shape and dtype; the exported function is
   * {@code apply_gradients} (the builder needs a loss: Σ g⊙θ, whose gradient is g, never run).
   */
  private static Stepper optimizer(Config c) {
    Graph graph = new Graph();
    Ops tf = Ops.create(graph);
    Random rng = new Random(20261128L);
    Shape shape = Shape.of(c.shape());
    Class<? extends TType> type = c.dtype().equals("bfloat16") ? TBfloat16.class : TFloat32.class;
    Ops init = tf.withInitScope();
    Operand<TFloat32> theta32 = init.constant(shape, DataBuffers.of(normal(rng, shape.size(), 1.0), false, false));
    ResourceVariable<? extends TType> theta = ResourceVariable.create(tf, "theta", init.dtypes.cast(theta32, type));
    double lr = FisherOptions.exact(FisherOptions.LEARNING_RATE_DEFAULT);
    FisherTrainStep step = FisherTrainStep.builder(graph)
        .algorithm(c.algorithm(), lr, c.algorithm().defaultOptions()) // the paper's defaults
        .input("grad", type, shape)
        .variables(List.of(theta))
        .loss((ops, in, v) -> ops.reduceSum(ops.math.mul(
            ops.dtypes.cast(in.get("grad"), TFloat32.class), ops.dtypes.cast(v.get("theta"), TFloat32.class)),
            ops.constant(new int[] {0, 1})))
        .build();
    Session session = new Session(graph);
    session.initialize();
    return new Stepper() {
      @Override
      FisherTrainStep step() {
        return step;
      }

      @Override
      Session session() {
        return session;
      }

      @Override
      Graph graph() {
        return graph;
      }

      @Override
      GraphOperation call() {
        // The optimizer alone: the apply_gradients function (gradients in, the update of every
        // parameter, slot and counter), not the train step with its loss.
        List<GraphOperation> calls = new ArrayList<>();
        graph.operations().forEachRemaining(op -> {
          if (op.type().equals("StatefulPartitionedCall") && op.name().contains("_" + FisherTrainStep.APPLY_GRADIENTS)) {
            calls.add(op);
          }
        });
        if (calls.size() != 1) {
          throw new IllegalStateException("expected one " + FisherTrainStep.APPLY_GRADIENTS + " call; found " + calls);
        }
        return calls.get(0);
      }

      @Override
      Map<String, Tensor> feeds(int k) {
        // A gradient of another scale each step, so that every step's numbers differ.
        float[] g = normal(rng, shape.size(), 0.01 * k);
        String key = FisherTrainStep.gradientKey("theta");
        TFloat32 g32 = TFloat32.tensorOf(shape, DataBuffers.of(g, false, false));
        if (type == TFloat32.class) {
          return Map.of(key, g32);
        }
        try (g32) {
          return Map.of(key, TBfloat16.tensorOf(shape, DataBuffers.of(g, false, false)));
        }
      }

      @Override
      public void close() {
        session.close();
        graph.close();
      }
    };
  }

  /** The demo model's whole step with the default demo's sizes, on the default demo's batches. */
  private static Stepper demo(Config c) {
    Demo.Settings s = Demo.Options.defaults(Path.of(".")).settings();
    DemoModel.Config config = new DemoModel.Config(MarkovSource.DEFAULT_VOCAB_SIZE, s.embed(),
        s.hidden(), s.learningRate(), s.seed(), true);
    DemoModel model = DemoModel.create(c.algorithm(), config);
    Batches batches = new Batches(MarkovSource.createDefault().sample(s.seed(), 4096), s.batch(), DemoModel.CONTEXT, s.seed());
    return modelStepper(model, () -> {
      Batches.Batch batch = batches.next();
      return Map.of(DemoModel.TOKENS, DemoModel.tokens(batch), DemoModel.LABELS, DemoModel.labels(batch));
    });
  }

  /**
   * The default {@code scripts/demo --model transformer} step (its shape, batch, rate, cosine
   * schedule and matrices-only decay), on the Markov source's windows.
   */
  private static Stepper transformer(Config c) {
    Demo.Settings s = Demo.parse("--model", "transformer").settings();
    TransformerModel.Architecture a = s.transformer();
    TransformerModel model = TransformerModel.create(c.algorithm(), new TransformerModel.Config(a,
        MarkovSource.DEFAULT_VOCAB_SIZE, MarkovSource.ORDER - 1, s.learningRate(), s.seed(), true, s.training()));
    Batches batches = new Batches(MarkovSource.createDefault().sample(s.seed(), 8192), s.batch(), a.context(), s.seed());
    return modelStepper(model, () -> {
      Batches.Batch batch = batches.next();
      return Map.of(TransformerModel.TOKENS, TransformerModel.tokens(batch), TransformerModel.LABELS,
          TransformerModel.labels(batch));
    });
  }

  /** A demo model's whole train step, fed a new batch from {@code feeds} at every step. */
  private static Stepper modelStepper(LanguageModel model, Supplier<Map<String, Tensor>> feeds) {
    return new Stepper() {
      @Override
      FisherTrainStep step() {
        return model.step();
      }

      @Override
      Session session() {
        return model.session();
      }

      @Override
      Graph graph() {
        return (Graph) model.step().loss().env();
      }

      @Override
      Map<String, Tensor> feeds(int k) {
        return feeds.get();
      }

      @Override
      public void close() {
        model.close();
      }
    };
  }

  private static float[] normal(Random rng, long n, double std) {
    float[] a = new float[Math.toIntExact(n)];
    for (int i = 0; i < a.length; i++) {
      a[i] = (float) (rng.nextGaussian() * std);
    }
    return a;
  }

  private static void write(Path file, JsonElement json) throws IOException {
    Gson gson = new GsonBuilder().setPrettyPrinting().create();
    try (Writer w = Files.newBufferedWriter(file, StandardCharsets.UTF_8)) {
      gson.toJson(json, w);
      w.write("\n");
    }
  }

  private static void deleteTree(Path dir) throws IOException {
    try (Stream<Path> files = Files.walk(dir)) {
      for (Path p : files.sorted(Comparator.reverseOrder()).toList()) {
        Files.deleteIfExists(p);
      }
    }
  }

}
