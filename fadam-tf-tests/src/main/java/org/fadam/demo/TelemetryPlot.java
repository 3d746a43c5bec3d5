package org.fadam.demo;

import java.awt.BasicStroke;
import java.io.DataInputStream;
import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.stream.Stream;
import org.fadam.Summaries;
import org.jfree.chart.ChartUtils;
import org.jfree.chart.JFreeChart;
import org.jfree.chart.axis.NumberAxis;
import org.jfree.chart.plot.CombinedDomainXYPlot;
import org.jfree.chart.plot.XYPlot;
import org.jfree.chart.renderer.xy.XYLineAndShapeRenderer;
import org.jfree.data.xy.XYSeries;
import org.jfree.data.xy.XYSeriesCollection;
import org.tensorflow.proto.Event;
import org.tensorflow.proto.Summary;

/**
 * A drawing of the TensorBoard scalars {@link Summaries} writes (docs/telemetry.md), for where
 * TensorBoard itself is not at hand: reads the event files of every run directory under a folder
 * (as {@code scripts/demo --tensorboard DIR} leaves them: one per optimizer) and draws one panel
 * per tag, one line per run, with the demo's chart style.
 *
 * <p>{@code java -cp <fadam-tf-tests classpath> org.fadam.demo.TelemetryPlot DIR OUT.png}
 */
public final class TelemetryPlot {

  private TelemetryPlot() {}

  /**
   * Every scalar of the event files directly in {@code run}: tag → step → value.
   *
   * @throws IOException if a file cannot be read or is not a TFRecord of events
   */
  public static Map<String, TreeMap<Long, Double>> read(Path run) throws IOException {
    Map<String, TreeMap<Long, Double>> out = new TreeMap<>();
    List<Path> files;
    try (Stream<Path> s = Files.list(run)) {
      files = s.filter(p -> p.getFileName().toString().startsWith("events.out.tfevents.")).sorted().toList();
    }
    for (Path f : files) {
      try (DataInputStream in = new DataInputStream(Files.newInputStream(f))) {
        byte[] record;
        while ((record = next(in, f)) != null) {
          Event e = Event.parseFrom(record);
          if (!e.hasSummary()) {
            continue;
          }
          for (Summary.Value v : e.getSummary().getValueList()) {
            double value = v.hasTensor() ? v.getTensor().getFloatVal(0) : v.getSimpleValue();
            out.computeIfAbsent(v.getTag(), t -> new TreeMap<>()).put(e.getStep(), value);
          }
        }
      }
    }
    return out;
  }

  /** The next TFRecord's data (length, its CRC, data, its CRC; CRCs not checked), or null at the end. */
  private static byte[] next(InputStream in, Path file) throws IOException {
    byte[] header = in.readNBytes(12);
    if (header.length == 0) {
      return null;
    }
    if (header.length < 12) {
      throw new IOException(file + " is truncated (a record header of " + header.length + " bytes)");
    }
    long length = ByteBuffer.wrap(header, 0, 8).order(ByteOrder.LITTLE_ENDIAN).getLong();
    if (length < 0 || length > Integer.MAX_VALUE) {
      throw new IOException(file + " is not a TFRecord file (record length " + length + ")");
    }
    byte[] data = in.readNBytes((int) length);
    if (data.length < length || in.readNBytes(4).length < 4) {
      throw new EOFException(file + " is truncated");
    }
    return data;
  }

  /**
   * Draws every run under {@code board} (its subdirectories, by name) into {@code png}: one panel
   * per tag of {@link Summaries#TAGS}.
   */
  public static void write(Path board, Path png, int width, int height) throws IOException {
    List<Path> runs;
    try (Stream<Path> s = Files.list(board)) {
      runs = s.filter(Files::isDirectory).sorted().toList();
    }
    if (runs.isEmpty()) {
      throw new IOException("no run directories under " + board);
    }
    List<Map<String, TreeMap<Long, Double>>> data = new ArrayList<>();
    for (Path r : runs) {
      data.add(read(r));
    }
    CombinedDomainXYPlot plot = new CombinedDomainXYPlot(new NumberAxis("step"));
    plot.setGap(8);
    for (String tag : Summaries.TAGS) {
      XYSeriesCollection series = new XYSeriesCollection();
      for (int i = 0; i < runs.size(); i++) {
        XYSeries line = new XYSeries(runs.get(i).getFileName().toString());
        data.get(i).getOrDefault(tag, new TreeMap<>()).forEach(line::add);
        series.addSeries(line);
      }
      NumberAxis y = new NumberAxis(tag);
      // loss and grad_rms: their own range; fractions and the counter from 0 to at least 1; η from 0
      boolean own = tag.equals(Summaries.LOSS) || tag.equals(org.fadam.StepTelemetry.GRAD_RMS);
      y.setAutoRangeIncludesZero(!own);
      if (!own && !tag.equals(org.fadam.StepTelemetry.LEARNING_RATE)) {
        y.setAutoRangeMinimumSize(1.1);
      }
      XYLineAndShapeRenderer renderer = new XYLineAndShapeRenderer(true, false);
      for (int i = 0; i < runs.size(); i++) {
        renderer.setSeriesPaint(i, LossPlot.PALETTE[i % LossPlot.PALETTE.length]);
        renderer.setSeriesStroke(i, new BasicStroke(1.5f));
        renderer.setSeriesVisibleInLegend(i, tag.equals(Summaries.LOSS)); // one legend for all panels
      }
      plot.add(new XYPlot(series, null, y, renderer));
    }
    JFreeChart chart = LossPlot.styled(new JFreeChart("TensorBoard scalars (drawn from the event files)",
        JFreeChart.DEFAULT_TITLE_FONT, plot, true), board.getFileName() + ": " + runs.size() + " runs");
    ChartUtils.saveChartAsPNG(png.toFile(), chart, width, height);
  }

  /**
   * {@code TelemetryPlot DIR OUT.png}.
   *
   * @param args the board folder and the image
   */
  public static void main(String[] args) {
    if (args.length != 2) {
      System.err.println("usage: TelemetryPlot DIR OUT.png (DIR: a --tensorboard folder)");
      System.exit(2);
    }
    try {
      write(Path.of(args[0]), Path.of(args[1]), LossPlot.DEFAULT_WIDTH, 1200);
    } catch (IOException e) {
      System.err.println("TelemetryPlot: " + e.getMessage());
      System.exit(1);
    }
  }
}
