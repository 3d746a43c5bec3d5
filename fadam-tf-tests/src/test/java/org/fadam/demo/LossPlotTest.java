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

  @Test
  void renderingIsHeadless() {
    LossPlot.chart(List.of(), FLOOR, "t", null);
    assertEquals("true", System.getProperty("java.awt.headless"));
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
  void aNonFiniteFloorIsRejected() {
    assertThrows(IllegalArgumentException.class,
        () -> LossPlot.chart(converging(), Double.NaN, "t", null));
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
