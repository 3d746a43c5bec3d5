package org.fadam.demo;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.jfree.chart.JFreeChart;
import org.jfree.chart.axis.LogAxis;
import org.jfree.chart.plot.XYPlot;
import org.jfree.data.xy.YIntervalSeriesCollection;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The sweep's table, CSV and chart on hand-made numbers. */
class SweepTableTest {

  static SweepTable.Cell cell(double lr, double... losses) {
    List<Double> l = new ArrayList<>();
    for (double x : losses) {
      l.add(x);
    }
    return new SweepTable.Cell(lr, l);
  }

  /**
   * A: best at 1e-3 (2.30 ± 0.01), 3e-4 and 3e-3 within 0.05 of it, 1e-2 not. B: best at 3e-3
   * (2.31 ± 0.02): 0.01 behind A, within the spread (0.01 + 0.02). C: best at 3e-3, 0.18 behind,
   * outside it; one seed diverged at 1e-2.
   */
  static SweepTable table() {
    return new SweepTable(1.5, List.of(
        new SweepTable.Line("A", List.of(cell(3e-4, 2.33, 2.34, 2.35), cell(1e-3, 2.29, 2.30, 2.31),
            cell(3e-3, 2.34, 2.35, 2.33), cell(1e-2, 2.50, 2.60, 2.55))),
        new SweepTable.Line("B", List.of(cell(3e-4, 2.6, 2.6, 2.6), cell(1e-3, 2.40, 2.41, 2.42),
            cell(3e-3, 2.29, 2.31, 2.33), cell(1e-2, 2.30, 2.34, 2.38))),
        new SweepTable.Line("C", List.of(cell(3e-4, 2.6, 2.61, 2.62), cell(1e-3, 2.5, 2.5, 2.5),
            cell(3e-3, 2.49, 2.48, 2.47), cell(1e-2, 2.4, Double.NaN, 2.4)))));
  }

  @Test
  void statisticsBestAndNearBest() {
    SweepTable t = table();
    SweepTable.Cell c = t.lines().get(0).cells().get(1);
    assertEquals(2.30, c.mean(), 1e-12);
    assertEquals(0.01, c.sd(), 1e-12); // sample sd of 2.29, 2.30, 2.31
    assertEquals(2.29, c.min());
    assertEquals(2.31, c.max());
    assertEquals(1e-3, t.lines().get(0).best().lr());
    assertEquals(List.of(3e-4, 1e-3, 3e-3), t.lines().get(0).nearBest().stream().map(SweepTable.Cell::lr).toList());
    assertEquals(3e-3, t.lines().get(1).best().lr());
    assertEquals(List.of(3e-3, 1e-2), t.lines().get(1).nearBest().stream().map(SweepTable.Cell::lr).toList());
    assertTrue(Double.isNaN(t.lines().get(2).cells().get(3).mean()), "a diverged seed: no mean");
    assertEquals(3e-3, t.lines().get(2).best().lr(), "a diverged rate is never the best");
    assertEquals("A", t.best().optimizer());
    assertEquals(0, cell(1e-3, 2.0).sd(), "one seed: no spread");
  }

  @Test
  void differencesSmallerThanTheSpreadAreNotWins() {
    SweepTable t = table();
    String text = t.toText();
    assertTrue(text.contains("+0.0100 (within seed spread)"), text);
    assertTrue(text.contains("+0.1800") && !text.contains("+0.1800 (within"), text);
    assertTrue(text.contains("3e-4 to 3e-3 (3 of 4)"), text);
    assertTrue(text.contains("2.3000 ± 0.0100"), text);
    assertTrue(text.contains("[2.2900, 2.3100]"), text);
    assertEquals("Lowest mean at its best rate: A, lr 1e-3, 2.3000 ± 0.0100. Within the seed"
        + " spread of it, so not distinguishable here: B (+0.0100). Behind it by more than the seed"
        + " spread: C (+0.1800).", t.verdict());
    SweepTable one = new SweepTable(1.5, List.of(
        new SweepTable.Line("A", List.of(cell(1e-3, 2.3))),
        new SweepTable.Line("B", List.of(cell(1e-3, 2.4)))));
    assertFalse(one.spreadMeasured());
    assertTrue(one.verdict().contains("the seed spread is unknown"), one.verdict());
    assertTrue(one.toText().contains("+0.1000 (one seed: spread unknown)"), one.toText());
    String md = t.toMarkdown();
    assertTrue(md.startsWith("| optimizer | best lr |"), md);
    assertTrue(md.lines().skip(1).findFirst().orElseThrow().matches("\\|:-+\\|(-+:\\|)+"), md);
    assertTrue(t.gridMarkdown().contains("| 1e-2 | 2.5500 ± 0.0500 | 2.3400 ± 0.0400 |"),
        t.gridMarkdown());
    assertTrue(t.gridMarkdown().contains(" diverged |"), t.gridMarkdown());
  }

  @Test
  void rates() {
    assertEquals("1e-4", SweepTable.rate(1e-4));
    assertEquals("3e-4", SweepTable.rate(0.0003));
    assertEquals("1.5e-3", SweepTable.rate(0.0015));
    assertEquals("3e-2", SweepTable.rate(0.03));
    assertEquals("2", SweepTable.rate(2));
    assertEquals("1.25e1", SweepTable.rate(12.5));
  }

  @Test
  void csvRoundTripsExactly(@TempDir Path tmp) throws IOException {
    List<SweepCsv.Row> rows = List.of(new SweepCsv.Row("FAdam", 3e-4, 1, 0, 4.1588830947875977, 4.16),
        new SweepCsv.Row("Adafactor", 0.1 + 0.2, 3, 1000, Double.NaN, 2.3017));
    Path p = tmp.resolve("s.csv");
    SweepCsv.write(p, rows);
    assertEquals(rows, SweepCsv.read(p));
    assertEquals(SweepCsv.HEADER, Files.readAllLines(p).get(0));
    assertEquals("Adafactor,0.30000000000000004,3,1000,NaN,2.3017", Files.readAllLines(p).get(2));
    Files.writeString(p, SweepCsv.HEADER + "\nFAdam,0.001,1,5,2.0\n");
    var e = assertThrows(IOException.class, () -> SweepCsv.read(p));
    assertTrue(e.getMessage().contains("line 2: expected 6 fields"), e.getMessage());
    assertThrows(IllegalArgumentException.class, () -> new SweepCsv.Row("A", 0, 1, 1, 1, 1));
  }

  @Test
  void chartHasALogRateAxisOneBandedLinePerOptimizerAndTheFloor(@TempDir Path tmp)
      throws IOException {
    SweepTable t = table();
    JFreeChart chart = SweepPlot.chart(t, 1.5, "sub");
    XYPlot plot = chart.getXYPlot();
    assertTrue(plot.getDomainAxis() instanceof LogAxis);
    YIntervalSeriesCollection data = (YIntervalSeriesCollection) plot.getDataset();
    assertEquals(3, data.getSeriesCount());
    assertEquals(4, data.getItemCount(0));
    assertEquals(3, data.getItemCount(2), "C's diverged rate is left out");
    assertEquals(2.30, data.getYValue(0, 1), 1e-12); // the mean
    assertEquals(2.29, data.getStartYValue(0, 1), 1e-12); // the band: min to max
    assertEquals(2.31, data.getEndYValue(0, 1), 1e-12);
    assertEquals(1.5, plot.getRangeMarkers(org.jfree.chart.ui.Layer.FOREGROUND).stream()
        .map(m -> ((org.jfree.chart.plot.ValueMarker) m).getValue()).findFirst().orElseThrow());
    assertTrue(plot.getRangeAxis().getLowerBound() < 1.5, "the floor is in view");
    Path png = tmp.resolve("s.png");
    SweepPlot.write(png, t, 1.5, null);
    assertTrue(Files.size(png) > 10_000);
  }
}
