package org.fadam.demo;

import java.io.IOException;
import java.io.Reader;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.fadam.tools.Csv;

/**
 * The learning-rate sweep's loss log as CSV: header {@value #HEADER}, one row per optimizer,
 * learning rate, seed and evaluated step, UTF-8, {@code \n} line ends. Losses and rates are
 * written exactly ({@link Double#toString(double)}), as in {@link ResultsCsv}, by Apache Commons
 * CSV ({@link Csv}).
 */
public final class SweepCsv {

  /** The header line. */
  public static final String HEADER = "optimizer,lr,seed,step,train_loss,heldout_loss";

  private static final List<String> COLUMNS = List.of(HEADER.split(","));

  /**
   * One line of the sweep's log.
   *
   * @param optimizer the optimizer's display name (no comma, quote or line break)
   * @param lr the learning rate of the run
   * @param seed the seed of the run
   * @param step the optimizer steps taken when the losses were measured
   * @param trainLoss training loss, nats/token, or NaN
   * @param heldoutLoss held-out loss, nats/token, or NaN
   */
  public record Row(String optimizer, double lr, long seed, long step, double trainLoss,
      double heldoutLoss) {

    /** Checks the name the way {@link ResultsCsv.Row} does, {@code lr > 0} and {@code step ≥ 0}. */
    public Row {
      new ResultsCsv.Row(optimizer, step, trainLoss, heldoutLoss); // the same name and step checks
      if (!(lr > 0 && lr < Double.POSITIVE_INFINITY)) {
        throw new IllegalArgumentException("`lr` must be in (0, ∞); got " + lr);
      }
    }

    /** The demo's own row for the same measurement (the sweep point's plain-demo equivalent). */
    static Row of(double lr, long seed, ResultsCsv.Row r) {
      return new Row(r.optimizer(), lr, seed, r.step(), r.trainLoss(), r.heldoutLoss());
    }
  }

  private SweepCsv() {}

  /** Writes the header and {@code rows} to {@code path}, replacing it. */
  public static void write(Path path, List<Row> rows) throws IOException {
    try (Writer w = Files.newBufferedWriter(path, StandardCharsets.UTF_8)) {
      Csv.printRecord(w, COLUMNS);
      for (Row r : rows) {
        Csv.printRecord(w, List.of(r.optimizer(), Double.toString(r.lr()), Long.toString(r.seed()),
            Long.toString(r.step()), ResultsCsv.formatLoss(r.trainLoss()),
            ResultsCsv.formatLoss(r.heldoutLoss())));
      }
    }
  }

  /** Reads a file written by {@link #write}; a malformed line is an IOException naming it. */
  public static List<Row> read(Path path) throws IOException {
    try (Reader r = Files.newBufferedReader(path, StandardCharsets.UTF_8)) {
      return Csv.read(r, COLUMNS, f -> new Row(f.get(0), Double.parseDouble(f.get(1)),
          Long.parseLong(f.get(2)), Long.parseLong(f.get(3)), ResultsCsv.parseLoss(f.get(4)),
          ResultsCsv.parseLoss(f.get(5))));
    } catch (IOException e) {
      throw new IOException(path + ": " + e.getMessage(), e);
    }
  }
}
