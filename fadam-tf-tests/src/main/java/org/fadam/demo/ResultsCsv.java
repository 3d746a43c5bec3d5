package org.fadam.demo;

import java.io.Closeable;
import java.io.IOException;
import java.io.Reader;
import java.io.UncheckedIOException;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.fadam.tools.Csv;

/**
 * The demo's loss log as CSV: header {@value #HEADER}, one row per optimizer and step, UTF-8,
 * {@code \n} line ends, written and read by Apache Commons CSV ({@link Csv}).
 *
 * <p>Losses are written exactly, with {@link Double#toString(double)}, which parses back to the
 * same bits (a float32 loss widened to double keeps its value exactly, e.g. {@code 1.7234567f} is
 * written {@code 1.7234567403793335}). Writing floats with {@link Float#toString(float)} would be
 * shorter but ambiguous in a double column: {@code "0.1"} is both {@code 0.1f} and {@code 0.1}.
 * {@code NaN} marks a step without that loss (e.g. no held-out evaluation at that step) or a
 * diverged one; an empty field also reads as {@code NaN}.
 */
public final class ResultsCsv {

  /** The header line. */
  public static final String HEADER = "optimizer,step,train_loss,heldout_loss";

  private static final List<String> COLUMNS = List.of(HEADER.split(","));

  /**
   * One line of the log.
   *
   * @param optimizer the optimizer's name; no comma, quote or line break
   * @param step the number of optimizer steps taken when the losses were measured
   * @param trainLoss training loss at that step, nats/token, or NaN
   * @param heldoutLoss held-out loss at that step, nats/token, or NaN
   */
  public record Row(String optimizer, long step, double trainLoss, double heldoutLoss) {

    /** Checks the name (non-empty, no CSV metacharacters) and {@code step ≥ 0}. */
    public Row {
      if (optimizer.isEmpty() || optimizer.chars().anyMatch(ch -> ch == ',' || ch == '"'
          || ch == '\n' || ch == '\r')) {
        throw new IllegalArgumentException(
            "`optimizer` must be non-empty without ',', '\"' or line breaks; got \"" + optimizer
                + "\"");
      }
      if (!(step >= 0)) {
        throw new IllegalArgumentException("`step` must be >= 0; got " + step);
      }
    }
  }

  private ResultsCsv() {}

  /** Writes the header and {@code rows} to {@code path}, replacing it. */
  public static void write(Path path, List<Row> rows) throws IOException {
    try (Writer w = Files.newBufferedWriter(path, StandardCharsets.UTF_8)) {
      write(w, rows);
    }
  }

  /** Writes the header and {@code rows} to {@code out} (not closed). */
  public static void write(Writer out, List<Row> rows) throws IOException {
    Csv.printRecord(out, COLUMNS);
    for (Row row : rows) {
      Csv.printRecord(out, fields(row));
    }
  }

  /** Reads a file written by {@link #write(Path, List)}. */
  public static List<Row> read(Path path) throws IOException {
    try (Reader r = Files.newBufferedReader(path, StandardCharsets.UTF_8)) {
      return read(r);
    }
  }

  /**
   * Reads CSV text with the header {@value #HEADER} (blank lines and {@code \r\n} tolerated).
   *
   * @throws IOException on a missing header or a malformed line (its number is in the message)
   */
  public static List<Row> read(Reader in) throws IOException {
    return Csv.read(in, COLUMNS, f -> new Row(f.get(0), Long.parseLong(f.get(1)),
        parseLoss(f.get(2)), parseLoss(f.get(3))));
  }

  /**
   * Opens {@code path} for writing rows as they are produced (header first, each row flushed), so a
   * run stopped early still leaves a readable log.
   */
  public static Appender open(Path path) throws IOException {
    return new Appender(Files.newBufferedWriter(path, StandardCharsets.UTF_8));
  }

  /** Writes rows one at a time; see {@link #open(Path)}. */
  public static final class Appender implements Closeable {
    private final Writer out;

    private Appender(Writer out) throws IOException {
      this.out = out;
      Csv.printRecord(out, COLUMNS);
      out.flush();
    }

    /** Writes and flushes one row. */
    public void append(Row row) {
      try {
        Csv.printRecord(out, fields(row));
        out.flush();
      } catch (IOException e) {
        throw new UncheckedIOException(e);
      }
    }

    @Override
    public void close() throws IOException {
      out.close();
    }
  }

  /** The fields of one row, as written. */
  private static List<String> fields(Row row) {
    return List.of(row.optimizer(), Long.toString(row.step()), formatLoss(row.trainLoss()),
        formatLoss(row.heldoutLoss()));
  }

  /** {@code v} as {@link Double#toString(double)}, exactly; {@link #parseLoss} inverts it. */
  public static String formatLoss(double v) {
    return Double.toString(v);
  }

  /** Parses a field written by {@link #formatLoss}; an empty field is NaN. */
  public static double parseLoss(String field) {
    String s = field.strip();
    if (s.isEmpty()) {
      return Double.NaN;
    }
    return Double.parseDouble(s);
  }
}
