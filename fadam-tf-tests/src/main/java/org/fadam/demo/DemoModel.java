package org.fadam.demo;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.fadam.Algorithm;
import org.fadam.FisherOptions;
import org.fadam.FisherTrainStep;
import org.fadam.Schedules;
import org.fadam.Operands;
import org.fadam.ResourceVariable;
import org.tensorflow.Graph;
import org.tensorflow.Operand;
import org.tensorflow.ndarray.Shape;
import org.tensorflow.ndarray.buffer.DataBuffers;
import org.tensorflow.op.Ops;
import org.tensorflow.types.TFloat32;
import org.tensorflow.types.TInt32;

/**
 * The demo's language model and its fused train step, in a graph and session of its own (one
 * {@link FisherTrainStep} per graph): a next-token predictor for an order-2 source that sees the
 * two previous tokens.
 *
 * <pre>
 * tokens [B, 2] ─ gather E [V, d] ─ concat → x [B, 2d]
 *   h1 = tanh(x W1 + b1)                 [B, H]
 *   n  = layerNorm(h1) · gain + shift    [B, H]
 *   h2 = tanh(n W2 + b2)                 [B, H]   (W2 is H×H: FAdafactor factors it)
 *   logits = h2 W3 + b3                  [B, V]
 *   loss = mean softmax cross-entropy(logits, oneHot(labels))
 * </pre>
 *
 * Only ops with a registered gradient in TF Java 1.1.0 are used (GatherV2, ConcatV2, MatMul, Tanh,
 * Mean, Square, Rsqrt, SoftmaxCrossEntropyWithLogits with dense one-hot labels). Initial values
 * come from a {@link Random} with the given seed, so a run is a function of its seeds.
 */
public final class DemoModel extends StepModel {

  /** Name of the token input: {@code [B, 2]} int32, the two tokens before the predicted one. */
  public static final String TOKENS = StepModel.TOKENS;
  /** Name of the label input: {@code [B]} int32, the token to predict. */
  public static final String LABELS = StepModel.LABELS;
  /** Tokens of context the model sees: the order of the source. */
  public static final int CONTEXT = 2;

  /**
   * The model's sizes and training hyperparameters.
   *
   * @param vocabSize V, the alphabet size of the source
   * @param embedDim d, the embedding width per token
   * @param hidden H, the width of both hidden layers (≥ 128 so FAdafactor factors W2)
   * @param learningRate η, the same for every optimizer
   * @param initSeed seed of the initial parameter values
   * @param jit whether the train step is XLA-compiled
   */
  public record Config(
      int vocabSize, int embedDim, int hidden, double learningRate, long initSeed, boolean jit,
      Training training) {

    /** A configuration trained as the demo always was: constant η, every tensor decayed, no accumulation. */
    public Config(int vocabSize, int embedDim, int hidden, double learningRate, long initSeed, boolean jit) {
      this(vocabSize, embedDim, hidden, learningRate, initSeed, jit, Training.DEFAULT);
    }

    /** Checks the sizes and the learning rate. */
    public Config {
      java.util.Objects.requireNonNull(training, "training");
      positive("vocabSize", vocabSize);
      positive("embedDim", embedDim);
      positive("hidden", hidden);
      if (!(learningRate > 0 && learningRate < Double.POSITIVE_INFINITY)) {
        throw new IllegalArgumentException("`learningRate` must be in (0, ∞); got " + learningRate);
      }
    }

    private static void positive(String name, int v) {
      if (!(v >= 1)) {
        throw new IllegalArgumentException("`" + name + "` must be >= 1; got " + v);
      }
    }
  }

  /**
   * How the step trains, beside the rate: the schedule (with the rate as its peak), the
   * weight-decay mask and gradient accumulation (issue 19's training features).
   *
   * @param schedule constant, cosine, linear or rsqrt ({@link Schedules})
   * @param warmup the warmup steps (0 for constant)
   * @param totalSteps the run's optimizer steps, where cosine and linear reach their end (10 % of
   *     the peak)
   * @param matricesOnly whether weight decay is kept off the rank-1 tensors (biases, layer norm)
   * @param accumulate train calls per optimizer step
   * @param momentum the m slot: float32 (the paper's), bfloat16, or none (β1 = 0)
   * @param microBatchFisher whether the Fisher EMA takes the accumulated micro-batches' mean square
   *     (paper Eq. 20, {@code --fisher micro-batch}) instead of the square of their mean
   */
  public record Training(String schedule, long warmup, long totalSteps, boolean matricesOnly, int accumulate,
      String momentum, boolean microBatchFisher) {

    /** The Fisher estimators of {@code --fisher}: mean-batch (Eq. 21, the default), micro-batch (Eq. 20). */
    public static final List<String> FISHERS = List.of("mean-batch", "micro-batch");

    /** Training with the default Fisher (the square of the mean gradient). */
    public Training(String schedule, long warmup, long totalSteps, boolean matricesOnly, int accumulate,
        String momentum) {
      this(schedule, warmup, totalSteps, matricesOnly, accumulate, momentum, false);
    }

    /** The momenta: float32 (the paper's), bfloat16, none (β1 = 0). */
    public static final List<String> MOMENTA = List.of("float32", "bfloat16", "none");

    /** Training with m in float32. */
    public Training(String schedule, long warmup, long totalSteps, boolean matricesOnly, int accumulate) {
      this(schedule, warmup, totalSteps, matricesOnly, accumulate, "float32");
    }

    /** The schedule names. */
    public static final List<String> SCHEDULES = List.of("constant", "cosine", "linear", "rsqrt");
    /** cosine and linear end at this fraction of the peak. */
    public static final double FINAL_FRACTION = 0.1;
    /** The demo's behaviour before these options: constant η, every tensor decayed, k = 1. */
    public static final Training DEFAULT = new Training("constant", 0, 0, false, 1);

    /** Checks the combination, failing with one line naming the values. */
    public Training {
      if (!SCHEDULES.contains(schedule)) {
        throw new IllegalArgumentException("--schedule must be one of " + SCHEDULES + "; got " + schedule);
      }
      if (schedule.equals("constant") && warmup != 0) {
        throw new IllegalArgumentException("--warmup " + warmup + " needs --schedule cosine, linear or rsqrt");
      }
      if (accumulate < 1) {
        throw new IllegalArgumentException("--accumulate must be >= 1; got " + accumulate);
      }
      if (microBatchFisher && accumulate < 2) {
        throw new IllegalArgumentException("--fisher micro-batch needs --accumulate K ≥ 2 (the Fisher is fed"
            + " the mean of the K micro-batches' squared gradients); got --accumulate " + accumulate);
      }
      if (!MOMENTA.contains(momentum)) {
        throw new IllegalArgumentException("--momentum must be one of " + MOMENTA + "; got " + momentum);
      }
      of(schedule, warmup, totalSteps, 1.0); // the schedule's own checks (warmup < total, rsqrt warmup >= 1)
    }

    /**
     * What these options change from the demo's defaults, as a sentence for the results files
     * ({@code ""} when nothing does), with {@code batch} rows per call.
     */
    String describe(int batch) {
      List<String> parts = new ArrayList<>();
      if (schedule.equals("rsqrt")) {
        parts.add("rsqrt schedule with the learning rate as its peak (warmup " + warmup
            + " steps, then peak·√(warmup/t))");
      } else if (!schedule.equals("constant")) {
        parts.add(schedule + " schedule with the learning rate as its peak (warmup " + warmup
            + " steps, then down to " + Math.round(FINAL_FRACTION * 100) + " % of the peak at step "
            + totalSteps + ")");
      }
      if (matricesOnly) {
        parts.add("weight decay on the matrices only (not the biases or the layer norm's gain and shift)");
      }
      if (accumulate > 1) {
        parts.add(accumulate + " calls of batch " + batch + " per optimizer step (effective batch "
            + (long) accumulate * batch + ")");
      }
      if (microBatchFisher) {
        parts.add("the Fisher fed the micro-batches' mean squared gradient (Eq. 20)");
      }
      if (momentum.equals("bfloat16")) {
        parts.add("m in bfloat16");
      } else if (momentum.equals("none")) {
        parts.add("β1 = 0 (no m)");
      }
      return parts.isEmpty() ? "" : "Training: " + String.join("; ", parts) + ".";
    }

    /** An algorithm's paper defaults with this momentum. */
    FisherOptions options(Algorithm algorithm) {
      FisherOptions o = algorithm.defaultOptions();
      return switch (momentum) {
        case "none" -> o.toBuilder().beta1(0).build();
        case "bfloat16" -> o.toBuilder().momentumDtype(org.tensorflow.types.TBfloat16.class).build();
        default -> o;
      };
    }

    /** The schedule with {@code lr} as its peak, or null for a constant rate. */
    FisherTrainStep.Schedule schedule(double lr) {
      return of(schedule, warmup, totalSteps, lr);
    }

    private static FisherTrainStep.Schedule of(String schedule, long warmup, long totalSteps, double lr) {
      try {
        return switch (schedule) {
          case "cosine" -> Schedules.warmupCosine(lr, warmup, totalSteps, FINAL_FRACTION);
          case "linear" -> Schedules.warmupLinear(lr, warmup, totalSteps, FINAL_FRACTION);
          case "rsqrt" -> Schedules.warmupInverseSqrt(lr, warmup);
          default -> null;
        };
      } catch (IllegalArgumentException e) {
        throw new IllegalArgumentException("--schedule " + schedule + " --warmup " + warmup + " over "
            + totalSteps + " steps: " + e.getMessage(), e);
      }
    }
  }

  private final Config config;

  private DemoModel(Algorithm optimizer, Config config) {
    super(optimizer, config.training().accumulate(), graph -> buildStep(graph, optimizer, config));
    this.config = config;
  }

  private static FisherTrainStep buildStep(Graph graph, Algorithm optimizer, Config config) {
    Ops tf = Ops.create(graph);
    int v = config.vocabSize();
    return builder(graph, optimizer, config.learningRate(), config.training())
        .input(TOKENS, TInt32.class, Shape.of(-1, CONTEXT))
        .input(LABELS, TInt32.class, Shape.of(-1))
        .variables(variables(tf, config))
        .loss((ops, in, w) -> loss(ops, logits(ops, in.int32(TOKENS), w), in.int32(LABELS), v))
        .predictions((ops, in, w) -> ops.nn.softmax(logits(ops, in.int32(TOKENS), w)), TOKENS)
        .jit(config.jit())
        .build();
  }

  /** Builds the model, its train step and an initialized session. */
  public static DemoModel create(Algorithm optimizer, Config config) {
    return new DemoModel(optimizer, config);
  }

  /** The initial parameters: embeddings N(0, 1), weights N(0, 1/fan_in), zero biases, unit gain. */
  static List<ResourceVariable<TFloat32>> variables(Ops tf, Config c) {
    Random rng = new Random(c.initSeed());
    int v = c.vocabSize();
    int d = c.embedDim();
    int h = c.hidden();
    Ops init = tf.withInitScope();
    List<ResourceVariable<TFloat32>> vars = new ArrayList<>();
    vars.add(ResourceVariable.create(tf, "embedding", init.constant(fanIn(rng, v, d, 1.0))));
    vars.add(ResourceVariable.create(tf, "w1", init.constant(fanIn(rng, CONTEXT * d, h, 1.0))));
    vars.add(ResourceVariable.create(tf, "b1", init.constant(new float[h])));
    vars.add(ResourceVariable.create(tf, "ln_gain", init.constant(filled(h, 1f))));
    vars.add(ResourceVariable.create(tf, "ln_shift", init.constant(new float[h])));
    vars.add(ResourceVariable.create(tf, "w2", init.constant(fanIn(rng, h, h, 1.0))));
    vars.add(ResourceVariable.create(tf, "b2", init.constant(new float[h])));
    vars.add(ResourceVariable.create(tf, "w3", init.constant(fanIn(rng, h, v, 1.0))));
    vars.add(ResourceVariable.create(tf, "b3", init.constant(new float[v])));
    return vars;
  }

  /** A rows×cols matrix of N(0, gain²/rows) values (rows is the fan-in of a weight matrix). */
  private static float[][] fanIn(Random rng, int rows, int cols, double gain) {
    return normal(rng, rows, cols, gain / Math.sqrt(rows));
  }

  /** The forward pass up to the logits {@code [B, V]}. */
  static Operand<TFloat32> logits(Ops tf, Operand<TInt32> t, Operands w) {
    Operand<TFloat32> e = w.float32("embedding");
    Operand<TInt32> axis1 = tf.constant(1);
    // One embedding per context position, side by side: [B, 2d].
    List<Operand<TFloat32>> parts = new ArrayList<>();
    for (int i = 0; i < CONTEXT; i++) {
      Operand<TInt32> column = tf.gather(t, tf.constant(i), axis1);
      parts.add(tf.gather(e, column, tf.constant(0)));
    }
    Operand<TFloat32> x = tf.concat(parts, axis1);
    Operand<TFloat32> h1 = tf.math.tanh(dense(tf, x, w, "w1", "b1"));
    Operand<TFloat32> n = layerNorm(tf, h1, w.float32("ln_gain"), w.float32("ln_shift"));
    Operand<TFloat32> h2 = tf.math.tanh(dense(tf, n, w, "w2", "b2"));
    return dense(tf, h2, w, "w3", "b3");
  }

  private static Operand<TFloat32> dense(
      Ops tf, Operand<TFloat32> x, Operands w, String weight, String bias) {
    return tf.math.add(tf.linalg.matMul(x, w.float32(weight)), w.float32(bias));
  }

  /** Mean cross-entropy in nats; dense one-hot labels (the sparse op has no gradient here). */
  static Operand<TFloat32> loss(
      Ops tf, Operand<TFloat32> logits, Operand<TInt32> labels, int vocabSize) {
    Operand<TFloat32> oneHot = tf.oneHot(labels, tf.constant(vocabSize), tf.constant(1f),
        tf.constant(0f));
    Operand<TFloat32> perToken = tf.nn.softmaxCrossEntropyWithLogits(logits, oneHot).loss();
    return tf.math.mean(perToken, tf.constant(0));
  }

  /** The configuration. */
  public Config config() {
    return config;
  }

  /** Every parameter's current value, flattened, by name, in the model's order. */
  Map<String, float[]> parameterValues() {
    Ops tf = Ops.create(graph());
    Map<String, float[]> out = new java.util.LinkedHashMap<>();
    for (ResourceVariable<?> v : step().parameters()) {
      try (var r = session().runner().fetch(v.read(tf)).run()) {
        TFloat32 t = (TFloat32) r.get(0);
        float[] values = new float[(int) t.shape().size()];
        t.copyTo(DataBuffers.of(values, false, false));
        out.put(v.name(), values);
      }
    }
    return out;
  }

  /** The model's input tensor of a batch: {@code [B, 2]}, the batch's context length must be 2. */
  public static TInt32 tokens(Batches.Batch batch) {
    checkContext(batch);
    return TInt32.tensorOf(Shape.of(batch.batchSize(), CONTEXT),
        DataBuffers.of(batch.inputsFlat(), true, false));
  }

  /** The labels of a batch: each row's last target, the token after its two inputs. */
  public static TInt32 labels(Batches.Batch batch) {
    int[] last = labelsOf(batch);
    return TInt32.tensorOf(Shape.of(last.length), DataBuffers.of(last, true, false));
  }

  /** Each row's label: its last target, the token after its two inputs. */
  static int[] labelsOf(Batches.Batch batch) {
    checkContext(batch);
    int[][] targets = batch.targets();
    int[] last = new int[targets.length];
    for (int r = 0; r < last.length; r++) {
      last[r] = targets[r][CONTEXT - 1];
    }
    return last;
  }

  private static void checkContext(Batches.Batch batch) {
    if (batch.contextLength() != CONTEXT) {
      throw new IllegalArgumentException(
          "the model reads windows of " + CONTEXT + " tokens; got " + batch.contextLength());
    }
  }

  @Override
  TInt32 tokenInput(Batches.Batch batch) {
    return tokens(batch);
  }

  @Override
  TInt32 labelInput(Batches.Batch batch) {
    return labels(batch);
  }
}
