package org.fadam.tools;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.fadam.Algorithm;
import org.fadam.FisherOptions;
import org.fadam.tools.BenchCase.Candidate;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.tensorflow.ndarray.Shape;

/**
 * scripts/bench as a tool: its cases, its byte counts and its CSV (no assertion on any time: the
 * speed itself is measured by running the bench, side by side, never in a test).
 */
class BenchTest {

  @Test
  void theModelLikeListHasTheDocumentedSizes() {
    List<Shape> full = Bench.modelLike(384, 8);
    assertEquals(100, full.size());
    assertEquals(16_648_192L, full.stream().mapToLong(Shape::size).sum());
    assertEquals(28, Bench.modelLike(64, 2).size());
  }

  @Test
  void sizesAreExactAndAsSquareAsPossible() {
    assertEquals(Shape.of(1000, 1000), Bench.squareish(1_000_000));
    assertEquals(Shape.of(4096, 4096), Bench.squareish(16_777_216));
    assertEquals(Shape.of(1, 7), Bench.squareish(7));
    assertEquals(100_000, Bench.parseCount("1e5"));
    assertThrows(IllegalArgumentException.class, () -> Bench.parseCount("1.5"));
    assertThrows(IllegalArgumentException.class, () -> Bench.parseCount("ten"));
    assertThrows(IllegalArgumentException.class, () -> Bench.parseCount("0"));
  }

  /**
   * The bytes one optimizer step must move per parameter, counted by hand here from the passes
   * each algorithm needs (the gradient given; R and C are too small to count): each pass reads
   * its inputs once and writes its outputs once, a parameter-sized array (θ, g) costing p bytes
   * an element and a float32 slot (m, f) 4.
   */
  private static int handCount(Algorithm a, boolean factored, boolean weightDecay, int p) {
    int s = 4;
    return switch (a) {
      case FADAM -> p // Σg² for RMS(g) (Alg. 1 l.8): read g
          + (weightDecay ? 2 * p : p) + s // clip sums RMS(ḡ), RMS(ḡw) (l.10, l.13): read g, θ (for ḡw), f
          + (2 * p + 2 * s) + (p + 2 * s); // read g, θ, f, m; write θ, f, m
      case FADAFACTOR -> factored
          ? p // Σg², R and C (Alg. 2 l.7-8): read g
              + (weightDecay ? 2 * p : p) // clip sums: read g, θ (f from R and C)
              + (2 * p + s) + (p + s) // read g, θ, m; write θ, m
          : handCount(Algorithm.FADAM, false, weightDecay, p); // unfactored: FAdam's f
      case ADAM -> (p + 2 * s) + 2 * s // read g, f, m; write f, m (and sum ḡ² for the clip)
          + (p + 2 * s) + p; // read θ, f, m; write θ
      case ADAFACTOR -> factored
          ? p // R and C (Alg. 4 l.7-8): read g
              + p // the clip of g/√f (l.11): read g
              + (2 * p + s) + (p + s) // read g, θ, m; write θ, m
          : (p + s) // the clip: read g, f
              + (2 * p + 2 * s) + (p + 2 * s); // read g, θ, f, m; write θ, f, m
    };
  }

  @Test
  void minimumBytesCountTheAlgorithmsPasses() {
    // The hand count gives the figures the docs quote (float32: 44, 32, 36, 28 B/param).
    assertEquals(44, handCount(Algorithm.FADAM, false, true, 4));
    assertEquals(32, handCount(Algorithm.FADAFACTOR, true, true, 4));
    assertEquals(36, handCount(Algorithm.ADAM, false, true, 4));
    assertEquals(28, handCount(Algorithm.ADAFACTOR, true, true, 4));
    Shape matrix = Shape.of(1000, 1000); // factored by Algorithms 2 and 4 (both dimensions ≥ 128)
    Shape vector = Shape.of(1000); // never factored
    FisherOptions decay = FisherOptions.defaults();
    FisherOptions noDecay = FisherOptions.builder().weightDecay(0).build();
    for (Algorithm a : Algorithm.values()) {
      boolean factors = a == Algorithm.FADAFACTOR || a == Algorithm.ADAFACTOR;
      for (int p : new int[] {4, 2}) { // float32 and bfloat16 parameters (float32 slots)
        String where = a + " p=" + p;
        assertEquals(handCount(a, factors, true, p), a.minimumBytesPerParameter(matrix, decay, p), where + " matrix");
        assertEquals(handCount(a, false, true, p), a.minimumBytesPerParameter(vector, decay, p), where + " vector");
        assertEquals(handCount(a, factors, false, p), a.minimumBytesPerParameter(matrix, noDecay, p),
            where + " matrix, no weight decay");
      }
    }
    // The bench's whole-step figure (float32): + 4 for the loss's read of θ.
    List<Shape> one = List.of(matrix);
    assertEquals(4 + 44, Bench.minimumBytesPerParam(Candidate.FADAM, one));
    assertEquals(4 + 32, Bench.minimumBytesPerParam(Candidate.FADAFACTOR, one));
    assertEquals(4 + 36, Bench.minimumBytesPerParam(Candidate.ADAM_PAPER, one));
    assertEquals(4 + 28, Bench.minimumBytesPerParam(Candidate.ADAFACTOR_PAPER, one));
    assertEquals(4 + 44, Bench.minimumBytesPerParam(Candidate.FADAFACTOR, List.of(vector)));
    assertEquals(4 + 36, Bench.minimumBytesPerParam(Candidate.ADAFACTOR_PAPER, List.of(vector)));
    // The framework baselines: ApplyAdam reads g, θ, m, v and writes θ, m, v; GD reads g, θ, writes θ.
    assertEquals(4 + 7 * 4, Bench.minimumBytesPerParam(Candidate.ADAM_FRAMEWORK, one));
    assertEquals(4 + 3 * 4, Bench.minimumBytesPerParam(Candidate.GD_FRAMEWORK, one));
    // A list is weighted by size: a factored matrix and a vector.
    assertEquals((36.0 * 1_000_000 + 48.0 * 1000) / 1_001_000,
        Bench.minimumBytesPerParam(Candidate.FADAFACTOR, List.of(matrix, vector)), 1e-12);
  }

  @Test
  void aTinyRunPrintsTheTableAndWritesTheCsv(@TempDir Path dir) throws Exception {
    Path csv = dir.resolve("out/bench.csv");
    StringWriter out = new StringWriter();
    StringWriter err = new StringWriter();
    int status = Tool.execute(new Bench(), new PrintWriter(out), new PrintWriter(err),
        "--sizes", "16384", "--model-width", "0", "--optimizers", "fadam", "--paths", "xla,xla-apply",
        "--rounds", "1", "--sample-seconds", "0.01", "--csv", csv.toString());
    assertEquals(0, status, err.toString());
    assertTrue(out.toString().contains("triad bandwidth"), out.toString());
    List<String> lines = Files.readAllLines(csv);
    assertEquals(Bench.Row.CSV_HEADER, lines.get(0));
    assertEquals(5, lines.size(), String.join("\n", lines)); // header, Adam, Adam apply-only, 2 cases
    for (String line : lines.subList(1, lines.size())) {
      String[] f = line.split(",");
      assertEquals(8, f.length, line);
      assertEquals(16384, Long.parseLong(f[2]), line);
      assertEquals(1, Integer.parseInt(f[3]), line);
      double nsPerParam = Double.parseDouble(f[4]);
      double ratio = Double.parseDouble(f[5]);
      assertTrue(nsPerParam > 0 && Double.isFinite(nsPerParam), line);
      assertTrue(ratio > 0 && Double.isFinite(ratio), line);
      // every row keeps state m and f (float32) or m and v: 8 B/param, plus an int64 step counter
      // or beta powers; the framework's Adam keeps two float32 beta powers
      double state = Double.parseDouble(f[6]);
      assertEquals(8.0, state, 0.01, line);
    }
    assertTrue(lines.get(1).startsWith("adam-framework,fused-kernel,"), lines.get(1));
    assertEquals(1.0, Double.parseDouble(lines.get(1).split(",")[5]));
    assertTrue(lines.get(3).startsWith("fadam,xla,"), lines.get(3));
    assertTrue(lines.get(4).startsWith("fadam,xla-apply,"), lines.get(4));
  }

  @Test
  void badOptionsAreUsageErrors() {
    StringWriter err = new StringWriter();
    assertEquals(Tool.USAGE, Tool.execute(new Bench(), new PrintWriter(new StringWriter()),
        new PrintWriter(err), "--paths", "fused-kernel"));
    assertTrue(err.toString().contains("fused-kernel"), err.toString());
    assertEquals(Tool.USAGE, Tool.execute(new Bench(), new PrintWriter(new StringWriter()),
        new PrintWriter(new StringWriter()), "--optimizers", "sgd"));
  }

  /** The committed bench results (bench-results/*.csv) parse and are written back byte for byte. */
  @Test
  void committedResultsParseAndRewriteByteForByte(@TempDir Path dir) throws Exception {
    for (String name : List.of("before.csv", "after.csv", "after-model.csv")) {
      Path committed = Path.of("bench-results", name);
      List<Bench.Row> rows;
      try (var in = Files.newBufferedReader(committed)) {
        rows = Csv.read(in, List.of(Bench.Row.CSV_HEADER.split(",")), f -> new Bench.Row(f.get(0),
            f.get(1), Long.parseLong(f.get(2)), Integer.parseInt(f.get(3)), Double.parseDouble(f.get(4)),
            Double.parseDouble(f.get(5)), Double.parseDouble(f.get(6)), Double.parseDouble(f.get(7)), 0));
      }
      assertTrue(rows.size() > 5, name);
      Path again = dir.resolve(name);
      Bench.writeCsv(again, rows);
      assertEquals(Files.readString(committed), Files.readString(again), name);
    }
  }

  /** The printed table keeps the layout it had as printf: the same text, space for space. */
  @Test
  void thePrintedTableKeepsItsLayout() {
    List<Bench.Row> rows = List.of(
        new Bench.Row("adam-framework", "fused-kernel", 16_777_216, 1, 1.353, 1.0, 8.0, 0.451, 22.7),
        new Bench.Row("adam-framework-apply", "fused-kernel", 16_777_216, 1, 1.198, 1.0, 8.0, 0.402, 20.1),
        new Bench.Row("fadafactor", "xla-apply", 16_777_216, 100, 3.4876, 2.5789, 8.0306, 0.1234, 58.512));
    // Adam ms = ms/step / x Adam: 22.7 / 1, 20.1 / 1, 58.512 / 2.5789 = 22.689 (by hand)
    assertEquals(""
        + "# x Adam = ms/step / Adam ms: framework Adam (xla-apply rows: its apply-only step) timed in"
        + " the same interleaved rounds as the row; Adam's own rows: all its rounds\n"
        + "optimizer            path              params  vars   ms/step  ns/param   Adam ms   x Adam  state B BW frac\n"
        + "adam-framework       fused-kernel    16777216     1    22.700     1.353    22.700     1.00     8.00   0.451\n"
        + "adam-framework-apply fused-kernel    16777216     1    20.100     1.198    20.100     1.00     8.00   0.402\n"
        + "fadafactor           xla-apply       16777216   100    58.512     3.488    22.689     2.58     8.03   0.123\n",
        Bench.table(rows));
  }

  /** The lean-state line: FAdafactor's m at 4 B, 2 B (bfloat16) and none, R and C on top. */
  @org.junit.jupiter.api.Test
  void printsFAdafactorsStateWithAndWithoutM() {
    assertEquals("# FAdafactor state B/param at 4096x4096: m float32 4.002, m bfloat16 2.002,"
        + " no m (beta1 = 0) 0.002", Bench.leanState());
  }
}
