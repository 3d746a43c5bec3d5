package org.fadam.demo;

import java.awt.BasicStroke;
import java.awt.Color;
import java.awt.Font;
import java.awt.Paint;
import java.awt.geom.Ellipse2D;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import org.jfree.chart.ChartUtils;
import org.jfree.chart.JFreeChart;
import org.jfree.chart.axis.NumberAxis;
import org.jfree.chart.plot.CombinedDomainXYPlot;
import org.jfree.chart.plot.ValueMarker;
import org.jfree.chart.plot.XYPlot;
import org.jfree.chart.renderer.xy.XYLineAndShapeRenderer;
import org.jfree.chart.title.TextTitle;
import org.jfree.chart.ui.Layer;
import org.jfree.chart.ui.RectangleAnchor;
import org.jfree.chart.ui.RectangleEdge;
import org.jfree.chart.ui.RectangleInsets;
import org.jfree.chart.ui.TextAnchor;
import org.jfree.data.xy.XYSeries;
import org.jfree.data.xy.XYSeriesCollection;

/**
 * The demo's chart, drawn by JFreeChart: held-out loss against step, one line per optimizer (in the
 * order they first appear in the rows), and a dashed horizontal line at the entropy floor labelled
 * "{@value #FLOOR_LABEL}".
 *
 * <p>Readable when the losses span a wide range: the y-axis runs from a little below the floor to
 * the highest of the first {@value #HEAD_EVALUATIONS} evaluations of each optimizer (leaving out an
 * optimizer whose first evaluations are already more than twice as far above the floor as the
 * median optimizer's), so a diverging optimizer does not flatten the others: its line leaves the
 * top of the chart. When
 * training ends close to the floor, compared with where it started, a second panel zooms on the
 * second half of training, where the optimizers' differences are.
 *
 * <p>Rendering is headless: loading this class sets {@code java.awt.headless=true} unless the
 * property is already set.
 */
public final class LossPlot {

  static {
    if (System.getProperty("java.awt.headless") == null) {
      System.setProperty("java.awt.headless", "true");
    }
  }

  /** Default image width, pixels. */
  public static final int DEFAULT_WIDTH = 1000;

  /** Default image height, pixels. */
  public static final int DEFAULT_HEIGHT = 600;

  /** Default chart title. */
  public static final String DEFAULT_TITLE = "Held-out loss vs step";

  /** The label of the floor line. */
  public static final String FLOOR_LABEL = "entropy rate (best achievable)";

  /** The main panel's y-axis reaches the highest of this many first evaluations per optimizer. */
  public static final int HEAD_EVALUATIONS = 3;

  /** A zoom panel is added when the last half spans less than this fraction of the main range. */
  static final double ZOOM_THRESHOLD = 0.4;

  /** Line colours (Tableau 10), by series index. */
  static final Color[] PALETTE = {
    new Color(0x1f77b4), new Color(0xff7f0e), new Color(0x2ca02c), new Color(0xd62728),
    new Color(0x9467bd), new Color(0x8c564b), new Color(0xe377c2), new Color(0x7f7f7f),
    new Color(0xbcbd22), new Color(0x17becf),
  };

  private static final int MAX_POINTS_WITH_MARKERS = 60;

  private LossPlot() {}

  /** Writes a {@value #DEFAULT_WIDTH}×{@value #DEFAULT_HEIGHT} PNG with the default title. */
  public static void write(Path png, List<ResultsCsv.Row> rows, double floorNats)
      throws IOException {
    write(png, rows, floorNats, DEFAULT_TITLE, null, DEFAULT_WIDTH, DEFAULT_HEIGHT);
  }

  /**
   * Writes the chart as a PNG of {@code width × height} pixels.
   *
   * @param rows the loss log; rows whose held-out loss is not finite are skipped
   * @param floorNats the entropy floor, nats/token (NaN: none is known, no line is drawn)
   * @param subtitle a line under the title (e.g. the data's description), or null
   */
  public static void write(Path png, List<ResultsCsv.Row> rows, double floorNats, String title,
      String subtitle, int width, int height) throws IOException {
    if (!(width >= 1 && height >= 1)) {
      throw new IllegalArgumentException(
          "`width` and `height` must be >= 1; got " + width + "x" + height);
    }
    ChartUtils.saveChartAsPNG(png.toFile(), chart(rows, floorNats, title, subtitle), width,
        height);
  }

  /** The chart itself, for callers that render it elsewhere. */
  public static JFreeChart chart(List<ResultsCsv.Row> rows, double floorNats, String title,
      String subtitle) {
    if (Double.isInfinite(floorNats)) {
      throw new IllegalArgumentException("`floorNats` must be finite or NaN (no floor); got " + floorNats);
    }
    Map<String, XYSeries> byOptimizer = new LinkedHashMap<>();
    for (ResultsCsv.Row row : rows) {
      XYSeries s = byOptimizer.computeIfAbsent(row.optimizer(), k -> new XYSeries(k, true, false));
      if (Double.isFinite(row.heldoutLoss())) {
        s.addOrUpdate(row.step(), row.heldoutLoss());
      }
    }
    XYSeriesCollection dataset = new XYSeriesCollection();
    List<double[][]> curves = new ArrayList<>();
    for (XYSeries s : byOptimizer.values()) {
      dataset.addSeries(s);
      double[][] xy = s.toArray();
      curves.add(xy);
    }
    Ranges ranges = ranges(curves, floorNats);

    NumberAxis stepAxis = new NumberAxis("step");
    stepAxis.setStandardTickUnits(NumberAxis.createIntegerTickUnits());
    stepAxis.setAutoRangeIncludesZero(true);
    CombinedDomainXYPlot plot = new CombinedDomainXYPlot(stepAxis);
    plot.setGap(12);
    plot.add(panel(dataset, floorNats, "held-out loss (nats/token)", ranges.main, true), 3);
    if (ranges.zoom != null) {
      plot.add(panel(dataset, floorNats, "zoom: second half", ranges.zoom, false), 2);
    }
    return styled(new JFreeChart(title, new Font("SansSerif", Font.BOLD, 18), plot, true), subtitle);
  }

  /** The demo's chart style: white, legend at the bottom, antialiased, an optional subtitle. */
  static JFreeChart styled(JFreeChart chart, String subtitle) {
    if (subtitle != null) {
      chart.addSubtitle(new TextTitle(subtitle, new Font("SansSerif", Font.PLAIN, 13)));
    }
    chart.setBackgroundPaint(Color.WHITE);
    chart.getLegend().setPosition(RectangleEdge.BOTTOM);
    chart.getLegend().setItemFont(new Font("SansSerif", Font.PLAIN, 13));
    chart.setAntiAlias(true);
    chart.setTextAntiAlias(true);
    return chart;
  }

  private static XYPlot panel(XYSeriesCollection dataset, double floorNats, String yLabel,
      double[] yRange, boolean inLegend) {
    NumberAxis lossAxis = new NumberAxis(yLabel);
    lossAxis.setAutoRangeIncludesZero(false);
    lossAxis.setRange(yRange[0], yRange[1]);
    XYLineAndShapeRenderer renderer = new XYLineAndShapeRenderer(true, false);
    for (int i = 0; i < dataset.getSeriesCount(); i++) {
      Paint color = PALETTE[i % PALETTE.length];
      renderer.setSeriesPaint(i, color);
      renderer.setSeriesStroke(i, new BasicStroke(2.2f, BasicStroke.CAP_ROUND,
          BasicStroke.JOIN_ROUND));
      renderer.setSeriesShape(i, new Ellipse2D.Double(-3, -3, 6, 6));
      renderer.setSeriesShapesVisible(i,
          dataset.getSeries(i).getItemCount() <= MAX_POINTS_WITH_MARKERS);
      renderer.setSeriesVisibleInLegend(i, inLegend);
    }
    return withFloor(new XYPlot(dataset, null, lossAxis, renderer), floorNats);
  }

  /** White background, light grid, and the entropy floor (unless NaN) as a dashed, labelled line. */
  static XYPlot withFloor(XYPlot panel, double floorNats) {
    panel.setBackgroundPaint(Color.WHITE);
    panel.setDomainGridlinePaint(new Color(0xdddddd));
    panel.setRangeGridlinePaint(new Color(0xdddddd));
    panel.setOutlinePaint(new Color(0x999999));
    panel.setAxisOffset(RectangleInsets.ZERO_INSETS);
    if (Double.isNaN(floorNats)) { // no floor known (a text file)
      return panel;
    }
    ValueMarker floor = new ValueMarker(floorNats, Color.BLACK, new BasicStroke(1.5f,
        BasicStroke.CAP_BUTT, BasicStroke.JOIN_MITER, 10f, new float[] {8f, 6f}, 0f));
    floor.setLabel(String.format(Locale.ROOT, "%s = %.4f", FLOOR_LABEL, floorNats));
    floor.setLabelFont(new Font("SansSerif", Font.PLAIN, 12));
    floor.setLabelPaint(Color.BLACK);
    floor.setLabelBackgroundColor(new Color(255, 255, 255, 0));
    floor.setLabelAnchor(RectangleAnchor.BOTTOM_LEFT);
    floor.setLabelTextAnchor(TextAnchor.TOP_LEFT);
    floor.setLabelOffset(new RectangleInsets(4, 6, 4, 6));
    panel.addRangeMarker(floor, Layer.FOREGROUND);
    return panel;
  }

  /** The y-ranges of the main panel and of the zoom panel (null when not useful). */
  record Ranges(double[] main, double[] zoom) {}

  /**
   * Chooses the y-ranges from the curves ({@code xy[0]} steps, {@code xy[1]} losses, finite).
   * Main: from below the floor (or the lowest loss) to the highest of each curve's first
   * {@value #HEAD_EVALUATIONS} values, outliers from the median left out. Zoom: the losses of the
   * second half of the step range that lie inside the main range (the floor is shown in the main
   * panel), only when they span under {@value #ZOOM_THRESHOLD} of the main range.
   */
  static Ranges ranges(List<double[][]> curves, double floor) {
    double lowest = Double.isNaN(floor) ? Double.POSITIVE_INFINITY : floor;
    double maxStep = Double.NEGATIVE_INFINITY;
    double minStep = Double.POSITIVE_INFINITY;
    List<Double> heads = new ArrayList<>();
    for (double[][] xy : curves) {
      double curveHead = Double.NEGATIVE_INFINITY;
      for (int i = 0; i < xy[0].length; i++) {
        lowest = Math.min(lowest, xy[1][i]);
        minStep = Math.min(minStep, xy[0][i]);
        maxStep = Math.max(maxStep, xy[0][i]);
        if (i < HEAD_EVALUATIONS) {
          curveHead = Math.max(curveHead, xy[1][i]);
        }
      }
      if (xy[0].length > 0) {
        heads.add(curveHead);
      }
    }
    // The top: the highest head, except heads more than twice as far above the bottom as the
    // (lower) median head, which belong to optimizers diverging from the start.
    heads.sort(null);
    double head = Double.NEGATIVE_INFINITY;
    if (!heads.isEmpty()) {
      double median = heads.get((heads.size() - 1) / 2);
      for (double h : heads) {
        if (h - lowest <= 2 * (median - lowest)) {
          head = Math.max(head, h);
        }
      }
    }
    if (!(head > lowest)) { // no data, or everything at the floor
      double base = Double.isFinite(lowest) ? lowest : Double.isNaN(floor) ? 0 : floor;
      double pad = Math.max(0.05, Math.abs(base) * 0.05);
      return new Ranges(new double[] {base - pad, Math.max(head, base) + pad}, null);
    }
    double span = head - lowest;
    double[] main = {lowest - 0.10 * span, head + 0.04 * span};

    // Zoom on the second half of the steps, ignoring values above the main range (divergence).
    double mid = (minStep + maxStep) / 2;
    double late = Double.NEGATIVE_INFINITY;
    double lateLowest = Double.POSITIVE_INFINITY;
    for (double[][] xy : curves) {
      for (int i = 0; i < xy[0].length; i++) {
        if (xy[0][i] >= mid && xy[1][i] <= head) {
          late = Math.max(late, xy[1][i]);
          lateLowest = Math.min(lateLowest, xy[1][i]);
        }
      }
    }
    double[] zoom = null;
    if (late > lateLowest && late - lateLowest < ZOOM_THRESHOLD * span) {
      double zspan = late - lateLowest;
      zoom = new double[] {lateLowest - 0.12 * zspan, late + 0.06 * zspan};
    }
    return new Ranges(main, zoom);
  }
}
