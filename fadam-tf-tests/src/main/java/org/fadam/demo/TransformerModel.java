package org.fadam.demo;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Objects;
import java.util.Random;
import org.fadam.Algorithm;
import org.fadam.FisherTrainStep;
import org.fadam.Operands;
import org.fadam.ResourceVariable;
import org.tensorflow.Graph;
import org.tensorflow.Operand;
import org.tensorflow.ndarray.Shape;
import org.tensorflow.ndarray.buffer.DataBuffers;
import org.tensorflow.op.Ops;
import org.tensorflow.op.linalg.MatMul;
import org.tensorflow.op.train.BatchMatMul;
import org.tensorflow.types.TBfloat16;
import org.tensorflow.types.TFloat32;
import org.tensorflow.types.TInt32;
import org.tensorflow.types.TInt64;
import org.tensorflow.types.family.TType;

/**
 * A decoder-only transformer language model with its fused train step, in a graph and session of
 * its own: every position of a window of {@code context} tokens predicts the token after it.
 *
 * <pre>
 * tokens [B, T] ─ gather E [V, d] + P [T, d]                          x [B·T, d]
 * N pre-norm blocks:
 *   x += (softmax(Q Kᵀ/√(d/h) + causal mask) V) Wo + bo              h heads of d/h
 *        with Q = layerNorm(x) Wq + bq, K = layerNorm(x) Wk (no bias), V = … Wv + bv
 *   x += gelu_tanh(layerNorm(x) W1 + b1) W2 + b2                    W1 [d, 4d], W2 [4d, d]
 * logits = layerNorm(x) Eᵀ                                           [B·T, V] (tied to E)
 * loss = mean over rows and scored positions of softmax cross-entropy
 * </pre>
 *
 * <p>The output projection is tied to the token embedding (GPT-2's choice): E gets the gradient
 * of both uses. Positions before {@code scoredFrom} are not scored: on the order-2 Markov source
 * position 0 sees one token where the chain needs two, so its loss would sit above the entropy
 * floor whatever the model learns; on text every position is scored.
 *
 * <p>Only ops with a gradient registered in TF Java 1.1.0 are used: GatherV2, MatMul,
 * BatchMatMulV3, Softmax, Transpose, Reshape, Tanh, Mean, Sum, Square, Rsqrt, Cast and
 * SoftmaxCrossEntropyWithLogits with dense one-hot labels ({@code TransformerModelTest} checks the
 * gradients against finite differences). With {@link Architecture#bfloat16()} the parameters are
 * stored in bfloat16 and every op computes in float32 (each read is cast up; the gradient comes
 * back through the Cast).
 *
 * <p>Initial values come from a {@link Random} with the given seed (GPT-2's: N(0, 0.02²), the
 * residual projections Wo and W2 N(0, 0.02²/(2N)), zero biases, unit gains), so a run is a
 * function of its seeds.
 */
public final class TransformerModel extends StepModel {

  /** Name of the token input: {@code [B, T]} int32. */
  public static final String TOKENS = StepModel.TOKENS;
  /** Name of the label input: {@code [B, T]} int32, the token after each input position. */
  public static final String LABELS = StepModel.LABELS;
  /** The MLP's width, in multiples of the model width. */
  public static final int MLP_RATIO = 4;
  /** Standard deviation of the initial weights (GPT-2). */
  static final double INIT_STD = 0.02;

  /** Added to the scores of future positions: exp underflows to exactly 0 in float32. */
  private static final float MASKED = -1e9f;
  /** √(2/π), of the tanh form of GELU. */
  private static final float GELU_C = (float) Math.sqrt(2 / Math.PI);

  /**
   * The transformer's shape.
   *
   * @param layers N, the blocks
   * @param width d, the model width
   * @param heads h, the attention heads (must divide d)
   * @param context T, the window of tokens the model reads
   * @param bfloat16 whether the parameters are stored in bfloat16 (computed in float32)
   */
  public record Architecture(int layers, int width, int heads, int context, boolean bfloat16) {

    /** Checks each size, failing with one line that names the flag. */
    public Architecture {
      positive("--layers", layers);
      positive("--width", width);
      positive("--heads", heads);
      positive("--context", context);
      if (width % heads != 0) {
        throw new IllegalArgumentException("--heads " + heads + " does not divide --width " + width
            + ": each head takes width/heads features");
      }
    }

    /** {@return the feature width of one head} */
    public int headWidth() {
      return width / heads;
    }

    /** {@return the parameter count with a vocabulary of {@code vocab} tokens} */
    public long parameterCount(int vocab) {
      long d = width;
      long m = (long) MLP_RATIO * width;
      long block = 2 * 2 * d // two layer norms
          + 4 * d * d + 3 * d // Wq, Wk, Wv, Wo and the biases of all but the keys
          + (d * m + m) + (m * d + d); // the MLP
      return (long) vocab * d + (long) context * d + layers * block + 2 * d;
    }

    /** The architecture as a phrase for the results files: "2 layers, width 128, 4 heads, context 32". */
    public String describe() {
      return layers + " layer" + (layers == 1 ? "" : "s") + ", width " + width + ", " + heads
          + " head" + (heads == 1 ? "" : "s") + ", context " + context + ", MLP " + MLP_RATIO * width
          + ", tied embedding" + (bfloat16 ? ", bfloat16 parameters" : "");
    }

    private static void positive(String flag, int v) {
      if (!(v >= 1)) {
        throw new IllegalArgumentException(flag + " must be >= 1; got " + v);
      }
    }
  }

  /**
   * A transformer's configuration and training.
   *
   * @param architecture the shape
   * @param vocabSize V
   * @param scoredFrom the first position whose prediction is scored (0 ≤ scoredFrom &lt; T)
   * @param learningRate η (the schedule's peak)
   * @param initSeed seed of the initial values
   * @param jit whether the train step is XLA-compiled
   * @param training schedule, weight-decay mask, accumulation and m
   */
  public record Config(Architecture architecture, int vocabSize, int scoredFrom, double learningRate,
      long initSeed, boolean jit, DemoModel.Training training) {

    /** Checks the values. */
    public Config {
      Objects.requireNonNull(architecture, "architecture");
      Objects.requireNonNull(training, "training");
      if (vocabSize < 2) {
        throw new IllegalArgumentException("`vocabSize` must be >= 2; got " + vocabSize);
      }
      if (scoredFrom < 0 || scoredFrom >= architecture.context()) {
        throw new IllegalArgumentException("`scoredFrom` must be in [0, context = "
            + architecture.context() + "); got " + scoredFrom);
      }
      if (!(learningRate > 0 && learningRate < Double.POSITIVE_INFINITY)) {
        throw new IllegalArgumentException("`learningRate` must be in (0, ∞); got " + learningRate);
      }
    }
  }

  private final Config config;

  private TransformerModel(Algorithm optimizer, Config config) {
    super(optimizer, config.training().accumulate(), graph -> buildStep(graph, optimizer, config));
    this.config = config;
  }

  private static FisherTrainStep buildStep(Graph graph, Algorithm optimizer, Config config) {
    Ops tf = Ops.create(graph);
    Architecture a = config.architecture();
    int v = config.vocabSize();
    int from = config.scoredFrom();
    return builder(graph, optimizer, config.learningRate(), config.training())
        .input(TOKENS, TInt32.class, Shape.of(-1, a.context()))
        .input(LABELS, TInt32.class, Shape.of(-1, a.context()))
        .variables(variables(tf, a, v, config.initSeed()))
        .loss((ops, in, w) -> loss(ops, logits(ops, in.int32(TOKENS), w, a), in.int32(LABELS), v,
            a.context(), from))
        .predictions((ops, in, w) -> ops.reshape(ops.nn.softmax(logits(ops, in.int32(TOKENS), w, a)),
            ops.constant(new long[] {-1, a.context(), v})), TOKENS)
        .jit(config.jit())
        .build();
  }

  /** Builds the model, its train step and an initialized session. */
  public static TransformerModel create(Algorithm optimizer, Config config) {
    return new TransformerModel(optimizer, config);
  }

  /**
   * The parameters of a block, in the model's order. The keys have no bias: softmax ignores a
   * shift of a query's scores, and q·b_k shifts all of them alike, so its gradient is exactly 0
   * and in float32 pure round-off, which an Adam-type step (ḡ = g/√f) would turn into ±η moves
   * that differ from one summation order to the next (a replay or another worker count).
   */
  static final List<String> BLOCK_PARAMETERS = List.of("ln1_gain", "ln1_shift", "wq", "bq", "wk",
      "wv", "bv", "wo", "bo", "ln2_gain", "ln2_shift", "w1", "b1", "w2", "b2");

  /** The variable name of block {@code block}'s parameter {@code name}: {@code block0_wq}. */
  static String name(int block, String name) {
    return "block" + block + "_" + name;
  }

  /** The initial parameters, in the model's order (GPT-2's initialization). */
  static List<ResourceVariable<?>> variables(Ops tf, Architecture a, int vocab, long seed) {
    Random rng = new Random(seed);
    int d = a.width();
    int m = MLP_RATIO * d;
    double residual = INIT_STD / Math.sqrt(2.0 * a.layers());
    List<ResourceVariable<?>> vars = new ArrayList<>();
    vars.add(variable(tf, a, "embedding", normal(rng, vocab, d, INIT_STD)));
    vars.add(variable(tf, a, "position", normal(rng, a.context(), d, INIT_STD)));
    for (int l = 0; l < a.layers(); l++) {
      for (String n : BLOCK_PARAMETERS) {
        Object init = switch (n) {
          case "ln1_gain", "ln2_gain" -> filled(d, 1f);
          case "wq", "wk", "wv" -> normal(rng, d, d, INIT_STD);
          case "wo" -> normal(rng, d, d, residual);
          case "w1" -> normal(rng, d, m, INIT_STD);
          case "w2" -> normal(rng, m, d, residual);
          case "b1" -> new float[m];
          default -> new float[d]; // the shifts and the other biases
        };
        vars.add(variable(tf, a, name(l, n), init));
      }
    }
    vars.add(variable(tf, a, "final_ln_gain", filled(d, 1f)));
    vars.add(variable(tf, a, "final_ln_shift", new float[d]));
    return vars;
  }

  private static ResourceVariable<?> variable(Ops tf, Architecture a, String name, Object values) {
    Ops init = tf.withInitScope();
    Operand<TFloat32> value = values instanceof float[][] m ? init.constant(m)
        : init.constant((float[]) values);
    return a.bfloat16()
        ? ResourceVariable.create(tf, name, init.dtypes.cast(value, TBfloat16.class))
        : ResourceVariable.create(tf, name, value);
  }

  /** A parameter in float32 (cast up when it is stored in bfloat16). */
  private static Operand<TFloat32> param(Ops tf, Operands w, String name) {
    Operand<? extends TType> p = w.get(name);
    if (p.type() == TFloat32.class) {
      return w.float32(name);
    }
    return tf.dtypes.cast(p, TFloat32.class);
  }

  /** The forward pass up to the logits {@code [B·T, V]} (row b·T + t: position t of row b). */
  static Operand<TFloat32> logits(Ops tf, Operand<TInt32> tokens, Operands w, Architecture a) {
    int t = a.context();
    int d = a.width();
    int h = a.heads();
    int dh = a.headWidth();
    Operand<TFloat32> embedding = param(tf, w, "embedding");
    // x = E[tokens] + P, flattened to [B·T, d]
    Operand<TFloat32> x = tf.math.add(tf.gather(embedding, tokens, tf.constant(0)),
        param(tf, w, "position"));
    x = tf.reshape(x, tf.constant(new long[] {-1, d}));
    Operand<TFloat32> mask = tf.constant(causalMask(t));
    Operand<TFloat32> scale = tf.constant((float) (1 / Math.sqrt(dh)));
    Operand<TInt64> heads4 = tf.constant(new long[] {-1, t, h, dh});
    Operand<TInt32> swap = tf.constant(new int[] {0, 2, 1, 3}); // [B, T, h, dh] <-> [B, h, T, dh]
    for (int l = 0; l < a.layers(); l++) {
      String b = "block" + l + "_";
      // attention sub-block: x += Attention(LN(x)) Wo + bo
      Operand<TFloat32> in = layerNorm(tf, x, param(tf, w, b + "ln1_gain"), param(tf, w, b + "ln1_shift"));
      Operand<TFloat32> q = tf.linalg.transpose(tf.reshape(dense(tf, in, w, b + "wq", b + "bq"), heads4), swap);
      Operand<TFloat32> k = tf.linalg.transpose(tf.reshape(
          tf.linalg.matMul(in, param(tf, w, b + "wk")), heads4), swap); // no key bias (BLOCK_PARAMETERS)
      Operand<TFloat32> v = tf.linalg.transpose(tf.reshape(dense(tf, in, w, b + "wv", b + "bv"), heads4), swap);
      Operand<TFloat32> scores = tf.math.add(tf.math.mul(
          BatchMatMul.create(tf.scope(), q, k, TFloat32.class, BatchMatMul.adjY(true)), scale), mask);
      Operand<TFloat32> attended = BatchMatMul.create(tf.scope(), tf.nn.softmax(scores), v, TFloat32.class);
      Operand<TFloat32> merged = tf.reshape(tf.linalg.transpose(attended, swap),
          tf.constant(new long[] {-1, d}));
      x = tf.math.add(x, dense(tf, merged, w, b + "wo", b + "bo"));
      // MLP sub-block: x += gelu(LN(x) W1 + b1) W2 + b2
      Operand<TFloat32> in2 = layerNorm(tf, x, param(tf, w, b + "ln2_gain"), param(tf, w, b + "ln2_shift"));
      x = tf.math.add(x, dense(tf, gelu(tf, dense(tf, in2, w, b + "w1", b + "b1")), w, b + "w2", b + "b2"));
    }
    Operand<TFloat32> out = layerNorm(tf, x, param(tf, w, "final_ln_gain"), param(tf, w, "final_ln_shift"));
    return tf.linalg.matMul(out, embedding, MatMul.transposeB(true)); // tied output projection
  }

  /** 0 where position j ≤ i may be read by position i, {@link #MASKED} above the diagonal. */
  private static float[][] causalMask(int t) {
    float[][] m = new float[t][t];
    for (int i = 0; i < t; i++) {
      for (int j = i + 1; j < t; j++) {
        m[i][j] = MASKED;
      }
    }
    return m;
  }

  private static Operand<TFloat32> dense(
      Ops tf, Operand<TFloat32> x, Operands w, String weight, String bias) {
    return tf.math.add(tf.linalg.matMul(x, param(tf, w, weight)), param(tf, w, bias));
  }

  /** GELU, tanh form: ½x(1 + tanh(√(2/π)(x + 0.044715x³))). */
  static Operand<TFloat32> gelu(Ops tf, Operand<TFloat32> x) {
    Operand<TFloat32> cube = tf.math.mul(tf.math.square(x), x);
    Operand<TFloat32> inner = tf.math.mul(tf.constant(GELU_C),
        tf.math.add(x, tf.math.mul(tf.constant(0.044715f), cube)));
    return tf.math.mul(tf.math.mul(tf.constant(0.5f), x),
        tf.math.add(tf.constant(1f), tf.math.tanh(inner)));
  }

  /**
   * Mean cross-entropy in nats over the rows and the scored positions {@code from … T−1}; dense
   * one-hot labels (the sparse op has no gradient in TF Java 1.1.0).
   */
  static Operand<TFloat32> loss(Ops tf, Operand<TFloat32> logits, Operand<TInt32> labels,
      int vocabSize, int context, int from) {
    Operand<TInt32> flat = tf.reshape(labels, tf.constant(new long[] {-1}));
    Operand<TFloat32> oneHot = tf.oneHot(flat, tf.constant(vocabSize), tf.constant(1f), tf.constant(0f));
    Operand<TFloat32> perToken = tf.reshape(tf.nn.softmaxCrossEntropyWithLogits(logits, oneHot).loss(),
        tf.constant(new long[] {-1, context}));
    float[] weights = new float[context];
    Arrays.fill(weights, from, context, 1f / (context - from));
    Operand<TFloat32> perRow = tf.reduceSum(tf.math.mul(perToken, tf.constant(weights)), tf.constant(1));
    return tf.math.mean(perRow, tf.constant(0));
  }

  /** {@return the configuration} */
  public Config config() {
    return config;
  }

  @Override
  TInt32 tokenInput(Batches.Batch batch) {
    return tokens(checked(batch));
  }

  @Override
  TInt32 labelInput(Batches.Batch batch) {
    return labels(batch);
  }

  /** Fails with one line unless the batch's windows are the model's context. */
  private Batches.Batch checked(Batches.Batch batch) {
    if (batch.contextLength() != config.architecture().context()) {
      throw new IllegalArgumentException("the transformer reads windows of "
          + config.architecture().context() + " tokens; got " + batch.contextLength());
    }
    return batch;
  }

  /** The token input of a batch: {@code [B, T]}. */
  public static TInt32 tokens(Batches.Batch batch) {
    return TInt32.tensorOf(Shape.of(batch.batchSize(), batch.contextLength()),
        DataBuffers.of(batch.inputsFlat(), true, false));
  }

  /** The labels of a batch: {@code [B, T]}, the token after each input position. */
  public static TInt32 labels(Batches.Batch batch) {
    return TInt32.tensorOf(Shape.of(batch.batchSize(), batch.contextLength()),
        DataBuffers.of(batch.targetsFlat(), true, false));
  }

}
