package org.fadam.tools;

import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * What scripts/bench's table says about its ratios, and what --quick measures (no time is run
 * here).
 */
class BenchTableTest {

  @Test
  void eachRowShowsTheAdamTimeItsRatioDividesBy() {
    // Two rows with the same ms/step and different ratios, as a run on a busy machine prints them:
    // each was paired with its own rounds of framework Adam.
    List<Bench.Row> rows = List.of(
        new Bench.Row("adam-framework", "fused-kernel", 1_000_000, 1, 1.2, 1.0, 8, 0.5, 1.2),
        new Bench.Row("fadam", "xla", 1_000_000, 1, 7.039, 7.77, 8, 0.2, 7.039),
        new Bench.Row("adam-paper", "xla", 1_000_000, 1, 7.039, 4.94, 8, 0.2, 7.039));
    List<String> lines = Bench.table(rows).lines().toList();
    assertTrue(lines.get(0).startsWith("# x Adam = ms/step / Adam ms: framework Adam"), lines.get(0));
    assertTrue(lines.get(0).contains("timed in the same interleaved rounds as the row"), lines.get(0));
    assertTrue(lines.get(1).contains("ms/step") && lines.get(1).contains("Adam ms")
        && lines.get(1).indexOf("Adam ms") < lines.get(1).indexOf("x Adam"), lines.get(1));
    assertTrue(lines.get(2).matches(".* 1\\.200 +1\\.200 +1\\.200 +1\\.00 .*"), lines.get(2));
    assertTrue(lines.get(3).matches(".* 7\\.039 +7\\.039 +0\\.906 +7\\.77 .*"), lines.get(3));
    assertTrue(lines.get(4).matches(".* 7\\.039 +7\\.039 +1\\.425 +4\\.94 .*"), lines.get(4));
  }

  @Test
  void quickIncludesASizeBeyondTheCaches() {
    Bench bench = new Bench();
    Tool.commandLine(bench).parseArgs("--quick");
    List<Long> params = bench.settings().groups().stream().map(Bench.Group::params).toList();
    assertTrue(params.contains(1_000_000L), params.toString());
    assertTrue(params.stream().anyMatch(p -> p >= 4096L * 4096), params.toString());
  }
}
