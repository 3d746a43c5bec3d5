package org.fadam;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.fadam.tools.ResumeProbe;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.tensorflow.Graph;
import org.tensorflow.SavedModelBundle;
import org.tensorflow.Session;
import org.tensorflow.Tensor;
import org.tensorflow.types.TFloat32;

/**
 * Checkpoints and exports survive {@code kill -9} of the JVM in the middle of writing them: the
 * previous one is whole, and training resumes from it exactly (bit for bit). The child JVM
 * ({@link CrashProbe}) pauses at a chosen stage of the write, so the kill lands there every time.
 */
class CrashSafetyTest {

  private static final int STEPS = 10;

  /** Killed while ckpt-6 is written beside: ckpt-4 is the latest, and resumes to the same state. */
  @Test
  @Timeout(value = 3, unit = TimeUnit.MINUTES)
  void aCheckpointKilledMidWriteLeavesThePreviousOneWhole(@TempDir Path tmp) throws Exception {
    Path dir = tmp.resolve("ckpt");
    List<String> said = runAndKill("checkpoint", dir, "written");
    assertEquals(List.of("saved 2", "saved 4", "PAUSED written"), said);
    List<String> entries = names(dir);
    assertTrue(entries.containsAll(List.of("ckpt-2", "ckpt-4")), entries.toString());
    assertFalse(entries.contains("ckpt-6"), entries.toString());
    assertTrue(entries.stream().anyMatch(n -> n.startsWith(".ckpt-6.tmp-")), "the unfinished write is there: " + entries);

    Uninterrupted full = uninterrupted();
    try (Graph g = new Graph()) {
      FisherTrainStep step = ResumeProbe.build(g, Algorithm.FADAM, true);
      try (Session s = new Session(g)) {
        s.initialize();
        CheckpointManager checkpoints = step.checkpoints(dir, 2);
        assertEquals(dir.resolve("ckpt-4"), checkpoints.latest().orElseThrow());
        assertEquals(4L, checkpoints.restoreLatest(s).orElseThrow());
        List<Float> losses = train(step, s, 4, STEPS);
        assertBits(full.losses.subList(4, STEPS), losses);
        assertStateEquals(full.state, VariableBytes.of(step, s));
        checkpoints.save(s);
      }
    }
    assertEquals(List.of("ckpt-10", "ckpt-4"), names(dir), "the leftover is cleaned, the newest 2 kept");
  }

  /** Killed while the new export is written beside the old one: the old export is whole. */
  @Test
  @Timeout(value = 3, unit = TimeUnit.MINUTES)
  void anExportKilledMidWriteLeavesThePreviousOneWhole(@TempDir Path tmp) throws Exception {
    Path dir = tmp.resolve("model");
    assertEquals(List.of("exported 3", "PAUSED written"), runAndKill("export", dir, "written"));
    assertResumesFromStep3(dir);
  }

  /**
   * Killed between the two renames (old export aside, new one not yet in place): the load names
   * where the old export is, and {@link AtomicDirectory#recover} puts it back whole.
   */
  @Test
  @Timeout(value = 3, unit = TimeUnit.MINUTES)
  void anExportKilledBetweenTheRenamesIsRecovered(@TempDir Path tmp) throws Exception {
    Path dir = tmp.resolve("model");
    assertEquals(List.of("exported 3", "PAUSED moved-aside"), runAndKill("export", dir, "moved-aside"));
    assertFalse(Files.exists(dir));
    var e = assertThrows(IllegalArgumentException.class, () -> FisherTrainStep.loadSavedModel(dir));
    assertTrue(e.getMessage().contains("left the previous export at " + tmp.resolve(".model.old-")), e.getMessage());
    assertTrue(AtomicDirectory.recover(dir));
    assertEquals(List.of("model"), names(tmp), "recovered, and the unfinished new export removed");
    assertResumesFromStep3(dir);
  }

  @Test
  void keepsTheNewestCheckpointsAndRejectsBadArguments(@TempDir Path tmp) throws Exception {
    try (Graph g = new Graph()) {
      FisherTrainStep step = ResumeProbe.build(g, Algorithm.ADAM, false);
      try (Session s = new Session(g)) {
        s.initialize();
        var e = assertThrows(IllegalArgumentException.class, () -> step.checkpoints(tmp, 0));
        assertEquals("`keep` must be >= 1; got 0", e.getMessage());
        CheckpointManager checkpoints = step.checkpoints(tmp.resolve("c"), 3);
        assertTrue(checkpoints.restoreLatest(s).isEmpty(), "nothing to restore: nothing changes");
        for (int k = 0; k < 5; k++) {
          train(step, s, k, k + 1);
          checkpoints.save(s);
        }
        assertEquals(List.of("ckpt-3", "ckpt-4", "ckpt-5"), names(tmp.resolve("c")));
        assertEquals(5, CheckpointManager.number(checkpoints.latest().orElseThrow()));
        Files.createFile(tmp.resolve("f"));
        assertThrows(IllegalArgumentException.class, () -> step.checkpoints(tmp.resolve("f"), 1));
        assertThrows(IllegalArgumentException.class, () -> step.export(s, tmp.resolve("c")));
      }
    }
  }

  private static void assertResumesFromStep3(Path dir) throws Exception {
    Uninterrupted full = uninterrupted();
    try (SavedModelBundle m = FisherTrainStep.loadSavedModel(dir)) {
      var train = m.function(FisherTrainStep.TRAIN);
      List<Float> losses = new ArrayList<>();
      for (int k = 3; k < STEPS; k++) {
        Map<String, TFloat32> feeds = ResumeProbe.batch(k);
        try (var out = train.call(Map.of("x", feeds.get("x"), "y", feeds.get("y")))) {
          losses.add(((TFloat32) out.get(FisherTrainStep.LOSS).orElseThrow()).getFloat());
        }
        feeds.values().forEach(Tensor::close);
      }
      assertBits(full.losses.subList(3, STEPS), losses);
    }
  }

  private record Uninterrupted(List<Float> losses, Map<String, byte[]> state) {}

  private static Uninterrupted uninterrupted() {
    try (Graph g = new Graph()) {
      FisherTrainStep step = ResumeProbe.build(g, Algorithm.FADAM, true);
      try (Session s = new Session(g)) {
        s.initialize();
        return new Uninterrupted(train(step, s, 0, STEPS), VariableBytes.of(step, s));
      }
    }
  }

  private static List<Float> train(FisherTrainStep step, Session s, int from, int to) {
    List<Float> losses = new ArrayList<>();
    for (int k = from; k < to; k++) {
      Map<String, TFloat32> feeds = ResumeProbe.batch(k);
      losses.add(step.train(s, feeds).loss());
      feeds.values().forEach(Tensor::close);
    }
    return losses;
  }

  /** Runs {@link CrashProbe} until it pauses, then {@code kill -9}; returns what it printed. */
  private static List<String> runAndKill(String mode, Path dir, String stage) throws Exception {
    List<String> cmd = List.of(ProcessHandle.current().info().command().orElse("java"), "-cp",
        TrainStepTest.classpath(), CrashProbe.class.getName(), mode, dir.toString(), stage);
    Process p = new ProcessBuilder(cmd).redirectError(ProcessBuilder.Redirect.DISCARD).start();
    List<String> lines = new ArrayList<>();
    try (BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8))) {
      for (String line; (line = r.readLine()) != null; ) {
        lines.add(line);
        if (line.startsWith("PAUSED")) {
          Process kill = new ProcessBuilder("kill", "-9", Long.toString(p.pid())).inheritIO().start();
          assertEquals(0, kill.waitFor(), "kill -9");
          break;
        }
      }
    } finally {
      p.destroyForcibly();
    }
    assertTrue(p.waitFor(60, TimeUnit.SECONDS), "the child ends");
    assertEquals(137, p.exitValue(), "killed by SIGKILL; printed " + lines);
    return lines;
  }

  private static List<String> names(Path dir) throws IOException {
    try (Stream<Path> s = Files.list(dir)) {
      return s.map(p -> p.getFileName().toString()).sorted().toList();
    }
  }

  private static void assertBits(List<Float> expected, List<Float> actual) {
    assertEquals(expected.size(), actual.size());
    for (int i = 0; i < expected.size(); i++) {
      assertEquals(Float.floatToRawIntBits(expected.get(i)), Float.floatToRawIntBits(actual.get(i)),
          "loss " + i + ": " + expected.get(i) + " vs " + actual.get(i));
    }
  }

  private static void assertStateEquals(Map<String, byte[]> expected, Map<String, byte[]> actual) {
    assertEquals(expected.keySet(), actual.keySet());
    for (String v : expected.keySet()) {
      assertTrue(Arrays.equals(expected.get(v), actual.get(v)), v + " differs");
    }
  }
}
