package org.fadam.demo;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.awt.image.BufferedImage;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import javax.imageio.ImageIO;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class LossPlotTest {

  private static final double FLOOR = 1.5729;
  private static final double START = Math.log(64);

  /** Curves that fall from ln 64 towards the floor, like a training run. */
  private static List<ResultsCsv.Row> converging() {
    List<ResultsCsv.Row> rows = new ArrayList<>();
    String[] names = {"FAdam", "FAdafactor", "Adam"};
    double[] residual = {0.04, 0.06, 0.05};
    for (int o = 0; o < names.length; o++) {
      for (int step = 0; step <= 2000; step += 100) {
        double h = FLOOR + residual[o] + (START - FLOOR - residual[o]) * Math.exp(-step / 300.0);
        rows.add(new ResultsCsv.Row(names[o], step, h + 0.01, h));
        rows.add(new ResultsCsv.Row(names[o], step + 50, h, Double.NaN)); // train-only step
      }
    }
    return rows;
  }

  private static double[][] curve(double... xyPairs) {
    double[][] xy = new double[2][xyPairs.length / 2];
    for (int i = 0; i < xyPairs.length / 2; i++) {
      xy[0][i] = xyPairs[2 * i];
      xy[1][i] = xyPairs[2 * i + 1];
    }
    return xy;
  }

  @Test
  void writesAPngOfTheRequestedSize(@TempDir Path dir) throws IOException {
    Path png = dir.resolve("loss.png");
    LossPlot.write(png, converging(), FLOOR);
    try (InputStream in = Files.newInputStream(png)) {
      byte[] magic = in.readNBytes(8);
      assertArrayEquals(new byte[] {(byte) 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'}, magic);
    }
    BufferedImage image = ImageIO.read(png.toFile());
    assertNotNull(image);
    assertEquals(LossPlot.DEFAULT_WIDTH, image.getWidth());
    assertEquals(LossPlot.DEFAULT_HEIGHT, image.getHeight());
    assertTrue(countPixels(image, 0x1f77b4) > 500, "the first optimizer's line is drawn");
    assertTrue(countPixels(image, 0xff7f0e) > 500, "the second optimizer's line is drawn");
    assertTrue(countPixels(image, 0x2ca02c) > 500, "the third optimizer's line is drawn");

    Path small = dir.resolve("small.png");
    LossPlot.write(small, converging(), FLOOR, "title", "subtitle", 640, 400);
    BufferedImage smallImage = ImageIO.read(small.toFile());
    assertEquals(640, smallImage.getWidth());
    assertEquals(400, smallImage.getHeight());
  }

  @Test
  void anEmptyLogStillGivesAValidImage(@TempDir Path dir) throws IOException {
    Path png = dir.resolve("empty.png");
    LossPlot.write(png, List.of(), FLOOR);
    BufferedImage image = ImageIO.read(png.toFile());
    assertEquals(LossPlot.DEFAULT_WIDTH, image.getWidth());
  }

  /**
   * Rendering needs no display: a JVM started with {@code DISPLAY} naming a display that does not
   * exist (where AWT, unless headless, fails with "Can't connect to X11 window server") draws
   * {@link LossPlotProbe}'s two straight lines. The PNG read back has the size asked for, and the
   * pixels of each line's colour lie where its losses put them: A (4 down to 2) falls, straight,
   * three times faster than B (3.5 down to 3), starts above B and ends below it, and the dashed
   * floor at 1.5 runs below both, where A's own scale puts 1.5.
   */
  @Test
  void renderingIsHeadless(@TempDir Path dir) throws Exception {
    Path png = dir.resolve("probe.png");
    ProcessBuilder pb = new ProcessBuilder(ProcessHandle.current().info().command().orElse("java"),
        "-cp", System.getProperty("java.class.path"), LossPlotProbe.class.getName(), png.toString(),
        "800", "500").redirectErrorStream(true);
    pb.environment().put("DISPLAY", ":99");
    Process p = pb.start();
    String output = new String(p.getInputStream().readAllBytes(), java.nio.charset.StandardCharsets.UTF_8);
    assertEquals(0, p.waitFor(), output);
    BufferedImage image = ImageIO.read(png.toFile());
    assertEquals(800, image.getWidth());
    assertEquals(500, image.getHeight());

    int blue = 0x1f77b4; // the palette's first colour: series A
    int orange = 0xff7f0e; // the second: series B
    int[] span = columns(image, blue);
    assertTrue(span[1] - span[0] > 400, "A's line spans most of the width: " + span[0] + ".." + span[1]);
    // Columns at fractions of A's steps 0..1000; the legend (centred under the plot) is left out.
    double[] f = {0.1, 0.3, 0.7, 0.9};
    double[] ya = new double[f.length];
    double[] yb = new double[f.length];
    for (int i = 0; i < f.length; i++) {
      int x = (int) Math.round(span[0] + f[i] * (span[1] - span[0]));
      ya[i] = medianRow(image, blue, x);
      yb[i] = medianRow(image, orange, x);
    }
    for (int i = 1; i < f.length; i++) {
      assertTrue(ya[i] > ya[i - 1] && yb[i] > yb[i - 1], "both fall: A " + java.util.Arrays.toString(ya)
          + ", B " + java.util.Arrays.toString(yb));
    }
    assertEquals(ya[1] - ya[0], ya[3] - ya[2], 2.0, "A is a straight line");
    assertEquals(0.25, (yb[3] - yb[0]) / (ya[3] - ya[0]), 0.03, "B falls a quarter as fast as A");
    assertTrue(ya[0] < yb[0] && ya[3] > yb[3], "A starts above B and ends below it");
    // A's pixels give the chart's scale: loss l at y = y0 + k·(l − A(step)).
    double k = (ya[3] - ya[0]) / (LossPlotProbe.a(900) - LossPlotProbe.a(100));
    assertEquals(k * (LossPlotProbe.b(100) - LossPlotProbe.a(100)), yb[0] - ya[0], 3.0,
        "B's distance from A at step 100, in A's scale");
    double floorRow = ya[0] + k * (LossPlotProbe.FLOOR - LossPlotProbe.a(100));
    int dark = 0;
    for (int x = span[0]; x <= span[1]; x++) {
      for (int y = (int) floorRow - 2; y <= (int) floorRow + 2; y++) {
        if (isDark(image.getRGB(x, y))) {
          dark++;
          break;
        }
      }
    }
    assertTrue(dark > 0.4 * (span[1] - span[0]), "the dashed floor at row " + floorRow + ": " + dark
        + " dark columns of " + (span[1] - span[0]));
  }

  /** The leftmost and rightmost columns holding the colour. */
  private static int[] columns(BufferedImage image, int rgb) {
    int lo = Integer.MAX_VALUE;
    int hi = -1;
    for (int y = 0; y < image.getHeight(); y++) {
      for (int x = 0; x < image.getWidth(); x++) {
        if ((image.getRGB(x, y) & 0xffffff) == rgb) {
          lo = Math.min(lo, x);
          hi = Math.max(hi, x);
        }
      }
    }
    assertTrue(hi >= 0, String.format("no pixel of colour %06x", rgb));
    return new int[] {lo, hi};
  }

  /** The median row of the colour's pixels in three columns around x. */
  private static double medianRow(BufferedImage image, int rgb, int x) {
    List<Integer> rows = new ArrayList<>();
    for (int c = x - 1; c <= x + 1; c++) {
      for (int y = 0; y < image.getHeight(); y++) {
        if ((image.getRGB(c, y) & 0xffffff) == rgb) {
          rows.add(y);
        }
      }
    }
    assertTrue(!rows.isEmpty(), String.format("no pixel of colour %06x near column %d", rgb, x));
    rows.sort(null);
    return rows.get(rows.size() / 2);
  }

  private static boolean isDark(int argb) {
    return ((argb >> 16) & 0xff) < 0x60 && ((argb >> 8) & 0xff) < 0x60 && (argb & 0xff) < 0x60;
  }

  @Test
  void mainRangeRunsFromBelowTheFloorToTheFirstEvaluations() {
    LossPlot.Ranges r = LossPlot.ranges(List.of(
        curve(0, 4.0, 100, 3.0, 200, 2.5, 300, 2.0, 400, 1.7),
        curve(0, 4.2, 100, 3.5, 200, 2.0, 300, 1000.0, 400, 1e9)), 1.5);
    assertTrue(r.main()[0] < 1.5, "below the floor");
    assertTrue(r.main()[1] >= 4.2 && r.main()[1] < 4.5, "top at the first evaluations, not 1e9");
  }

  @Test
  void zoomPanelAppearsWhenTrainingEndsNearTheFloor() {
    LossPlot.Ranges r = LossPlot.ranges(List.of(
        curve(0, 4.0, 100, 2.0, 200, 1.70, 300, 1.62, 400, 1.60),
        curve(0, 4.0, 100, 2.2, 200, 1.75, 300, 1.66, 400, 1.65),
        curve(0, 4.0, 100, 2.2, 200, 1e3, 300, Double.MAX_VALUE, 400, 1e30)), 1.57);
    assertNotNull(r.zoom());
    assertTrue(r.zoom()[0] < 1.60 && r.zoom()[0] > 1.55 && r.zoom()[1] >= 1.75 && r.zoom()[1] < 1.9,
        "zoom on the late losses 1.60..1.75: " + r.zoom()[0] + ".." + r.zoom()[1]);
  }

  @Test
  void zoomPanelOnTheLateLossesWhenTrainingIsFarFromConverged() {
    LossPlot.Ranges r = LossPlot.ranges(List.<double[][]>of(
        curve(0, 4.0, 100, 3.8, 200, 3.6, 300, 3.4, 400, 3.2)), 1.57);
    assertNotNull(r.zoom(), "the late losses fill a sixth of the main panel: zoom");
    assertTrue(r.zoom()[0] < 3.2 && r.zoom()[0] > 3.0 && r.zoom()[1] >= 3.6 && r.zoom()[1] < 3.7,
        "zoom " + r.zoom()[0] + ".." + r.zoom()[1]);
  }

  @Test
  void noZoomPanelWhenTheSecondHalfSpansMostOfTheRange() {
    LossPlot.Ranges r = LossPlot.ranges(List.<double[][]>of(
        curve(0, 4.0, 100, 3.9, 200, 3.7, 300, 3.4, 400, 3.0)), 3.0);
    assertNull(r.zoom());
  }

  @Test
  void anInfiniteFloorIsRejectedAndNoFloorDrawsNoLine() {
    assertThrows(IllegalArgumentException.class,
        () -> LossPlot.chart(converging(), Double.POSITIVE_INFINITY, "t", null));
    // NaN: no floor is known (a --text run): no marker, and the axis fits the losses alone
    var plot = (org.jfree.chart.plot.CombinedDomainXYPlot) LossPlot.chart(converging(), Double.NaN, "t", null).getPlot();
    var panel = plot.getSubplots().get(0);
    assertTrue(panel.getRangeAxis().getLowerBound() > 0.5, "the axis fits the losses");
    assertEquals(null, panel.getRangeMarkers(org.jfree.chart.ui.Layer.FOREGROUND));
    var withFloor = (org.jfree.chart.plot.CombinedDomainXYPlot) LossPlot.chart(converging(), 1.0, "t", null).getPlot();
    java.util.Collection<?> markers = withFloor.getSubplots().get(0)
        .getRangeMarkers(org.jfree.chart.ui.Layer.FOREGROUND);
    assertEquals(1, markers.size());
  }

  private static int countPixels(BufferedImage image, int rgb) {
    int n = 0;
    for (int y = 0; y < image.getHeight(); y++) {
      for (int x = 0; x < image.getWidth(); x++) {
        if ((image.getRGB(x, y) & 0xffffff) == rgb) {
          n++;
        }
      }
    }
    return n;
  }
}
