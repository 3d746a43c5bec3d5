package org.fadam.demo;

import java.math.BigDecimal;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;
import org.fadam.tools.TextTable;

/**
 * The sweep's summary: for each optimizer, the final held-out loss at every learning rate over the
 * seeds (mean, sample standard deviation, min, max), its best rate, the rates within {@value
 * #NEAR_BEST} nats of its own best, and how it compares with the best optimizer, where a
 * difference smaller than the seed spread is reported as such, not as a win.
 */
public final class SweepTable {

  /** A rate is "near the best" when its mean loss is within this many nats of the best mean. */
  public static final double NEAR_BEST = 0.05;

  /** How to read the table (for the Markdown file and docs/demo.md). */
  public static final String LEGEND = "Final held-out loss in nats/token. best lr: the grid rate"
      + " with the lowest mean over seeds; ± is the sample standard deviation over the seeds and"
      + " [min, max] their range; near-best rates: the contiguous rates around the best whose mean"
      + " is within " + NEAR_BEST + " nats of it. A difference between two optimizers is called"
      + " within the seed spread when it is smaller than the sum of their standard deviations"
      + " (their ± bars overlap): no winner is named then.";

  /** Column headers of the summary, in order. */
  public static final List<String> HEADERS = List.of("optimizer", "best lr",
      "held-out loss (mean ± sd)", "[min, max] over seeds", "near-best rates (±0.05 nats)",
      "vs the best optimizer");

  /**
   * The final held-out losses of one optimizer at one rate over the seeds.
   *
   * @param lr the learning rate
   * @param losses the final held-out loss of each seed, in seed order
   */
  public record Cell(double lr, List<Double> losses) {
    /** The mean over the seeds (NaN if any seed's loss is not finite: diverged). */
    public double mean() {
      return losses.stream().mapToDouble(Double::doubleValue).sum() / losses.size();
    }

    /** The sample standard deviation over the seeds (0 for one seed). */
    public double sd() {
      if (losses.size() < 2) {
        return 0;
      }
      double m = mean();
      double ss = 0;
      for (double x : losses) {
        ss += (x - m) * (x - m);
      }
      return Math.sqrt(ss / (losses.size() - 1));
    }

    public double min() {
      return losses.stream().mapToDouble(Double::doubleValue).min().orElse(Double.NaN);
    }

    public double max() {
      return losses.stream().mapToDouble(Double::doubleValue).max().orElse(Double.NaN);
    }
  }

  /**
   * One optimizer's line of the sweep: a cell per rate, ascending.
   *
   * @param optimizer the display name
   * @param cells one per learning rate, by ascending rate
   */
  public record Line(String optimizer, List<Cell> cells) {
    /** The cell with the lowest finite mean (the first such on a tie). */
    public Cell best() {
      Cell best = null;
      for (Cell c : cells) {
        if (Double.isFinite(c.mean()) && (best == null || c.mean() < best.mean())) {
          best = c;
        }
      }
      if (best == null) {
        throw new IllegalStateException(optimizer + " diverged at every learning rate");
      }
      return best;
    }

    /** The contiguous cells around the best whose mean is within {@link #NEAR_BEST} of it. */
    public List<Cell> nearBest() {
      int b = cells.indexOf(best());
      double limit = best().mean() + NEAR_BEST;
      int lo = b;
      while (lo > 0 && cells.get(lo - 1).mean() <= limit) {
        lo--;
      }
      int hi = b;
      while (hi + 1 < cells.size() && cells.get(hi + 1).mean() <= limit) {
        hi++;
      }
      return cells.subList(lo, hi + 1);
    }
  }

  private final double floorNats;
  private final List<Line> lines;

  /** A table of these lines (each with its cells by ascending rate). */
  public SweepTable(double floorNats, List<Line> lines) {
    if (lines.isEmpty()) {
      throw new IllegalArgumentException("`lines` must not be empty");
    }
    this.floorNats = floorNats;
    this.lines = List.copyOf(lines);
  }

  /** The table of a sweep's results, optimizers in the order they first appear. */
  public static SweepTable of(List<Sweep.Result> results, double floorNats) {
    Map<String, TreeMap<Double, Map<Long, Double>>> grid = new LinkedHashMap<>();
    for (Sweep.Result r : results) {
      grid.computeIfAbsent(r.point().optimizer().displayName(), k -> new TreeMap<>())
          .computeIfAbsent(r.point().lr(), k -> new TreeMap<>())
          .put(r.point().seed(), r.finalHeldout());
    }
    return new SweepTable(floorNats, lines(grid));
  }

  /** The table of a sweep's CSV rows: each run's last row is its final loss. */
  public static SweepTable ofRows(List<SweepCsv.Row> rows, double floorNats) {
    Map<String, TreeMap<Double, Map<Long, Double>>> grid = new LinkedHashMap<>();
    Map<String, Long> lastStep = new LinkedHashMap<>();
    for (SweepCsv.Row r : rows) {
      String key = r.optimizer() + "," + r.lr() + "," + r.seed();
      if (r.step() >= lastStep.getOrDefault(key, -1L)) {
        lastStep.put(key, r.step());
        grid.computeIfAbsent(r.optimizer(), k -> new TreeMap<>())
            .computeIfAbsent(r.lr(), k -> new TreeMap<>())
            .put(r.seed(), r.heldoutLoss());
      }
    }
    return new SweepTable(floorNats, lines(grid));
  }

  private static List<Line> lines(Map<String, TreeMap<Double, Map<Long, Double>>> grid) {
    List<Line> lines = new ArrayList<>();
    grid.forEach((name, byLr) -> {
      List<Cell> cells = new ArrayList<>();
      byLr.forEach((lr, bySeed) -> cells.add(new Cell(lr, List.copyOf(new TreeMap<>(bySeed).values()))));
      lines.add(new Line(name, cells));
    });
    return lines;
  }

  /** The entropy floor, nats/token. */
  public double floorNats() {
    return floorNats;
  }

  /** One line per optimizer. */
  public List<Line> lines() {
    return lines;
  }

  /** The optimizer whose best cell has the lowest mean. */
  public Line best() {
    Line best = lines.get(0);
    for (Line l : lines) {
      if (l.best().mean() < best.best().mean()) {
        best = l;
      }
    }
    return best;
  }

  /** Whether {@code a}'s and {@code b}'s best means differ by less than their summed spread. */
  public static boolean withinSpread(Cell a, Cell b) {
    return Math.abs(a.mean() - b.mean()) < a.sd() + b.sd();
  }

  /** Whether every cell has at least two seeds, so that a spread was measured. */
  public boolean spreadMeasured() {
    return lines.stream().allMatch(l -> l.cells().stream().allMatch(c -> c.losses().size() >= 2));
  }

  /** The summary cells, header first. */
  List<List<String>> cells() {
    List<List<String>> out = new ArrayList<>();
    out.add(HEADERS);
    Cell top = best().best();
    for (Line l : lines) {
      Cell b = l.best();
      List<Cell> near = l.nearBest();
      String range = near.size() == 1 ? rate(b.lr()) + " only"
          : rate(near.get(0).lr()) + " to " + rate(near.get(near.size() - 1).lr());
      String vs = l == best() ? "best"
          : String.format(Locale.ROOT, "%+.4f%s", b.mean() - top.mean(),
              !spreadMeasured() ? " (one seed: spread unknown)"
                  : withinSpread(b, top) ? " (within seed spread)" : "");
      out.add(List.of(l.optimizer(), rate(b.lr()),
          String.format(Locale.ROOT, "%.4f ± %.4f", b.mean(), b.sd()),
          String.format(Locale.ROOT, "[%.4f, %.4f]", b.min(), b.max()),
          range + " (" + near.size() + " of " + l.cells().size() + ")", vs));
    }
    return out;
  }

  /** One sentence naming the best optimizer, and who is within its seed spread. */
  public String verdict() {
    Line top = best();
    Cell t = top.best();
    List<String> tied = new ArrayList<>();
    List<String> behind = new ArrayList<>();
    for (Line l : lines) {
      if (l != top) {
        Cell b = l.best();
        String s = String.format(Locale.ROOT, "%s (%+.4f)", l.optimizer(), b.mean() - t.mean());
        (withinSpread(b, t) ? tied : behind).add(s);
      }
    }
    StringBuilder sb = new StringBuilder(String.format(Locale.ROOT,
        "Lowest mean at its best rate: %s, lr %s, %.4f ± %.4f.", top.optimizer(), rate(t.lr()),
        t.mean(), t.sd()));
    if (!spreadMeasured()) {
      return sb.append(" One seed per point: the seed spread is unknown, so no difference here is"
          + " shown to be larger than it; run more --seeds.").toString();
    }
    if (!tied.isEmpty()) {
      sb.append(" Within the seed spread of it, so not distinguishable here: ")
          .append(String.join(", ", tied)).append('.');
    }
    if (!behind.isEmpty()) {
      sb.append(" Behind it by more than the seed spread: ").append(String.join(", ", behind))
          .append('.');
    }
    return sb.toString();
  }

  /** Plain text, columns separated by two spaces. */
  public String toText() {
    return TextTable.text(cells());
  }

  /** A GitHub Markdown table of the summary. */
  public String toMarkdown() {
    return TextTable.markdown(cells());
  }

  /** A Markdown table of every cell: one row per rate, one column per optimizer (mean ± sd). */
  public String gridMarkdown() {
    TreeMap<Double, List<String>> rows = new TreeMap<>();
    for (int i = 0; i < lines.size(); i++) {
      for (Cell c : lines.get(i).cells()) {
        List<String> row = rows.computeIfAbsent(c.lr(), k -> new ArrayList<>());
        while (row.size() < i) {
          row.add("");
        }
        row.add(Double.isFinite(c.mean())
            ? String.format(Locale.ROOT, "%.4f ± %.4f", c.mean(), c.sd()) : "diverged");
      }
    }
    List<List<String>> cells = new ArrayList<>();
    List<String> header = new ArrayList<>(List.of("lr"));
    lines.forEach(l -> header.add(l.optimizer()));
    cells.add(header);
    rows.forEach((lr, row) -> {
      List<String> line = new ArrayList<>(List.of(rate(lr)));
      line.addAll(row);
      while (line.size() < header.size()) {
        line.add("");
      }
      cells.add(line);
    });
    return TextTable.markdown(cells);
  }

  @Override
  public String toString() {
    return toText();
  }

  /** {@code 1e-4}, {@code 3e-4}, {@code 1.5e-3}, {@code 2}: a rate in its shortest scientific form. */
  public static String rate(double lr) {
    BigDecimal bd = BigDecimal.valueOf(lr).stripTrailingZeros();
    String digits = bd.unscaledValue().abs().toString();
    int exponent = digits.length() - 1 - bd.scale();
    String mantissa = digits.length() == 1 ? digits : digits.charAt(0) + "." + digits.substring(1);
    return (lr < 0 ? "-" : "") + mantissa + (exponent == 0 ? "" : "e" + exponent);
  }
}
