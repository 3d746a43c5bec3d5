package org.fadam.demo;

import java.io.IOException;
import java.io.InputStream;
import java.io.PrintStream;
import java.io.Reader;
import java.io.Writer;
import java.math.BigDecimal;
import java.nio.charset.StandardCharsets;
import java.nio.file.AccessDeniedException;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.FileSystemException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.NotDirectoryException;
import java.nio.file.Path;
import java.time.ZoneOffset;
import java.time.ZonedDateTime;
import java.time.format.DateTimeFormatter;
import java.time.temporal.ChronoUnit;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.Set;
import java.util.function.Consumer;
import java.util.stream.Stream;
import org.fadam.Algorithm;
import org.fadam.FisherOptions;
import org.fadam.FisherTrainStep;
import org.fadam.Summaries;
import org.fadam.TfRecordWriter;
import org.fadam.tools.StopSignal;
import org.fadam.tools.Tool;
import picocli.CommandLine.Command;
import picocli.CommandLine.ITypeConverter;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.TypeConversionException;

/**
 * The project's demo: trains the same small language model with FAdam, FAdafactor and their
 * baselines, the paper's Adam and Adafactor, on a synthetic order-2 Markov language whose entropy
 * rate is known exactly, and reports how far each optimizer gets from that floor.
 *
 * <p>Everything is a function of {@code --seed}: the training stream, the held-out stream, the
 * initial parameters (the same for every optimizer) and the batch of every step (derived from the
 * seed and the step number, so a resumed run sees the batches it would have seen without the
 * break). Evaluations happen at multiples of {@code --eval-every} and at the last step.
 */
public final class Demo {

  /** Default steps per optimizer: the default run of all four fits in a few minutes on 2 cores. */
  public static final int DEFAULT_STEPS = 4000;
  /** Default seed. */
  public static final long DEFAULT_SEED = 1;
  /** Default batch: rows (predicted tokens) per step. */
  public static final int DEFAULT_BATCH = 256;
  /** Default evaluation interval, steps. */
  public static final int DEFAULT_EVAL_EVERY = 200;
  /** Default embedding width per token. */
  public static final int DEFAULT_EMBED = 64;
  /** Default hidden width: ≥ 128, so FAdafactor factors W1 (128×H) and W2 (H×H). */
  public static final int DEFAULT_HIDDEN = 384;

  /** The models of {@code --model}. */
  public static final List<String> MODELS = List.of("mlp", "transformer");
  /** The transformer's default shape (see docs/demo.md for its parameter count and timing). */
  public static final TransformerModel.Architecture DEFAULT_TRANSFORMER =
      new TransformerModel.Architecture(2, 128, 4, 32, false);
  /** The transformer's default steps per optimizer: the run of all four fits in 10 minutes on 2 cores. */
  public static final int DEFAULT_TRANSFORMER_STEPS = 3000;
  /** The transformer's default batch: windows of --context tokens per step. */
  public static final int DEFAULT_TRANSFORMER_BATCH = 32;
  /** The transformer's default evaluation interval, steps. */
  public static final int DEFAULT_TRANSFORMER_EVAL_EVERY = 250;
  /** The transformer's default learning rate (its sweep's, docs/demo.md). */
  public static final double DEFAULT_TRANSFORMER_LR = 3e-3;

  /** The files a run writes into {@code --out}. */
  static final String CSV = "results.csv";
  static final String PNG = "heldout_loss.png";
  static final String MARKDOWN = "results.md";
  static final String SAVED_MODEL = "fadam-savedmodel";
  /** The settings of a saved run, next to its SavedModel, read back by {@code --resume}. */
  static final String RUN_PROPERTIES = "demo-run.properties";

  // Independent random streams derived from the seed.
  private static final long INIT_STREAM = 3; // 1, 2 and 4: DemoData's streams

  private Demo() {}

  /**
   * What defines a run's numbers: kept with a saved run so {@code --resume} continues it exactly.
   *
   * @param seed the seed of data, initial values and batches
   * @param batch rows per step
   * @param learningRate η of every optimizer
   * @param embed embedding width per token
   * @param hidden hidden width
   * @param training the schedule, weight-decay mask and accumulation
   * @param transformer the transformer's shape, or null for the MLP ({@code embed} and {@code
   *     hidden} are the MLP's)
   * @param text the {@code --text} file the transformer trains on, or null for the Markov source
   */
  public record Settings(long seed, int batch, double learningRate, int embed, int hidden,
      DemoModel.Training training, TransformerModel.Architecture transformer, Path text) {

    /** Settings trained as {@link DemoModel.Training#DEFAULT}. */
    public Settings(long seed, int batch, double learningRate, int embed, int hidden) {
      this(seed, batch, learningRate, embed, hidden, DemoModel.Training.DEFAULT);
    }

    /** Settings of the MLP on the Markov source. */
    public Settings(long seed, int batch, double learningRate, int embed, int hidden,
        DemoModel.Training training) {
      this(seed, batch, learningRate, embed, hidden, training, null, null);
    }

    /** Checks the combination. */
    public Settings {
      java.util.Objects.requireNonNull(training, "training");
      if (text != null && transformer == null) {
        throw new IllegalArgumentException("--text needs --model transformer (the MLP reads the"
            + " Markov source's 2-token windows)");
      }
    }

    /** {@return "mlp" or "transformer"} */
    public String modelName() {
      return transformer == null ? "mlp" : "transformer";
    }

    /** Builds the model these settings describe, for {@code data}, with its step and session. */
    LanguageModel model(Algorithm optimizer, DemoData data, boolean jit) {
      if (transformer == null) {
        return DemoModel.create(optimizer, modelConfig(data.vocabSize(), jit));
      }
      return TransformerModel.create(optimizer, new TransformerModel.Config(transformer,
          data.vocabSize(), data.scoredFrom(), learningRate, mix(seed, INIT_STREAM, 0), jit, training));
    }

    /** The model configuration for these settings. */
    DemoModel.Config modelConfig(int vocabSize, boolean jit) {
      return new DemoModel.Config(
          vocabSize, embed, hidden, learningRate, mix(seed, INIT_STREAM, 0), jit, training);
    }

    /** Writes these settings and the step count of a saved run to {@code file}. */
    void store(Path file, long step) throws IOException {
      Properties p = new Properties();
      p.setProperty("optimizer", Algorithm.FADAM.cliName());
      p.setProperty("step", Long.toString(step));
      p.setProperty("seed", Long.toString(seed));
      p.setProperty("batch", Integer.toString(batch));
      p.setProperty("lr", Double.toString(learningRate));
      p.setProperty("embed", Integer.toString(embed));
      p.setProperty("hidden", Integer.toString(hidden));
      p.setProperty("schedule", training.schedule());
      p.setProperty("warmup", Long.toString(training.warmup()));
      p.setProperty("total_steps", Long.toString(training.totalSteps()));
      p.setProperty("weight_decay_mask", training.matricesOnly() ? "matrices" : "all");
      p.setProperty("accumulate", Integer.toString(training.accumulate()));
      p.setProperty("momentum", training.momentum());
      p.setProperty("fisher", training.microBatchFisher() ? "micro-batch" : "mean-batch");
      p.setProperty("model", modelName());
      if (transformer != null) {
        p.setProperty("layers", Integer.toString(transformer.layers()));
        p.setProperty("width", Integer.toString(transformer.width()));
        p.setProperty("heads", Integer.toString(transformer.heads()));
        p.setProperty("context", Integer.toString(transformer.context()));
        p.setProperty("dtype", transformer.bfloat16() ? "bfloat16" : "float32");
      }
      if (text != null) {
        p.setProperty("text", text.toAbsolutePath().normalize().toString());
        p.setProperty("text_crc32", Long.toString(SavedRun.crc32(text)));
      }
      try (Writer w = Files.newBufferedWriter(file, StandardCharsets.UTF_8)) {
        p.store(w, "fadam-tf demo run: scripts/demo --resume <this directory> continues it");
      }
    }
  }

  /** A run saved by {@code --save}: its settings and the steps it had taken. */
  record SavedRun(Settings settings, long step) {

    static SavedRun load(Path dir) throws IOException {
      Path file = dir.resolve(RUN_PROPERTIES);
      if (!Files.exists(dir)) {
        throw new IllegalArgumentException("no saved demo run at " + dir + ": the directory does"
            + " not exist (--save DIR writes one when the FAdam run ends or is stopped)");
      }
      if (!Files.isRegularFile(file)) {
        Optional<Path> inside = savedRunInside(dir);
        throw new IllegalArgumentException(inside
            .map(in -> dir + " is not a saved demo run, but " + in + " is: --resume " + in)
            .orElse(dir + " is not a saved demo run (no " + RUN_PROPERTIES + "): --save DIR"
                + " writes one, and every run that trains FAdam one in OUT/" + SAVED_MODEL));
      }
      Properties p = new Properties();
      try (Reader r = Files.newBufferedReader(file, StandardCharsets.UTF_8)) {
        p.load(r);
      }
      try {
        // runs saved before the training options trained as their defaults
        DemoModel.Training t = new DemoModel.Training(p.getProperty("schedule", "constant"),
            Long.parseLong(p.getProperty("warmup", "0")), Long.parseLong(p.getProperty("total_steps", "0")),
            p.getProperty("weight_decay_mask", "all").equals("matrices"),
            Integer.parseInt(p.getProperty("accumulate", "1")), p.getProperty("momentum", "float32"),
            p.getProperty("fisher", "mean-batch").equals("micro-batch"));
        // runs saved before the transformer were MLP runs
        TransformerModel.Architecture arch = p.getProperty("model", "mlp").equals("transformer")
            ? new TransformerModel.Architecture(Integer.parseInt(get(p, file, "layers")),
                Integer.parseInt(get(p, file, "width")), Integer.parseInt(get(p, file, "heads")),
                Integer.parseInt(get(p, file, "context")), get(p, file, "dtype").equals("bfloat16"))
            : null;
        Path text = p.getProperty("text") == null ? null : Path.of(p.getProperty("text"));
        if (text != null) {
          long crc = Long.parseLong(get(p, file, "text_crc32"));
          if (!Files.isRegularFile(text) || crc32(text) != crc) {
            throw new IllegalArgumentException(dir + " was trained on --text " + text + ", which "
                + (Files.isRegularFile(text) ? "has changed since (CRC32 differs)" : "is gone")
                + ": a resumed run needs the same text");
          }
        }
        Settings s = new Settings(Long.parseLong(get(p, file, "seed")),
            Integer.parseInt(get(p, file, "batch")), Double.parseDouble(get(p, file, "lr")),
            Integer.parseInt(get(p, file, "embed")), Integer.parseInt(get(p, file, "hidden")), t,
            arch, text);
        SavedRun run = new SavedRun(s, Long.parseLong(get(p, file, "step")));
        checkExport(dir);
        return run;
      } catch (NumberFormatException e) {
        throw new IllegalArgumentException(file + ": " + e.getMessage(), e);
      }
    }

    /** A saved run one level down ({@code OUT/fadam-savedmodel} first), if there is one. */
    private static Optional<Path> savedRunInside(Path dir) throws IOException {
      if (Files.isRegularFile(dir.resolve(SAVED_MODEL).resolve(RUN_PROPERTIES))) {
        return Optional.of(dir.resolve(SAVED_MODEL));
      }
      if (!Files.isDirectory(dir)) {
        return Optional.empty();
      }
      try (Stream<Path> entries = Files.list(dir)) {
        return entries.filter(d -> Files.isRegularFile(d.resolve(RUN_PROPERTIES))).sorted()
            .findFirst();
      }
    }

    /**
     * Checks the export's graph file, which a resumed run does not read (it rebuilds the graph and
     * restores only the variables): a truncated or corrupt copy fails here, naming the file,
     * instead of resuming from a directory that no other program could load.
     */
    private static void checkExport(Path dir) {
      Path pb = dir.resolve("saved_model.pb");
      if (!Files.isRegularFile(pb)) {
        throw new IllegalArgumentException(dir + " is not a complete saved demo run: " + pb
            + " is missing");
      }
      org.tensorflow.proto.SavedModel model;
      try (InputStream in = Files.newInputStream(pb)) {
        model = org.tensorflow.proto.SavedModel.parseFrom(in);
      } catch (com.google.protobuf.InvalidProtocolBufferException e) {
        throw new IllegalArgumentException(pb + " is truncated or corrupt (not a SavedModel: "
            + firstLine(e.getMessage()) + ")", e);
      } catch (IOException e) {
        throw new IllegalArgumentException("cannot read " + pb + ": " + reason(e, pb), e);
      }
      boolean complete = model.getMetaGraphsList().stream().anyMatch(g ->
          g.getGraphDef().getNodeCount() > 0
              && g.getSignatureDefMap().containsKey(FisherTrainStep.TRAIN));
      if (!complete) {
        throw new IllegalArgumentException(pb + " is truncated or corrupt (it holds no graph with"
            + " a " + FisherTrainStep.TRAIN + " signature)");
      }
    }

    /** The CRC32 of a file's bytes (a saved text run checks its text with it). */
    static long crc32(Path file) throws IOException {
      java.util.zip.CRC32 crc = new java.util.zip.CRC32();
      crc.update(Files.readAllBytes(file));
      return crc.getValue();
    }

    private static String get(Properties p, Path file, String key) {
      String v = p.getProperty(key);
      if (v == null) {
        throw new IllegalArgumentException(file + " has no \"" + key + "\"");
      }
      return v.strip();
    }
  }

  /**
   * The command line.
   *
   * @param settings the run's settings (from the saved run when resuming)
   * @param steps steps per optimizer (more steps when resuming)
   * @param optimizers the optimizers, in order
   * @param out the output directory
   * @param xla whether train steps are XLA-compiled
   * @param save where to export the FAdam run after its last step, or null
   * @param resume the saved FAdam run to continue, or null
   * @param evalEvery evaluation interval, steps
   * @param progress force the progress line even when stderr is not a terminal
   * @param tfrecord where to write the batches this run trains on as TFRecord, or null
   * @param tensorboard where to write TensorBoard scalars (one run directory per optimizer), or null
   */
  public record Options(Settings settings, int steps, List<Algorithm> optimizers, Path out,
      boolean xla, Path save, Path resume, int evalEvery, boolean progress, Path tfrecord,
      Path tensorboard) {

    /** Options without TensorBoard scalars. */
    public Options(Settings settings, int steps, List<Algorithm> optimizers, Path out,
        boolean xla, Path save, Path resume, int evalEvery, boolean progress, Path tfrecord) {
      this(settings, steps, optimizers, out, xla, save, resume, evalEvery, progress, tfrecord, null);
    }

    /** The defaults, writing to {@code out}. */
    public static Options defaults(Path out) {
      return new Options(new Settings(DEFAULT_SEED, DEFAULT_BATCH,
          FisherOptions.exact(FisherOptions.LEARNING_RATE_DEFAULT), DEFAULT_EMBED, DEFAULT_HIDDEN),
          DEFAULT_STEPS, List.of(Algorithm.values()), out, true, null, null, DEFAULT_EVAL_EVERY,
          false, null);
    }
  }

  /** The command line of {@code scripts/demo}. */
  @Command(name = "demo",
      description = {
        "Trains one small language model (embedding -> dense+tanh -> layer norm -> dense+tanh ->"
            + " softmax over 64 tokens, cross-entropy) with FAdam, FAdafactor, Adam and Adafactor"
            + " (the paper's Algorithms 1-4; Adam and Adafactor are the baselines of FAdam and"
            + " FAdafactor) on a synthetic order-2 Markov language whose entropy rate is known"
            + " exactly, and reports how far each optimizer gets from that best achievable loss."
            + " All optimizers use the same learning rate and the paper's default hyperparameters.",
        "Writes into --out: results.csv (optimizer,step,train_loss,heldout_loss per evaluation),"
            + " heldout_loss.png (held-out loss vs step), results.md (the results table), and the"
            + " trained FAdam model as a SavedModel with train, gradients, apply_gradients and"
            + " serve_default signatures"
            + " (fadam-savedmodel/; one there is replaced only once the new one is complete). A live"
            + " progress line goes to stderr on"
            + " a terminal."
      },
      footer = {"", "Same seed, same numbers. 10 steps with --save A, then --resume A --steps 10,"
          + " gives the losses of one 20-step run exactly (with the same --no-xla choice; under"
          + " --schedule cosine or linear the decay ends at the saved run's --steps, and the added"
          + " steps train at its final 10%%)."})
  public static final class Cli extends Tool {
    @Option(names = "--steps", paramLabel = "N", defaultValue = "" + DEFAULT_STEPS,
        converter = Tool.PositiveInt.class,
        description = "steps per optimizer (with --resume: more steps)")
    int steps;

    @Option(names = "--optimizers", paramLabel = "LIST", split = ",",
        defaultValue = "fadam,fadafactor,adam,adafactor", converter = OptimizerConverter.class,
        description = "comma-separated, from fadam,fadafactor,adam,adafactor")
    List<Algorithm> optimizers;

    @Option(names = "--seed", paramLabel = "S", defaultValue = "" + DEFAULT_SEED,
        description = "seed of data, initial values and batches")
    long seed;

    @Option(names = "--out", paramLabel = "DIR", defaultValue = "demo-out",
        description = "output directory")
    Path out;

    @Option(names = "--no-xla",
        description = "run the train step without XLA (results differ by float32 round-off)")
    boolean noXla;

    @Option(names = "--save", paramLabel = "DIR",
        description = "also export the FAdam run (SavedModel + checkpoint) to DIR")
    Path save;

    @Option(names = "--resume", paramLabel = "DIR",
        description = "continue a FAdam run saved with --save (or a previous DIR/fadam-savedmodel)"
            + " for --steps more steps, with its settings; its rows are appended to results.csv"
            + " in --out")
    Path resume;

    @Option(names = "--batch", paramLabel = "B", defaultValue = "" + DEFAULT_BATCH,
        converter = Tool.PositiveInt.class, description = "tokens per step")
    int batch;

    @Option(names = "--lr", paramLabel = "LR",
        defaultValue = "" + FisherOptions.LEARNING_RATE_DEFAULT,
        converter = Tool.PositiveFiniteDouble.class,
        description = "learning rate of every optimizer (the paper's default)")
    double lr;

    @Option(names = "--eval-every", paramLabel = "N", defaultValue = "" + DEFAULT_EVAL_EVERY,
        converter = Tool.PositiveInt.class,
        description = "evaluate every N steps and at the last one")
    int evalEvery;

    @Option(names = "--embed", paramLabel = "D", defaultValue = "" + DEFAULT_EMBED,
        converter = Tool.PositiveInt.class, description = "embedding width")
    int embed;

    @Option(names = "--hidden", paramLabel = "H", defaultValue = "" + DEFAULT_HIDDEN,
        converter = Tool.PositiveInt.class, description = "hidden width")
    int hidden;

    @Option(names = "--progress",
        description = "show the progress line even when stderr is not a terminal")
    boolean progress;

    @Option(names = "--schedule", paramLabel = "S", defaultValue = "constant",
        description = "learning-rate schedule with --lr as its peak: constant (default; the"
            + " transformer's: cosine), cosine or"
            + " linear (warmup, then decay to 10%% of the peak at the last step) or rsqrt (warmup,"
            + " then peak*sqrt(warmup/t))")
    String schedule;

    @Option(names = "--warmup", paramLabel = "N", converter = Tool.PositiveInt.class,
        description = "warmup steps of --schedule cosine|linear|rsqrt (default: 5%% of --steps, at"
            + " least 1)")
    Integer warmup;

    @Option(names = "--weight-decay-mask", paramLabel = "M", defaultValue = "all",
        description = "which tensors the weight decay applies to: all (default; the transformer's:"
            + " matrices) or matrices (rank >= 2: not the biases and layer-norm gain/shift)")
    String weightDecayMask;

    @Option(names = "--accumulate", paramLabel = "K", defaultValue = "1", converter = Tool.PositiveInt.class,
        description = "train calls of --batch tokens per optimizer step (gradient accumulation;"
            + " --steps counts optimizer steps): the K calls are the rows of --batch K*B split in"
            + " K, and a step's loss is their mean")
    int accumulate;

    @Option(names = "--momentum", paramLabel = "M", defaultValue = "float32",
        description = "the optimizers' m slot: float32 (default, the paper's), bfloat16 (half the"
            + " bytes), none (beta1 = 0: no m, the update takes the clipped gradient itself)")
    String momentum;

    @Option(names = "--fisher", paramLabel = "F", defaultValue = "mean-batch",
        description = "the Fisher the optimizers' EMA is fed: mean-batch (default, the paper's"
            + " algorithms: the square of the step's mean gradient, Eq. 21) or micro-batch (with"
            + " --accumulate K >= 2: the mean of the K micro-batches' squared gradients, Eq. 20)")
    String fisher;

    /** The training options of the command line, for a run of {@code runSteps} optimizer steps. */
    DemoModel.Training training(int runSteps) {
      // the transformer trains as transformers are trained: warmup + cosine, no decay of the
      // biases, layer-norm gains and shifts (the MLP keeps the demo's original defaults)
      String schedule = byModel("--schedule", this.schedule, this.schedule, "cosine");
      String mask = byModel("--weight-decay-mask", weightDecayMask, weightDecayMask, "matrices");
      if (!mask.equals("all") && !mask.equals("matrices")) {
        throw usageError("--weight-decay-mask must be all or matrices; got " + mask);
      }
      if (!DemoModel.Training.FISHERS.contains(fisher)) {
        throw usageError("--fisher must be one of " + DemoModel.Training.FISHERS + "; got " + fisher);
      }
      long w = warmup != null ? warmup : schedule.equals("constant") ? 0 : Math.max(1, runSteps / 20);
      try {
        return new DemoModel.Training(schedule, w, schedule.equals("constant") ? 0 : runSteps,
            mask.equals("matrices"), accumulate, momentum, fisher.equals("micro-batch"));
      } catch (IllegalArgumentException e) {
        throw usageError(e.getMessage());
      }
    }

    @Option(names = "--tensorboard", paramLabel = "DIR",
        description = "also write TensorBoard scalars of every step (loss, grad_rms,"
            + " clipped_natural, clipped_decay, eps_floor, skipped, learning_rate) into DIR/<optimizer>;"
            + " see docs/telemetry.md")
    Path tensorboard;

    @Option(names = "--tfrecord", paramLabel = "FILE",
        description = "also write the batches of the steps this run trains, in order, to FILE as"
            + " TFRecord: one tf.train.Example per row, int64 features tokens and labels (the MLP:"
            + " [2] and [1]; the transformer: [T] and [T]), the train inputs, for"
            + " tpu-configs/train.py --data FILE --global-batch <batch>")
    Path tfrecord;

    @Option(names = "--model", paramLabel = "M", defaultValue = "mlp",
        description = "mlp (default: 2 tokens of context, embedding, two tanh layers) or"
            + " transformer (decoder-only, pre-norm, causal attention, GELU MLP, tied embedding;"
            + " defaults: --layers 2 --width 128 --heads 4 --context 32, --batch "
            + DEFAULT_TRANSFORMER_BATCH + " windows, --steps " + DEFAULT_TRANSFORMER_STEPS
            + ", --eval-every " + DEFAULT_TRANSFORMER_EVAL_EVERY + ", --lr " + DEFAULT_TRANSFORMER_LR
            + ")")
    String model;

    @Option(names = "--layers", paramLabel = "N", converter = Tool.PositiveInt.class,
        description = "transformer blocks (default 2)")
    Integer layers;

    @Option(names = "--width", paramLabel = "D", converter = Tool.PositiveInt.class,
        description = "transformer width (default 128; the MLP is 4x)")
    Integer width;

    @Option(names = "--heads", paramLabel = "H", converter = Tool.PositiveInt.class,
        description = "attention heads, dividing --width (default 4)")
    Integer heads;

    @Option(names = "--context", paramLabel = "T", converter = Tool.PositiveInt.class,
        description = "tokens the transformer reads; every position predicts the next (default 32)")
    Integer context;

    @Option(names = "--dtype", paramLabel = "D", defaultValue = "float32",
        description = "transformer parameters: float32 (default) or bfloat16 (stored in bfloat16,"
            + " computed in float32)")
    String dtype;

    @Option(names = "--text", paramLabel = "FILE",
        description = "train the transformer on a UTF-8 text file instead of the Markov source:"
            + " bytes as tokens (V = 256), the last 10%% held out (no entropy floor is known)")
    Path text;

    @Option(names = "--evaluate", paramLabel = "DIR",
        description = "evaluate a saved run instead of training: DIR is a --save directory, or the"
            + " --export of tpu-configs/train.py continuing one; prints its step and its train and"
            + " held-out losses (the data of its saved settings)")
    Path evaluate;

    private static final List<String> TRANSFORMER_FLAGS =
        List.of("--layers", "--width", "--heads", "--context", "--dtype", "--text");

    /** The transformer's shape from the command line, or null for --model mlp; checks the flags. */
    TransformerModel.Architecture architecture() {
      if (!MODELS.contains(model)) {
        throw usageError("--model must be mlp or transformer; got " + model);
      }
      if (model.equals("mlp")) {
        List<String> wrong = TRANSFORMER_FLAGS.stream().filter(this::given).toList();
        if (!wrong.isEmpty()) {
          throw usageError(String.join(", ", wrong) + " apply to --model transformer");
        }
        return null;
      }
      List<String> wrong = List.of("--embed", "--hidden").stream().filter(this::given).toList();
      if (!wrong.isEmpty()) {
        throw usageError(String.join(", ", wrong) + " apply to --model mlp; the transformer's"
            + " sizes are --layers, --width, --heads and --context");
      }
      if (!dtype.equals("float32") && !dtype.equals("bfloat16")) {
        throw usageError("--dtype must be float32 or bfloat16; got " + dtype);
      }
      TransformerModel.Architecture d = DEFAULT_TRANSFORMER;
      try {
        return new TransformerModel.Architecture(layers != null ? layers : d.layers(),
            width != null ? width : d.width(), heads != null ? heads : d.heads(),
            context != null ? context : d.context(), dtype.equals("bfloat16"));
      } catch (IllegalArgumentException e) {
        throw usageError(e.getMessage());
      }
    }

    /** The value of a flag whose default depends on the model. */
    private <T> T byModel(String flag, T given, T mlp, T transformer) {
      return given(flag) ? given : model.equals("transformer") ? transformer : mlp;
    }

    @Option(names = "--sweep",
        description = "learning-rate sweep instead of one run: every optimizer at every --lrs"
            + " rate and seed 1..--seeds, each point exactly the run --optimizers O --lr X"
            + " --seed S would make; writes " + Sweep.CSV + " (optimizer,lr,seed,step,train_loss,"
            + "heldout_loss), " + Sweep.PNG + " (final held-out loss vs rate) and " + Sweep.MARKDOWN
            + " (each optimizer's best rate, loss over seeds, near-best rates) into --out."
            + " --steps defaults to " + Sweep.DEFAULT_STEPS + " and --eval-every to "
            + Sweep.DEFAULT_EVAL_EVERY + " here")
    boolean sweep;

    @Option(names = "--lrs", paramLabel = "LIST", split = ",", hideParamSyntax = true,
        converter = Tool.PositiveFiniteDouble.class,
        description = "with --sweep: the learning rates (default 1e-4,3e-4,1e-3,3e-3,1e-2,3e-2)")
    List<Double> lrs;

    @Option(names = "--seeds", paramLabel = "N", converter = Tool.PositiveInt.class,
        description = "with --sweep: seeds 1..N (default " + Sweep.DEFAULT_SEEDS + ")")
    Integer seeds;

    @Option(names = "--workers", paramLabel = "N", converter = Tool.PositiveInt.class,
        description = "with --sweep: runs trained at the same time (default "
            + Sweep.DEFAULT_WORKERS + "; results do not depend on it)")
    Integer workers;

    @Option(names = "--continual",
        description = "continual learning with EWC instead of one run: FAdam on Markov chain A,"
            + " then on chain B without EWC and with each --ewc-lambdas; writes "
            + Continual.MARKDOWN + ", " + Continual.CSV + " and " + Continual.PNG + " (held-out"
            + " loss on A and B after B vs λ) into --out. Seeds 1..--seeds (default "
            + Continual.DEFAULT_SEEDS + "), --steps per task (default " + Continual.DEFAULT_STEPS
            + "), --lr (default " + Continual.DEFAULT_LR + " here)")
    boolean continual;

    @Option(names = "--ewc-lambdas", paramLabel = "LIST", split = ",", hideParamSyntax = true,
        converter = Tool.PositiveFiniteDouble.class,
        description = "with --continual: the EWC strengths swept (default 1e1,1e2,1e3,1e4,1e5; 0 is always run)")
    List<Double> ewcLambdas;

    /** The parsed command line as the continual experiment's options. */
    Continual.Options continualOptions() {
      List<String> other = List.of("--sweep", "--seed", "--save", "--resume", "--tfrecord", "--lrs", "--workers",
          "--optimizers", "--schedule", "--warmup", "--weight-decay-mask", "--accumulate", "--momentum", "--fisher",
          "--model", "--layers", "--width", "--heads", "--context", "--dtype", "--text")
          .stream().filter(this::given).toList();
      if (!other.isEmpty()) {
        throw usageError(String.join(", ", other) + " cannot be combined with --continual (FAdam on the"
            + " MLP, seeds 1..--seeds, the paper's defaults)");
      }
      List<Long> s = new ArrayList<>();
      for (long i = 1; i <= (seeds == null ? Continual.DEFAULT_SEEDS : seeds); i++) {
        s.add(i);
      }
      try {
        return new Continual.Options(s, given("--steps") ? steps : Continual.DEFAULT_STEPS,
            batch, given("--lr") ? lr : Continual.DEFAULT_LR, embed, hidden,
            ewcLambdas == null ? Continual.DEFAULT_LAMBDAS : ewcLambdas, !noXla, out);
      } catch (IllegalArgumentException e) {
        throw usageError(e.getMessage());
      }
    }

    /** The parsed command line as the sweep's options, after the checks across options. */
    Sweep.Options sweepOptions() {
      List<String> single = List.of("--seed", "--lr", "--save", "--resume", "--tfrecord", "--ewc-lambdas")
          .stream().filter(this::given).toList();
      if (!single.isEmpty()) {
        throw usageError(String.join(", ", single) + " cannot be combined with --sweep (it runs"
            + " seeds 1..--seeds at the rates of --lrs and saves no model)");
      }
      TransformerModel.Architecture arch = architecture();
      Sweep.Options d = Sweep.Options.defaults(out);
      int sweepSteps = byModel("--steps", steps, d.steps(), Sweep.DEFAULT_TRANSFORMER_STEPS);
      return new Sweep.Options(List.copyOf(new LinkedHashSet<>(optimizers)),
          lrs == null ? d.lrs() : List.copyOf(new java.util.TreeSet<>(lrs)),
          seeds == null ? d.seeds() : seeds, sweepSteps,
          byModel("--eval-every", evalEvery, d.evalEvery(), Sweep.DEFAULT_TRANSFORMER_EVAL_EVERY),
          byModel("--batch", batch, batch, DEFAULT_TRANSFORMER_BATCH), embed, hidden, !noXla,
          workers == null ? d.workers() : workers, out, training(sweepSteps), arch, text);
    }

    /** The parsed command line as the demo's options, after the checks across options. */
    Options options() {
      if (ewcLambdas != null) {
        throw usageError("--ewc-lambdas only applies with --continual");
      }
      List<String> sweepOnly = List.of("--lrs", "--seeds", "--workers").stream()
          .filter(this::given).toList();
      if (!sweepOnly.isEmpty()) {
        throw usageError(String.join(", ", sweepOnly) + " only apply with --sweep");
      }
      TransformerModel.Architecture arch = architecture();
      List<String> settingFlags = List.of("--seed", "--batch", "--lr", "--embed", "--hidden", "--schedule",
          "--warmup", "--weight-decay-mask", "--accumulate", "--momentum", "--fisher", "--layers", "--width",
          "--heads", "--context", "--dtype", "--text").stream().filter(this::given).toList();
      List<Algorithm> chosen = List.copyOf(new LinkedHashSet<>(optimizers));
      if (resume != null && given("--model")) {
        String saved = savedModelName(resume);
        if (saved != null && !saved.equals(model)) {
          throw usageError("--resume " + resume + " holds a --model " + saved + " run: it cannot"
              + " continue as --model " + model + " (a resumed run keeps the model it was saved with)");
        }
      }
      if (resume != null) {
        if (!settingFlags.isEmpty()) {
          throw usageError(String.join(", ", settingFlags) + " cannot be combined with"
              + " --resume: a resumed run keeps the settings it was saved with");
        }
        if (given("--optimizers") && !chosen.equals(List.of(Algorithm.FADAM))) {
          throw usageError("--resume continues the saved FAdam run only; drop --optimizers"
              + " or pass --optimizers fadam");
        }
        chosen = List.of(Algorithm.FADAM);
      }
      if (save != null && !chosen.contains(Algorithm.FADAM)) {
        throw usageError("--save exports the FAdam run: add fadam to --optimizers");
      }
      if (tfrecord != null && accumulate > 1) {
        throw usageError("--tfrecord writes one batch per step: it cannot be combined with --accumulate " + accumulate);
      }
      int runSteps = byModel("--steps", steps, steps, DEFAULT_TRANSFORMER_STEPS);
      Settings settings;
      try {
        settings = new Settings(seed, byModel("--batch", batch, batch, DEFAULT_TRANSFORMER_BATCH),
            byModel("--lr", lr, lr, DEFAULT_TRANSFORMER_LR), embed, hidden, training(runSteps), arch, text);
      } catch (IllegalArgumentException e) {
        throw usageError(e.getMessage());
      }
      return new Options(settings, runSteps, chosen, out, !noXla, save, resume,
          byModel("--eval-every", evalEvery, evalEvery, DEFAULT_TRANSFORMER_EVAL_EVERY), progress, tfrecord,
          tensorboard);
    }

    /** The model a saved run was trained with ("mlp" for runs saved before the transformer), or null if unreadable. */
    private static String savedModelName(Path dir) {
      Path file = dir.resolve(RUN_PROPERTIES);
      Properties p = new Properties();
      try (Reader r = Files.newBufferedReader(file, StandardCharsets.UTF_8)) {
        p.load(r);
      } catch (IOException e) {
        return null; // --resume reports what is wrong with the directory
      }
      return p.getProperty("model", "mlp");
    }

    @Override
    protected int run() throws IOException {
      if (evaluate != null) {
        List<String> others = givenOptions().stream().filter(n -> !n.equals("--evaluate")).toList();
        if (!others.isEmpty()) {
          throw usageError(String.join(", ", others) + " cannot be combined with --evaluate (it"
              + " evaluates the saved run with its own settings)");
        }
        Demo.evaluate(evaluate, System.out);
        return 0;
      }
      if (continual) {
        Continual.run(continualOptions(), System.out);
        return 0;
      }
      if (sweep) {
        Sweep.run(sweepOptions(), System.out);
        return 0;
      }
      Options o = options();
      // Ctrl-C or SIGTERM: finish the step under way, write every output, say how to continue.
      StopSignal stop = StopSignal.install("demo", System.err);
      Demo.run(o, System.out, System.err, Progress.toStderr(o.progress()), stop);
      return stop.requested() ? stop.exitStatus() : 0;
    }
  }

  /** {@code fadam}, {@code fadafactor}, {@code adam}, {@code adafactor} (any case) as a demo optimizer. */
  public static final class OptimizerConverter implements ITypeConverter<Algorithm> {
    @Override
    public Algorithm convert(String value) {
      try {
        return Algorithm.parse(value.strip());
      } catch (IllegalArgumentException e) {
        throw new TypeConversionException(
            "unknown optimizer \"" + value + "\"; expected fadam, fadafactor, adam or adafactor");
      }
    }
  }

  /** Parses a command line into the demo's options (a {@link ParameterException} if it is wrong). */
  public static Options parse(String... args) {
    Cli cli = new Cli();
    Tool.commandLine(cli).parseArgs(args);
    return cli.options();
  }

  /** Parses a {@code --sweep} command line into the sweep's options. */
  static Sweep.Options parseSweep(String... args) {
    Cli cli = new Cli();
    Tool.commandLine(cli).parseArgs(args);
    if (!cli.sweep) {
      throw new IllegalArgumentException("not a --sweep command line");
    }
    return cli.sweepOptions();
  }

  /** Entry point. */
  public static void main(String[] args) {
    Tool.exit(new Cli(), args);
  }

  // ---------------------------------------------------------------------------------------------

  /**
   * What a run produced.
   *
   * @param rows every row of the CSV (earlier rows kept when resuming)
   * @param table the results of the optimizers run now
   * @param trainLosses each optimizer's loss at every step it ran now, in order
   * @param savedModel the FAdam SavedModel under --out, if FAdam ran
   */
  public record Report(List<ResultsCsv.Row> rows, ResultsTable table,
      Map<Algorithm, float[]> trainLosses, Optional<Path> savedModel) {}

  /**
   * One optimizer's run.
   *
   * @param result its row of the results table
   * @param losses its training loss at every step it took, in order
   * @param lastStep the step it reached
   * @param stopped whether a stop request ended it before its last step
   */
  record Run(ResultsTable.Row result, float[] losses, long lastStep, boolean stopped) {}

  /** Runs the demo: trains, writes every output file, prints the table and the paths to {@code out}. */
  public static Report run(Options o, PrintStream out, Progress progress) throws IOException {
    return run(o, out, System.err, progress, StopSignal.none());
  }

  /**
   * Runs the demo as {@link #run(Options, PrintStream, Progress)} does, stopping early when
   * {@code stop} is requested: the step under way finishes, the optimizer it belongs to is
   * evaluated at that step, the FAdam run is exported (to --out and --save) when it took a step,
   * every output file is written (each atomically: a file or directory holds the old content or
   * the new, whole), and {@code err} says where the run stopped and how to continue it.
   */
  public static Report run(Options o, PrintStream out, PrintStream err, Progress progress,
      StopSignal stop) throws IOException {
    SavedRun saved = o.resume() == null ? null : SavedRun.load(o.resume());
    Settings s = saved == null ? o.settings() : saved.settings();
    // Fail now, not after minutes of training.
    writableDirectory(o.out());
    Path savedModelDir = o.out().resolve(SAVED_MODEL);
    if (o.optimizers().contains(Algorithm.FADAM)) {
      checkReplaceable(savedModelDir);
      if (o.save() != null) {
        checkReplaceable(o.save());
        writableDirectory(o.save().toAbsolutePath().getParent());
      }
    }
    if (o.tfrecord() != null) {
      writableDirectory(o.tfrecord().toAbsolutePath().getParent());
    }
    if (o.tensorboard() != null) {
      writableDirectory(o.tensorboard());
    }
    DemoData data = DemoData.of(s); // reads and checks --text: fails now, before any training
    if (o.tfrecord() != null) {
      long first = saved == null ? 1 : saved.step() + 1;
      long records = data.writeTfRecord(o.tfrecord(), first, first + o.steps() - 1);
      out.printf(Locale.ROOT, "wrote %s: steps %d to %d, %d tf.train.Examples (%s, %s)%n",
          o.tfrecord(), first, first + o.steps() - 1, records, DemoModel.TOKENS, DemoModel.LABELS);
    }
    if (s.transformer() != null) {
      out.printf(Locale.ROOT, "model: transformer, %s; %,d parameters%n", s.transformer().describe(),
          s.transformer().parameterCount(data.vocabSize()));
    }
    if (Double.isNaN(data.floor())) {
      out.printf(Locale.ROOT, "source: %s; no entropy floor is known for a text (%d held-out"
          + " predictions)%n", data.description(), data.heldOutPredictions());
    } else {
      out.printf(Locale.ROOT, "source: %s; entropy floor %.4f nats/token (the true chain scores"
          + " %.4f on the %d held-out tokens)%n", data.description(), data.floor(),
          data.heldOutTrueLoss(), data.heldOutPredictions());
    }

    // The CSV: kept rows of an earlier run when resuming, then this run's rows.
    Path csvPath = o.out().resolve(CSV);
    List<ResultsCsv.Row> rows = new ArrayList<>();
    if (saved != null && Files.exists(csvPath)) {
      rows.addAll(keptRows(ResultsCsv.read(csvPath), saved.step()));
    }
    List<ResultsTable.Row> results = new ArrayList<>();
    Map<Algorithm, float[]> losses = new LinkedHashMap<>();
    Optional<Path> savedModel = Optional.empty();
    String stoppedAt = null; // where a stop request ended the run, for the message
    Run fadam = null;
    for (Algorithm opt : o.optimizers()) {
      if (stop.requested()) {
        stoppedAt = "before " + opt.displayName();
        break;
      }
      List<ResultsCsv.Row> mine = new ArrayList<>();
      Run run;
      try (LanguageModel model = s.model(opt, data, o.xla())) {
        run = train(model, o, s.batch(), saved, data, mine::add, progress, stop);
        long first = saved == null ? 0 : saved.step();
        if (run.lastStep() == first) { // stopped before its first step: it leaves nothing
          stoppedAt = "before " + opt.displayName() + "'s first step";
          break;
        }
        rows.addAll(mine);
        results.add(run.result());
        losses.put(opt, run.losses());
        out.printf(Locale.ROOT, "%-10s  %d steps, %.1f steps/s, held-out loss %.4f%s%s%n",
            opt.displayName(), run.losses().length, run.result().stepsPerSecond(),
            run.result().heldoutLoss(), Double.isNaN(data.floor()) ? "" : String.format(Locale.ROOT,
                " (%+.4f from the floor)", run.result().heldoutLoss() - data.floor()),
            run.stopped() ? " (stopped at step " + run.lastStep() + ")" : "");
        if (opt == Algorithm.FADAM) {
          fadam = run;
          savedModel = Optional.of(savedModelDir);
          export(model, s, savedModelDir, out);
          if (o.save() != null) {
            export(model, s, o.save(), out);
          }
        }
      }
      // After every optimizer, so that a run killed later keeps the rows of those that finished.
      AtomicFile.write(csvPath, tmp -> ResultsCsv.write(tmp, rows));
      if (run.stopped()) {
        stoppedAt = opt.displayName() + " at step " + run.lastStep() + " of "
            + (run.lastStep() - run.losses().length + o.steps());
        break;
      }
    }

    ResultsTable table = new ResultsTable(data.floor(), results);
    if (results.isEmpty()) { // stopped before anything was trained: nothing to write
      err.println("demo: stopped by " + stop.signal() + " " + stoppedAt + "; nothing written");
      return new Report(List.copyOf(rows), table, losses, savedModel);
    }
    String subtitle = s.transformer() == null
        ? String.format(Locale.ROOT, "order-2 Markov source, V=%d · model %d-%d-%d-%d,"
            + " batch %d, lr %s for all, paper defaults · seed %d", data.vocabSize(),
            DemoModel.CONTEXT * s.embed(), s.hidden(), s.hidden(), data.vocabSize(), s.batch(),
            num(s.learningRate()), s.seed())
        : String.format(Locale.ROOT, "%s · transformer %d×%d, %d heads, context %d · batch %d,"
            + " lr %s for all, paper defaults · seed %d", s.text() == null ? "order-2 Markov source"
            : s.text().getFileName(), s.transformer().layers(), s.transformer().width(),
            s.transformer().heads(), s.transformer().context(), s.batch(), num(s.learningRate()), s.seed());
    String title = "Held-out loss vs step: " + String.join(", ",
        o.optimizers().stream().map(Algorithm::displayName).toList());
    AtomicFile.write(o.out().resolve(PNG), tmp -> LossPlot.write(tmp, rows, data.floor(), title,
        subtitle, LossPlot.DEFAULT_WIDTH, LossPlot.DEFAULT_HEIGHT));
    String stoppedNote = stoppedAt == null ? null : "Stopped by " + stop.signal() + " " + stoppedAt;
    AtomicFile.write(o.out().resolve(MARKDOWN), tmp -> Files.writeString(tmp,
        markdown(table, o, s, data, stoppedNote), StandardCharsets.UTF_8));

    out.println();
    out.print(table.toText());
    out.println();
    out.println("wrote " + o.out().resolve(CSV));
    out.println("wrote " + o.out().resolve(PNG));
    out.println("wrote " + o.out().resolve(MARKDOWN));
    savedModel.ifPresent(p -> out.println("wrote " + p + " (SavedModel: signatures "
        + String.join(", ", FisherTrainStep.TRAIN, FisherTrainStep.GRADIENTS,
            FisherTrainStep.APPLY_GRADIENTS, FisherTrainStep.STATELESS_GRADIENTS,
            FisherTrainStep.STATELESS_APPLY, FisherTrainStep.SERVE) + ")"));
    if (o.save() != null && savedModel.isPresent()) {
      out.println("saved the FAdam run to " + o.save() + "; continue it with --resume "
          + o.save());
    }
    out.flush();
    if (stoppedAt != null) {
      err.println("demo: stopped by " + stop.signal() + " (" + stoppedAt + "); "
          + continuation(o, fadam));
    }
    return new Report(List.copyOf(rows), table, losses, savedModel);
  }

  /** How to go on after a stop: which run can be resumed, and the command line. */
  private static String continuation(Options o, Run fadam) {
    if (fadam == null) {
      return "no FAdam run to continue (--resume continues FAdam only)";
    }
    Path from = o.save() != null ? o.save() : o.out().resolve(SAVED_MODEL);
    String command = "scripts/demo --resume " + from
        + (fadam.stopped() ? " --steps " + (o.steps() - fadam.losses().length) : "")
        + (o.out().equals(Path.of("demo-out")) ? "" : " --out " + o.out())
        + (o.xla() ? "" : " --no-xla");
    return fadam.stopped()
        ? "the FAdam run is saved at step " + fadam.lastStep() + " in " + from
            + ": continue it with " + command
        : "the FAdam run had finished and is saved in " + from + " (" + command
            + " trains it further)";
  }

  /**
   * The rows of an earlier run's CSV that a run resumed at {@code step} keeps: every row but the
   * FAdam run's after that step (they belong to another continuation), and but those of an
   * optimizer with a row at step 0 only (a run stopped before its first step left it; it would
   * put an optimizer that never trained into the plot's legend).
   */
  static List<ResultsCsv.Row> keptRows(List<ResultsCsv.Row> earlier, long step) {
    Set<String> trained = new HashSet<>();
    for (ResultsCsv.Row r : earlier) {
      if (r.step() > 0) {
        trained.add(r.optimizer());
      }
    }
    return earlier.stream()
        .filter(r -> !(r.optimizer().equals(Algorithm.FADAM.displayName()) && r.step() > step))
        .filter(r -> trained.contains(r.optimizer())
            || r.optimizer().equals(Algorithm.FADAM.displayName()))
        .toList();
  }

  /** Trains as {@link #train(LanguageModel, Options, int, SavedRun, DemoData, Consumer, Progress, StopSignal)}, to the end. */
  static Run train(LanguageModel model, Options o, int batch, SavedRun saved, DemoData data,
      Consumer<ResultsCsv.Row> sink, Progress progress) {
    return train(model, o, batch, saved, data, sink, progress, StopSignal.none());
  }

  /**
   * Trains {@code o.steps()} steps (after the restored ones when resuming), evaluating as it goes;
   * a stop request ends it after the step under way, evaluated there.
   */
  static Run train(LanguageModel model, Options o, int batch, SavedRun saved, DemoData data,
      Consumer<ResultsCsv.Row> sink, Progress progress, StopSignal stop) {
    String name = model.optimizer().displayName();
    long start = 0;
    if (saved != null) {
      restore(model, o.resume());
      start = model.iterations();
      if (start != saved.step()) {
        throw new IllegalArgumentException(o.resume() + ": the checkpoint holds step " + start
            + " but " + RUN_PROPERTIES + " says " + saved.step());
      }
    } else {
      sink.accept(evaluate(model, name, 0, data));
    }
    long end = start + o.steps();
    float[] losses = new float[o.steps()];
    double heldOut = Double.NaN;
    double trainLoss = Double.NaN;
    long timedNanos = 0;
    long timedSteps = 0;
    long k = start;
    long evaluated = saved == null ? 0 : -1;
    int calls = model.accumulate();
    // TensorBoard scalars of every step, one run directory per optimizer (docs/telemetry.md)
    Summaries board = o.tensorboard() == null ? null // closed after the loop (it flushes)
        : Summaries.open(o.tensorboard().resolve(name.toLowerCase(Locale.ROOT)), 1);
    while (k < end && !stop.requested()) {
      k++;
      long t0 = System.nanoTime();
      // with accumulation, K calls on the K slices of step k's K·B rows (the rows --batch K·B
      // trains on) make optimizer step k; its loss is their mean (K = 1: batch k, as always)
      FisherTrainStep.Result r = null;
      double lossSum = 0;
      for (Batches.Batch micro : data.batches(k, calls)) {
        r = model.train(micro);
        lossSum += r.loss();
      }
      if (!r.applied() && r.finite()) {
        throw new IllegalStateException("step " + k + " was not applied after " + calls + " calls");
      }
      if (k > start + 1 || o.steps() == 1) { // the first step also compiles: not throughput
        timedNanos += System.nanoTime() - t0;
        timedSteps++;
      }
      if (r.step() != k) {
        throw new IllegalStateException("the train step reports step " + r.step() + ", expected " + k);
      }
      losses[(int) (k - start - 1)] = calls == 1 ? r.loss() : (float) (lossSum / calls);
      if (k == start + 1) { // start the clock after the compilation, so tokens/s and ETA are real
        progress.begin(name, k, end, (long) batch * calls); // tokens per optimizer step
      }
      progress.update(k, losses[(int) (k - start - 1)]);
      if (board != null) {
        board.write(k, losses[(int) (k - start - 1)], r.telemetry());
      }
      if (k % o.evalEvery() == 0 || k == end) {
        ResultsCsv.Row row = evaluate(model, name, k, data);
        heldOut = row.heldoutLoss();
        trainLoss = row.trainLoss();
        evaluated = k;
        sink.accept(row);
      }
    }
    if (board != null) {
      board.close();
    }
    if (k > start) {
      progress.end();
    }
    boolean stopped = k < end;
    if (stopped && k > start && evaluated != k) { // the last step taken, for the table and plot
      ResultsCsv.Row row = evaluate(model, name, k, data);
      heldOut = row.heldoutLoss();
      trainLoss = row.trainLoss();
      sink.accept(row);
    }
    double stepsPerSecond = timedNanos > 0 ? timedSteps / (timedNanos / 1e9) : Double.NaN;
    double stateBytes = model.step().optimizerStateBytes() / (double) model.step().parameterCount();
    return new Run(new ResultsTable.Row(name, trainLoss, heldOut, stepsPerSecond, stateBytes),
        Arrays.copyOf(losses, (int) (k - start)), k, stopped);
  }

  /**
   * Evaluates a saved run: rebuilds its model from the saved settings, restores every variable
   * (from a {@code --save} directory, or from the launcher's {@code --export} of one, whose
   * settings file is the one it was started from and whose variables are where the launcher
   * left them), and prints its step and losses on the data of those settings.
   *
   * @return {train loss, held-out loss}
   */
  static double[] evaluate(Path dir, PrintStream out) throws IOException {
    SavedRun saved = SavedRun.load(dir);
    Settings s = saved.settings();
    DemoData data = DemoData.of(s);
    try (LanguageModel model = s.model(Algorithm.FADAM, data, false)) {
      restore(model, dir);
      long step = model.iterations();
      ResultsCsv.Row row = evaluate(model, Algorithm.FADAM.displayName(), step, data);
      out.printf(Locale.ROOT, "%s: --model %s, FAdam at step %d: train loss %.6f, held-out loss %.6f"
          + " nats/token%s%n", dir, s.modelName(), step, row.trainLoss(), row.heldoutLoss(),
          Double.isNaN(data.floor()) ? "" : String.format(Locale.ROOT, " (%+.4f from the floor %.4f)",
              row.heldoutLoss() - data.floor(), data.floor()));
      return new double[] {row.trainLoss(), row.heldoutLoss()};
    }
  }

  /** Restores a saved run, naming the file when TensorFlow finds one truncated or corrupt. */
  private static void restore(LanguageModel model, Path dir) {
    try {
      model.restore(dir);
    } catch (IllegalArgumentException e) {
      Throwable tf = e.getCause();
      String why = tf == null || tf.getMessage() == null ? "" : firstLine(tf.getMessage());
      Optional<Path> damaged = damagedCheckpointFile(dir.resolve("variables"), tf, why);
      if (damaged.isPresent()) {
        throw new IllegalArgumentException(damaged.get() + " is truncated or corrupt"
            + " (TensorFlow: " + why + ")", e);
      }
      throw e;
    }
  }

  /**
   * The file of a checkpoint ({@code variables/variables.index} and {@code .data-*}) that a
   * restore error says is damaged: the index when TensorFlow cannot read it as a table, the data
   * (its one shard, or the shards' pattern) when a read ends early or a checksum fails.
   */
  static Optional<Path> damagedCheckpointFile(Path variables, Throwable tf, String why) {
    if (why.contains("sstable")) {
      return Optional.of(variables.resolve("variables.index"));
    }
    if (tf instanceof org.tensorflow.exceptions.TFOutOfRangeException
        || why.contains("Checksum does not match") || why.contains("Read less bytes")) {
      try (Stream<Path> files = Files.list(variables)) {
        List<Path> shards = files.filter(f -> f.getFileName().toString()
            .startsWith("variables.data-")).sorted().toList();
        return Optional.of(shards.size() == 1 ? shards.get(0)
            : variables.resolve("variables.data-*"));
      } catch (IOException e) {
        return Optional.of(variables.resolve("variables.data-*"));
      }
    }
    return Optional.empty();
  }

  private static ResultsCsv.Row evaluate(LanguageModel model, String name, long step, DemoData data) {
    return new ResultsCsv.Row(name, step, model.loss(data.trainSample), model.loss(data.heldOut));
  }

  /**
   * Exports the FAdam run with its settings, replacing a SavedModel left there earlier only once
   * the new one is complete (a crash leaves the old one or the new one, whole).
   */
  private static void export(LanguageModel model, Settings s, Path dir, PrintStream out)
      throws IOException {
    checkReplaceable(dir);
    if (isEmptyDirectory(dir)) {
      Files.delete(dir); // an empty directory holds nothing to keep
    } else if (Files.exists(dir)) {
      out.println("replacing the SavedModel at " + dir);
    }
    long step = model.iterations();
    model.exportReplacing(dir, tmp -> s.store(tmp.resolve(RUN_PROPERTIES), step));
  }

  /**
   * Creates {@code dir} if needed and checks that files can be made in it, failing with a message
   * that says what failed and why (a bare IOException names only the path).
   */
  static void writableDirectory(Path dir) throws IOException {
    try {
      Files.createDirectories(dir);
    } catch (IOException e) {
      throw new IOException("cannot create directory " + dir + ": " + reason(e, dir), e);
    }
    try {
      Files.delete(Files.createTempFile(dir, ".demo-write-check-", ""));
    } catch (IOException e) {
      throw new IOException("cannot write in directory " + dir + ": " + reason(e, dir), e);
    }
  }

  /**
   * Why a file operation on {@code about} failed, in the words of the system's error (Java's
   * exceptions for the common ones carry only the path), after the path that failed when it is
   * neither {@code about} nor inside it.
   */
  static String reason(IOException e, Path about) {
    String why;
    if (e instanceof FileSystemException f && f.getReason() != null) {
      why = f.getReason();
    } else if (e instanceof NoSuchFileException) {
      why = "No such file or directory";
    } else if (e instanceof AccessDeniedException) {
      why = "Permission denied";
    } else if (e instanceof FileAlreadyExistsException) {
      why = "it exists and is not a directory";
    } else if (e instanceof NotDirectoryException) {
      why = "Not a directory";
    } else {
      why = e.getMessage() == null ? e.toString() : firstLine(e.getMessage());
    }
    if (e instanceof FileSystemException f && f.getFile() != null) {
      Path failed = Path.of(f.getFile()).toAbsolutePath().normalize();
      if (!failed.startsWith(about.toAbsolutePath().normalize())) {
        return f.getFile() + ": " + why;
      }
    }
    return why;
  }

  private static String firstLine(String s) {
    int nl = s.indexOf('\n');
    return nl < 0 ? s : s.substring(0, nl);
  }

  /** Fails unless {@code dir} is absent, empty, or a SavedModel (never delete anything else). */
  private static void checkReplaceable(Path dir) throws IOException {
    if (Files.exists(dir) && !isEmptyDirectory(dir)
        && !Files.isRegularFile(dir.resolve("saved_model.pb"))) {
      throw new IllegalArgumentException(dir + " exists and is not a SavedModel: not replacing"
          + " it; choose another directory");
    }
  }

  private static boolean isEmptyDirectory(Path dir) throws IOException {
    if (!Files.isDirectory(dir)) {
      return false;
    }
    try (Stream<Path> entries = Files.list(dir)) {
      return entries.findAny().isEmpty();
    }
  }

  private static String markdown(ResultsTable table, Options o, Settings s, DemoData data,
      String stoppedNote) {
    FisherOptions paper = FisherOptions.defaults();
    String when = ZonedDateTime.now(ZoneOffset.UTC).truncatedTo(ChronoUnit.SECONDS)
        .format(DateTimeFormatter.ISO_INSTANT);
    StringBuilder md = new StringBuilder();
    md.append("# fadam-tf demo results\n\n");
    md.append(table.toMarkdown()).append('\n');
    if (Double.isNaN(data.floor())) {
      md.append(String.format(Locale.ROOT, "Losses in nats/token on %s; no entropy floor is known"
          + " for a text. heldout_loss is measured on %d held-out predictions, train_loss on %d"
          + " windows of the training part. steps/s leaves out the first step (XLA compilation)"
          + " and the evaluations.%n%n", data.description(), data.heldOutPredictions(),
          data.trainSample.batchSize()));
    } else {
      md.append(String.format(Locale.ROOT, "Losses in nats/token. Entropy floor: %.4f, the exact"
          + " entropy rate of the source (%s); the true chain scores %.4f on the %d held-out"
          + " tokens. train_loss is measured on %d windows of the training stream. steps/s leaves"
          + " out the first step (XLA compilation) and the evaluations.%n%n", data.floor(),
          data.description(), data.heldOutTrueLoss(), data.heldOutPredictions(),
          data.trainSample.batchSize()));
    }
    String modelText = s.transformer() == null
        ? String.format(Locale.ROOT, "Model: embedding %d per token, 2 tokens of context, hidden %d,"
            + " %d output tokens.", s.embed(), s.hidden(), data.vocabSize())
        : String.format(Locale.ROOT, "Model: decoder-only transformer, %s, %d tokens, %,d"
            + " parameters; every position from %d predicts the next token.",
            s.transformer().describe(), data.vocabSize(),
            s.transformer().parameterCount(data.vocabSize()), data.scoredFrom());
    md.append(String.format(Locale.ROOT, "%s %s%d steps, batch %d, learning rate %s for every"
        + " optimizer, paper defaults (β1 %s, β2 %s, ε %s, ε2 %s, c %s, λ %s, ρ %s; Adafactor:"
        + " Algorithm 4's ε %s inside the Fisher EMAs, and λθ without the learning rate), XLA %s,"
        + " seed %d.%n%n", modelText,
        o.resume() == null ? "" : "Resumed from " + o.resume() + " for ", o.steps(), s.batch(),
        num(s.learningRate()), num(paper.beta1()), num(paper.beta2()), num(paper.epsilon()),
        num(paper.epsilon2()), num(paper.clipThreshold()), num(paper.weightDecay()),
        num(paper.rho()), num(paper.adafactorEpsilon()), o.xla() ? "on" : "off", s.seed()));
    String training = s.training().describe(s.batch());
    if (!training.isEmpty()) {
      md.append(training).append("\n\n");
    }
    if (stoppedNote != null) {
      md.append(stoppedNote).append(": the last row of each optimizer is where it stood.\n\n");
    }
    md.append(String.format(Locale.ROOT, "Measured on %s %s, %d cores, Java %s, %s.%n",
        System.getProperty("os.name"), System.getProperty("os.arch"),
        Runtime.getRuntime().availableProcessors(), System.getProperty("java.version"), when));
    return md.toString();
  }

  /** {@code 0.001}, {@code 1e-8}, {@code 1}: the shortest decimal form. */
  private static String num(double v) {
    return BigDecimal.valueOf(v).stripTrailingZeros().toString().replace("E", "e");
  }

  /** A seed for item {@code index} of random stream {@code stream} of a run (SplitMix64). */
  static long mix(long seed, long stream, long index) {
    return splitMix(splitMix(splitMix(seed) + stream) + index);
  }

  private static long splitMix(long z) {
    z += 0x9E3779B97F4A7C15L;
    z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
    z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
    return z ^ (z >>> 31);
  }
}
