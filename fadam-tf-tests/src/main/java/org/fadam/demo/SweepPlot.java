package org.fadam.demo;

import java.awt.BasicStroke;
import java.awt.Color;
import java.awt.Font;
import java.awt.geom.Ellipse2D;
import java.io.IOException;
import java.text.DecimalFormat;
import java.text.DecimalFormatSymbols;
import java.nio.file.Path;
import java.util.Locale;
import org.jfree.chart.ChartUtils;
import org.jfree.chart.JFreeChart;
import org.jfree.chart.axis.LogAxis;
import org.jfree.chart.axis.NumberAxis;
import org.jfree.chart.axis.NumberTickUnit;
import org.jfree.chart.plot.XYPlot;
import org.jfree.chart.renderer.xy.DeviationRenderer;
import org.jfree.data.xy.YIntervalSeries;
import org.jfree.data.xy.YIntervalSeriesCollection;

/**
 * The sweep's chart: final held-out loss against the learning rate on a log axis, one line per
 * optimizer through the mean over seeds, a shaded band from the seeds' min to max, and the entropy
 * floor as a dashed line. Rates where a seed diverged (non-finite loss) are left out of the line.
 */
public final class SweepPlot {

  /** Default size. */
  public static final int WIDTH = 1000;
  public static final int HEIGHT = 620;

  /** The y-axis stops this many nats above the lowest best mean (diverging rates run off it). */
  static final double Y_SPAN_CAP = 2.5;

  private SweepPlot() {}

  /** Writes the chart as a {@value #WIDTH}×{@value #HEIGHT} PNG. */
  public static void write(Path png, SweepTable table, double floorNats, String subtitle)
      throws IOException {
    ChartUtils.saveChartAsPNG(png.toFile(), chart(table, floorNats, subtitle), WIDTH, HEIGHT);
  }

  /** The chart. */
  public static JFreeChart chart(SweepTable table, double floorNats, String subtitle) {
    YIntervalSeriesCollection data = new YIntervalSeriesCollection();
    double lo = Double.isNaN(floorNats) ? Double.POSITIVE_INFINITY : floorNats; // NaN: a text, no floor
    double hi = Double.NEGATIVE_INFINITY;
    for (SweepTable.Line l : table.lines()) {
      YIntervalSeries s = new YIntervalSeries(l.optimizer());
      for (SweepTable.Cell c : l.cells()) {
        if (Double.isFinite(c.mean())) {
          s.add(c.lr(), c.mean(), c.min(), c.max());
          lo = Math.min(lo, c.min());
          hi = Math.max(hi, c.max());
        }
      }
      data.addSeries(s);
    }
    hi = Math.min(hi, table.best().best().mean() + Y_SPAN_CAP);
    double pad = 0.04 * Math.max(hi - lo, 0.1);

    LogAxis lrAxis = new LogAxis("learning rate (log scale)");
    lrAxis.setBase(10);
    lrAxis.setTickUnit(new NumberTickUnit(1)); // one tick per decade (the unit is log10)
    lrAxis.setMinorTickCount(9);
    lrAxis.setMinorTickMarksVisible(true);
    DecimalFormatSymbols symbols = DecimalFormatSymbols.getInstance(Locale.ROOT);
    symbols.setExponentSeparator("e");
    lrAxis.setNumberFormatOverride(new DecimalFormat("0E0", symbols)); // 1e-4, 1e-3, ...
    double lrMin = Double.POSITIVE_INFINITY;
    double lrMax = 0;
    for (SweepTable.Line l : table.lines()) {
      for (SweepTable.Cell c : l.cells()) {
        lrMin = Math.min(lrMin, c.lr());
        lrMax = Math.max(lrMax, c.lr());
      }
    }
    lrAxis.setRange(lrMin / 1.5, lrMax * 1.5);
    NumberAxis lossAxis = new NumberAxis("final held-out loss (nats/token)");
    lossAxis.setAutoRangeIncludesZero(false);
    lossAxis.setRange(lo - pad, hi + pad);

    DeviationRenderer renderer = new DeviationRenderer(true, true);
    renderer.setAlpha(0.18f);
    for (int i = 0; i < data.getSeriesCount(); i++) {
      Color color = LossPlot.PALETTE[i % LossPlot.PALETTE.length];
      renderer.setSeriesPaint(i, color);
      renderer.setSeriesFillPaint(i, color);
      renderer.setSeriesStroke(i, new BasicStroke(2.2f, BasicStroke.CAP_ROUND,
          BasicStroke.JOIN_ROUND));
      renderer.setSeriesShape(i, new Ellipse2D.Double(-3.5, -3.5, 7, 7));
    }
    XYPlot plot = LossPlot.withFloor(new XYPlot(data, lrAxis, lossAxis, renderer), floorNats);
    return LossPlot.styled(new JFreeChart("Final held-out loss vs learning rate",
        new Font("SansSerif", Font.BOLD, 18), plot, true), subtitle);
  }
}
