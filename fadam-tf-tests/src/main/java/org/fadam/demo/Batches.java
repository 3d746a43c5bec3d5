package org.fadam.demo;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Random;

/**
 * Language-model batches cut from a token stream: each row is a window of {@code T} input tokens
 * and the {@code T} tokens that follow each of them (the same window shifted by one).
 *
 * <p>An instance is the training sampler: every {@link #next()} draws {@code B} window starts
 * uniformly from the stream with its own {@link Random} seeded explicitly, so the same stream and
 * seed give the same batches in the same order. {@link #heldOut} cuts a fixed evaluation set from a
 * separate stream: consecutive non-overlapping windows, so each held-out target is scored once.
 */
public final class Batches {

  /**
   * One batch. {@code inputs[r][t]} is token {@code s_r + t} of the stream and
   * {@code targets[r][t]} token {@code s_r + t + 1}, for a row start {@code s_r}. The arrays belong
   * to the batch: do not modify them.
   */
  public record Batch(int[][] inputs, int[][] targets) {

    /** Checks that inputs and targets are both {@code [B][T]} with {@code B, T ≥ 1}. */
    public Batch {
      if (inputs.length == 0 || inputs.length != targets.length) {
        throw new IllegalArgumentException("inputs and targets must have the same B >= 1 rows; got "
            + inputs.length + " and " + targets.length);
      }
      int t = inputs[0].length;
      for (int r = 0; r < inputs.length; r++) {
        if (inputs[r].length != t || targets[r].length != t || t == 0) {
          throw new IllegalArgumentException("every row must have the same T >= 1 tokens");
        }
      }
    }

    /** {@code B}, the number of rows. */
    public int batchSize() {
      return inputs.length;
    }

    /** {@code T}, the tokens per row. */
    public int contextLength() {
      return inputs[0].length;
    }

    /** The inputs row-major, {@code B·T} values: the buffer of a {@code [B, T]} int32 tensor. */
    public int[] inputsFlat() {
      return flatten(inputs);
    }

    /** The targets row-major, {@code B·T} values: the buffer of a {@code [B, T]} int32 tensor. */
    public int[] targetsFlat() {
      return flatten(targets);
    }

    private static int[] flatten(int[][] rows) {
      int t = rows[0].length;
      int[] flat = new int[rows.length * t];
      for (int r = 0; r < rows.length; r++) {
        System.arraycopy(rows[r], 0, flat, r * t, t);
      }
      return flat;
    }
  }

  private final int[] stream;
  private final int batchSize;
  private final int contextLength;
  private final Random rng;

  /**
   * A training sampler over {@code stream} (not copied: do not modify it).
   *
   * @throws IllegalArgumentException unless {@code batchSize ≥ 1}, {@code contextLength ≥ 1} and
   *     the stream holds at least {@code contextLength + 1} tokens
   */
  public Batches(int[] stream, int batchSize, int contextLength, long seed) {
    checkShape(batchSize, contextLength);
    if (!(stream.length >= contextLength + 1)) {
      throw new IllegalArgumentException("stream must hold at least contextLength + 1 = "
          + (contextLength + 1) + " tokens; got " + stream.length);
    }
    this.stream = stream;
    this.batchSize = batchSize;
    this.contextLength = contextLength;
    this.rng = new Random(seed);
  }

  /** {@code B}. */
  public int batchSize() {
    return batchSize;
  }

  /** {@code T}. */
  public int contextLength() {
    return contextLength;
  }

  /** {@code B·T}: the tokens predicted per batch (the unit of tokens/s). */
  public int tokensPerBatch() {
    return batchSize * contextLength;
  }

  /** The next training batch: {@code B} windows at independent uniform starts. */
  public Batch next() {
    int starts = stream.length - contextLength; // start s needs tokens s .. s + T
    int[][] in = new int[batchSize][];
    int[][] tg = new int[batchSize][];
    for (int r = 0; r < batchSize; r++) {
      int s = rng.nextInt(starts);
      in[r] = slice(stream, s, contextLength);
      tg[r] = slice(stream, s + 1, contextLength);
    }
    return new Batch(in, tg);
  }

  /**
   * A fixed held-out set of {@code count} batches from {@code stream}: row {@code k} (counting
   * across batches) is the window starting at token {@code k·T}, so the held-out targets are
   * tokens {@code 1 … count·B·T} of the stream, each once.
   *
   * @throws IllegalArgumentException unless the shape is positive and the stream holds at least
   *     {@code count·B·T + 1} tokens
   */
  public static List<Batch> heldOut(int[] stream, int batchSize, int contextLength, int count) {
    checkShape(batchSize, contextLength);
    if (!(count >= 1)) {
      throw new IllegalArgumentException("`count` must be >= 1; got " + count);
    }
    long needed = (long) count * batchSize * contextLength + 1;
    if (!(stream.length >= needed)) {
      throw new IllegalArgumentException("stream must hold at least count·B·T + 1 = " + needed
          + " tokens; got " + stream.length);
    }
    List<Batch> out = new ArrayList<>(count);
    int row = 0;
    for (int b = 0; b < count; b++) {
      int[][] in = new int[batchSize][];
      int[][] tg = new int[batchSize][];
      for (int r = 0; r < batchSize; r++, row++) {
        int s = row * contextLength;
        in[r] = slice(stream, s, contextLength);
        tg[r] = slice(stream, s + 1, contextLength);
      }
      out.add(new Batch(in, tg));
    }
    return Collections.unmodifiableList(out);
  }

  private static int[] slice(int[] stream, int from, int length) {
    int[] out = new int[length];
    System.arraycopy(stream, from, out, 0, length);
    return out;
  }

  private static void checkShape(int batchSize, int contextLength) {
    if (!(batchSize >= 1)) {
      throw new IllegalArgumentException("`batchSize` must be >= 1; got " + batchSize);
    }
    if (!(contextLength >= 1)) {
      throw new IllegalArgumentException("`contextLength` must be >= 1; got " + contextLength);
    }
  }
}
