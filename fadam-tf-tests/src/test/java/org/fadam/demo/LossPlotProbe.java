package org.fadam.demo;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * Run by {@link LossPlotTest} in a JVM of its own, started with a display that does not exist:
 * {@code LossPlotProbe PNG WIDTH HEIGHT} draws {@link #rows()} with {@link LossPlot} into PNG.
 */
public final class LossPlotProbe {

  /** The entropy floor of the probe's chart, nats/token. */
  static final double FLOOR = 1.5;

  private LossPlotProbe() {}

  /** A's held-out loss at step s (0 to 1000): a straight line from 4 down to 2. */
  static double a(double step) {
    return 4.0 - 2.0 * step / 1000;
  }

  /** B's: a straight line from 3.5 down to 3, so A starts above B and ends below it. */
  static double b(double step) {
    return 3.5 - 0.5 * step / 1000;
  }

  /** A and B every 10 steps (over 60 points each, so no markers are drawn). */
  static List<ResultsCsv.Row> rows() {
    List<ResultsCsv.Row> rows = new ArrayList<>();
    for (int step = 0; step <= 1000; step += 10) {
      rows.add(new ResultsCsv.Row("A", step, Double.NaN, a(step)));
    }
    for (int step = 0; step <= 1000; step += 10) {
      rows.add(new ResultsCsv.Row("B", step, Double.NaN, b(step)));
    }
    return rows;
  }

  public static void main(String[] args) throws Exception {
    LossPlot.write(Path.of(args[0]), rows(), FLOOR, "probe", null, Integer.parseInt(args[1]),
        Integer.parseInt(args[2]));
  }
}
