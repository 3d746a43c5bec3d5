package org.fadam.tools;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
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

  @Test
  void minimumBytesCountTheAlgorithmsPasses() {
    List<Shape> one = List.of(Shape.of(1000, 1000));
    // + 4: the loss reads θ once
    assertEquals(4 + 28, Bench.minimumBytesPerParam(Candidate.ADAM_FRAMEWORK, one));
    assertEquals(4 + 44, Bench.minimumBytesPerParam(Candidate.FADAM, one));
    assertEquals(4 + 32, Bench.minimumBytesPerParam(Candidate.FADAFACTOR, one)); // factored: no f
    assertEquals(4 + 44, Bench.minimumBytesPerParam(Candidate.FADAFACTOR, List.of(Shape.of(1000))));
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
}
