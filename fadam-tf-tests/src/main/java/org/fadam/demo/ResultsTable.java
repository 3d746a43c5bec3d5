package org.fadam.demo;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import org.fadam.tools.TextTable;

/**
 * The end-of-run comparison of the optimizers, as aligned plain text ({@link #toText()}) or as a
 * Markdown table for the README and docs/demo.md ({@link #toMarkdown()}), one row per optimizer:
 *
 * <pre>
 * optimizer  final train loss  held-out loss  gap to entropy floor  steps/s  optimizer state bytes/param
 * FAdam                1.6321         1.6402               +0.0673    123.4                         8.00
 * Adam                 1.6400         1.6500               +0.0771     98.8                         8.00
 * </pre>
 *
 * Losses are in nats/token with 4 decimals, the gap is {@code held-out loss − floor} with its sign,
 * steps/s has one format per column (3 significant digits for the slowest); numbers use
 * {@link Locale#ROOT} (a decimal point whatever the default locale).
 */
public final class ResultsTable {

  /** Column headers, in order. */
  public static final List<String> HEADERS = List.of("optimizer", "final train loss",
      "held-out loss", "gap to entropy floor", "steps/s", "optimizer state bytes/param");

  /**
   * One optimizer's results.
   *
   * @param optimizer name
   * @param finalTrainLoss training loss at the end, nats/token
   * @param heldoutLoss held-out loss at the end, nats/token
   * @param stepsPerSecond training throughput
   * @param stateBytesPerParam bytes of optimizer state (slots, counters) per model parameter
   */
  public record Row(String optimizer, double finalTrainLoss, double heldoutLoss,
      double stepsPerSecond, double stateBytesPerParam) {}

  private final double floorNats;
  private final List<Row> rows;

  /**
   * A table whose gaps are measured from {@code floorNats} (the entropy rate, or the window floor),
   * or NaN when no floor is known (a text file): the gap column then says "n/a".
   *
   * @throws IllegalArgumentException if {@code floorNats} is infinite
   */
  public ResultsTable(double floorNats, List<Row> rows) {
    if (Double.isInfinite(floorNats)) {
      throw new IllegalArgumentException("`floorNats` must be finite or NaN (no floor); got " + floorNats);
    }
    this.floorNats = floorNats;
    this.rows = List.copyOf(rows);
  }

  /** The floor the gaps are measured from, nats/token. */
  public double floorNats() {
    return floorNats;
  }

  /** The rows, in the order given. */
  public List<Row> rows() {
    return rows;
  }

  /** The cells as strings, header row first. */
  List<List<String>> cells() {
    List<List<String>> out = new ArrayList<>();
    out.add(HEADERS);
    String throughput = throughputFormat(rows);
    for (Row r : rows) {
      out.add(List.of(r.optimizer(), fmt("%.4f", r.finalTrainLoss()), fmt("%.4f", r.heldoutLoss()),
          Double.isNaN(floorNats) ? "n/a" : fmt("%+.4f", r.heldoutLoss() - floorNats), fmt(throughput, r.stepsPerSecond()),
          fmt("%.2f", r.stateBytesPerParam())));
    }
    return out;
  }

  /** Plain text: columns separated by two spaces, names left-aligned, numbers right-aligned. */
  public String toText() {
    return TextTable.text(cells());
  }

  /** A GitHub-flavoured Markdown table, cells padded so the source reads as a table too. */
  public String toMarkdown() {
    return TextTable.markdown(cells());
  }

  @Override
  public String toString() {
    return toText();
  }

  /** One format for the whole steps/s column: 3 significant digits for its smallest value. */
  private static String throughputFormat(List<Row> rows) {
    double min = Double.POSITIVE_INFINITY;
    for (Row r : rows) {
      if (Double.isFinite(r.stepsPerSecond())) {
        min = Math.min(min, Math.abs(r.stepsPerSecond()));
      }
    }
    return min >= 100 ? "%.0f" : min >= 10 ? "%.1f" : min >= 1 ? "%.2f" : "%.3f";
  }

  private static String fmt(String format, double v) {
    return String.format(Locale.ROOT, format, v);
  }
}
