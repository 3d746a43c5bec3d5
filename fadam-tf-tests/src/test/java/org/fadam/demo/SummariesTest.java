package org.fadam.demo;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.fadam.FisherTrainStep;
import org.fadam.StepTelemetry;
import org.fadam.Summaries;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@link Summaries}: the event file holds every tag at the steps written (every N-th, once per
 * step number), read back by {@link TelemetryPlot#read}, which also draws them; a folder it cannot
 * write is one line naming it.
 */
class SummariesTest {

  @Test
  void writesEveryTagAtEveryNthStepOnce(@TempDir Path tmp) throws Exception {
    Path run = tmp.resolve("board/fadam");
    try (Summaries board = Summaries.open(run, 2)) {
      for (long k = 1; k <= 5; k++) {
        StepTelemetry t = new StepTelemetry(0.5f * k, 0.25f, 0.125f, k == 4 ? 1f : 0f, k / 3, 1e-3f * k);
        assertEquals(k % 2 == 0, board.write(new FisherTrainStep.Result(10f / k, k, true, true, t)));
        // a second call at the same step number (accumulation) is not written again
        assertFalse(board.write(new FisherTrainStep.Result(99f, k, true, false, t)));
      }
    }
    Map<String, TreeMap<Long, Double>> read = TelemetryPlot.read(run);
    assertEquals(new java.util.TreeSet<>(Summaries.TAGS), read.keySet());
    for (long k : List.of(2L, 4L)) {
      assertEquals((double) (10f / k), read.get("loss").get(k), "loss " + k);
      assertEquals(0.5 * k, read.get("grad_rms").get(k));
      assertEquals(0.25, read.get("clipped_natural").get(k));
      assertEquals(0.125, read.get("clipped_decay").get(k));
      assertEquals(k == 4 ? 1.0 : 0.0, read.get("eps_floor").get(k));
      assertEquals((double) (k / 3), read.get("skipped").get(k));
      assertEquals((double) (1e-3f * k), read.get("learning_rate").get(k));
    }
    assertEquals(List.of(2L, 4L), List.copyOf(read.get("loss").keySet()));
    Path png = tmp.resolve("t.png");
    TelemetryPlot.write(tmp.resolve("board"), png, 400, 700);
    assertTrue(Files.size(png) > 1000);
  }

  @Test
  void aFolderThatCannotBeWrittenIsOneLineNamingIt(@TempDir Path tmp) throws Exception {
    Path file = Files.writeString(tmp.resolve("a-file"), "x");
    var e = assertThrows(IllegalArgumentException.class, () -> Summaries.open(file.resolve("run"), 1));
    assertTrue(e.getMessage().startsWith("TensorBoard directory " + file.resolve("run") + " cannot be created"),
        e.getMessage());
    assertEquals(1, e.getMessage().lines().count());
    var every = assertThrows(IllegalArgumentException.class, () -> Summaries.open(tmp, 0));
    assertEquals("summaries every 0 steps: must be ≥ 1", every.getMessage());
  }
}
