package org.fadam.demo;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.MalformedInputException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import org.fadam.TfRecordWriter;

/**
 * The data of a demo run, all from its seed: a training stream, a sample of it (for train_loss), a
 * held-out set (for heldout_loss), and the batch of every step.
 *
 * <p>Two sources. The order-2 Markov chain ({@link MarkovSource#createDefault()}): its training and
 * held-out streams are independent samples, and its entropy rate is the floor no model can beat.
 * A text file ({@code --text}): any UTF-8 file read as bytes (256 tokens), the first 90 % the
 * training stream and the last 10 % held out; no floor is known.
 *
 * <p>The MLP reads windows of 2 tokens and is scored on the token after them (the held-out set is
 * 16384 such windows, as it always was). The transformer reads windows of its context and is
 * scored at every position from {@link #scoredFrom()}: 16384 positions of held-out windows (fewer
 * when a text's last 10 % is shorter).
 */
final class DemoData {

  /** Tokens of the Markov training stream. */
  static final int TRAIN_TOKENS = 1 << 21;
  /** Held-out predictions (MLP windows, or transformer positions). */
  static final int HELDOUT_PREDICTIONS = 16384;
  /** Training-stream predictions scored for train_loss. */
  static final int TRAIN_EVAL_PREDICTIONS = 8192;
  /** The alphabet of {@code --text}: bytes. */
  static final int BYTE_VOCABULARY = 256;
  /** The held-out part of a text, at its end: 1/10. */
  static final int TEXT_HELDOUT_DIVISOR = 10;

  private static final long TRAIN_STREAM = 1;
  private static final long HELDOUT_STREAM = 2;
  private static final long BATCH_STREAM = 4;

  /** The Markov source, or null for a text. */
  final MarkovSource source;
  final int[] train;
  final Batches.Batch trainSample;
  final Batches.Batch heldOut;
  private final long seed;
  private final int batch;
  private final int context;
  private final boolean transformer;
  private final int vocabSize;
  private final String description;

  private DemoData(long seed, int batch, int context, boolean transformer, MarkovSource source,
      int[] train, int[] held, int vocabSize, String description) {
    this.seed = seed;
    this.batch = batch;
    this.context = context;
    this.transformer = transformer;
    this.source = source;
    this.train = train;
    this.vocabSize = vocabSize;
    this.description = description;
    int heldRows = Math.min(rows(HELDOUT_PREDICTIONS), (held.length - 1) / context);
    int trainRows = Math.min(rows(TRAIN_EVAL_PREDICTIONS), (train.length - 1) / context);
    this.heldOut = Batches.heldOut(held, heldRows, context, 1).get(0);
    this.trainSample = Batches.heldOut(train, trainRows, context, 1).get(0);
  }

  /** The data of the MLP on the Markov source (the demo's default run). */
  DemoData(long seed, int batch) {
    this(seed, batch, DemoModel.CONTEXT, false, MarkovSource.createDefault());
  }

  private DemoData(long seed, int batch, int context, boolean transformer, MarkovSource m) {
    this(seed, batch, context, transformer, m, m.sample(Demo.mix(seed, TRAIN_STREAM, 0), TRAIN_TOKENS),
        m.sample(Demo.mix(seed, HELDOUT_STREAM, 0), heldOutRows(context, transformer) * context + 1),
        m.vocabSize(), "order-2 Markov chain over " + m.vocabSize() + " tokens");
  }

  /** The data of a run with these settings: the Markov source or {@code --text}, for its model. */
  static DemoData of(Demo.Settings s) throws IOException {
    if (s.transformer() == null) {
      return new DemoData(s.seed(), s.batch());
    }
    int t = s.transformer().context();
    if (s.text() == null) {
      return new DemoData(s.seed(), s.batch(), t, true, MarkovSource.createDefault());
    }
    int[] bytes = readText(s.text(), t);
    int held = bytes.length / TEXT_HELDOUT_DIVISOR;
    int[] train = java.util.Arrays.copyOfRange(bytes, 0, bytes.length - held);
    int[] heldOut = java.util.Arrays.copyOfRange(bytes, bytes.length - held, bytes.length);
    return new DemoData(s.seed(), s.batch(), t, true, null, train, heldOut, BYTE_VOCABULARY,
        String.format(Locale.ROOT, "%s, %d bytes as tokens (V=256), the last %d held out",
            s.text().getFileName(), bytes.length, held));
  }

  /** The windows of the held-out set: 16384 predictions in all. */
  private static int heldOutRows(int context, boolean transformer) {
    int perRow = transformer ? context - scoredFrom(transformer, true) : 1;
    return Math.max(1, HELDOUT_PREDICTIONS / perRow);
  }

  private int rows(int predictions) {
    int perRow = transformer ? context - scoredFrom() : 1;
    return Math.max(1, predictions / perRow);
  }

  /**
   * A {@code --text} file as byte tokens, failing with one line when it cannot be read, is not
   * UTF-8 text (a binary file), or is too short for one held-out window of {@code context + 1}
   * bytes in its last 10 %.
   */
  static int[] readText(Path file, int context) throws IOException {
    byte[] bytes;
    try {
      bytes = Files.readAllBytes(file);
    } catch (IOException e) {
      throw new IllegalArgumentException("--text " + file + ": cannot read it: "
          + Demo.reason(e, file), e);
    }
    if (bytes.length == 0) {
      throw new IllegalArgumentException("--text " + file + " is empty");
    }
    for (int i = 0; i < bytes.length; i++) {
      if (bytes[i] == 0) {
        throw new IllegalArgumentException("--text " + file + " is not text: it holds a NUL byte at"
            + " offset " + i + " (a binary file?)");
      }
    }
    try {
      StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
          .onUnmappableCharacter(CodingErrorAction.REPORT).decode(ByteBuffer.wrap(bytes));
    } catch (MalformedInputException e) {
      throw new IllegalArgumentException("--text " + file + " is not UTF-8 text (a malformed byte"
          + " sequence; a binary file?)", e);
    } catch (CharacterCodingException e) {
      throw new IllegalArgumentException("--text " + file + " is not UTF-8 text: " + e, e);
    }
    long needed = (long) TEXT_HELDOUT_DIVISOR * (context + 1);
    if (bytes.length < needed) {
      throw new IllegalArgumentException(String.format(Locale.ROOT, "--text %s is too short for"
          + " --context %d: %d bytes, and its last 10 %% (held out) must hold a window of %d,"
          + " so at least %d bytes", file, context, bytes.length, context + 1, needed));
    }
    int[] tokens = new int[bytes.length];
    for (int i = 0; i < bytes.length; i++) {
      tokens[i] = bytes[i] & 0xff;
    }
    return tokens;
  }

  /** {@return the token alphabet's size} */
  int vocabSize() {
    return vocabSize;
  }

  /** {@return the tokens a window holds} */
  int context() {
    return context;
  }

  /** {@return the first scored position of a window} (the MLP's one prediction: 0) */
  int scoredFrom() {
    return scoredFrom(transformer, source != null);
  }

  /**
   * On the Markov source the transformer's position 0 sees one token where the order-2 chain needs
   * two, so only positions from 1 are scored (the floor holds for each); on text, every position.
   */
  private static int scoredFrom(boolean transformer, boolean markov) {
    return transformer && markov ? MarkovSource.ORDER - 1 : 0;
  }

  /** {@return the source in words} */
  String description() {
    return description;
  }

  /** The batch of step {@code k} (1-based): a function of (seed, k) only. */
  Batches.Batch batch(long k) {
    return batches(k, 1).get(0);
  }

  /**
   * The {@code calls} micro-batches of optimizer step {@code k} under {@code --accumulate
   * calls}: consecutive draws of step k's sampler, so together they are, in order, the rows
   * that {@code --batch calls·B} draws for step k (and {@code calls = 1} is {@link #batch}).
   */
  List<Batches.Batch> batches(long k, int calls) {
    Batches sampler = new Batches(train, batch, context, Demo.mix(seed, BATCH_STREAM, k));
    List<Batches.Batch> out = new ArrayList<>(calls);
    for (int j = 0; j < calls; j++) {
      out.add(sampler.next());
    }
    return out;
  }

  /**
   * Writes the batches of steps {@code first … last} to a TFRecord file, row by row: one
   * {@code tf.train.Example} per row with the model's inputs as int64 features (the MLP: tokens
   * [2], labels [1]; the transformer: tokens [T], labels [T]), so that batch {@code k} is records
   * {@code (k − first)·B … (k − first + 1)·B − 1}.
   *
   * @return the number of records
   */
  long writeTfRecord(Path file, long first, long last) throws IOException {
    try (TfRecordWriter w = new TfRecordWriter(file)) {
      for (long k = first; k <= last; k++) {
        Batches.Batch b = batch(k);
        int[] labels = transformer ? null : DemoModel.labelsOf(b);
        for (int r = 0; r < b.batchSize(); r++) {
          long[] tokens = longs(b.inputs()[r]);
          long[] rowLabels = transformer ? longs(b.targets()[r]) : new long[] {labels[r]};
          w.write(TfRecordWriter.int64Example(Map.of(DemoModel.TOKENS, tokens, DemoModel.LABELS, rowLabels)));
        }
      }
      return w.records();
    }
  }

  private static long[] longs(int[] values) {
    long[] out = new long[values.length];
    for (int i = 0; i < values.length; i++) {
      out[i] = values[i];
    }
    return out;
  }

  /** The exact entropy rate of the Markov source (no model can do better on average), or NaN for a text. */
  double floor() {
    return source == null ? Double.NaN : source.entropyRateNats();
  }

  /**
   * The loss the true chain itself scores on the held-out predictions (the floor plus sampling
   * noise), or NaN for a text.
   */
  double heldOutTrueLoss() {
    if (source == null) {
      return Double.NaN;
    }
    int[][] in = heldOut.inputs();
    int[][] tg = heldOut.targets();
    double sum = 0;
    long n = 0;
    int from = transformer ? scoredFrom() : context - 1;
    for (int r = 0; r < in.length; r++) {
      for (int p = from; p < context; p++) {
        // target p follows inputs p−1 and p (the MLP: its one target, after its two inputs)
        sum -= StrictMath.log(source.probability(in[r][p - 1], in[r][p], tg[r][p]));
        n++;
      }
    }
    return sum / n;
  }

  /** {@return the held-out predictions scored} */
  long heldOutPredictions() {
    return (long) heldOut.batchSize() * (transformer ? context - scoredFrom() : 1);
  }
}
