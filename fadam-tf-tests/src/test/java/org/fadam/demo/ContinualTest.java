package org.fadam.demo;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.fadam.tools.Tool;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine.ParameterException;

/**
 * {@code scripts/demo --continual}: a tiny run writes its three files and a strong EWC keeps task A
 * where A's training left it, far closer than no EWC; and the command line's checks, with those of
 * {@code --fisher micro-batch}.
 */
class ContinualTest {

  private static Demo.Cli cli(String... args) {
    Demo.Cli cli = new Demo.Cli();
    Tool.commandLine(cli).parseArgs(args);
    return cli;
  }

  @Test
  void aStrongPenaltyKeepsTaskA(@TempDir Path dir) throws Exception {
    Continual.Options o = new Continual.Options(List.of(1L), 40, 64, 3e-2, 8, 16, List.of(1e9), false, dir);
    ByteArrayOutputStream bytes = new ByteArrayOutputStream();
    List<Continual.Run> runs = Continual.run(o, new PrintStream(bytes, true, StandardCharsets.UTF_8));
    assertEquals(2, runs.size());
    Continual.Run none = runs.get(0);
    Continual.Run strong = runs.get(1);
    assertEquals(0.0, none.lambda());
    assertEquals(none.aAfterA(), strong.aAfterA(), "one task-A run serves every λ");
    // the chains share two successors of every context, so early training on B can move A's loss
    // either way; it moves it by more than 0.005 nats here (0.012 when written)
    assertTrue(Math.abs(none.forgetting()) > 0.005, "B's training moves A's loss without EWC: " + none);
    assertTrue(Math.abs(strong.forgetting()) < Math.abs(none.forgetting()) / 4,
        "λ = 1e9 holds the parameters near θ*: " + strong + " against " + none);
    assertTrue(strong.bAfterB() > none.bAfterB(), "and B pays for it: " + strong + " against " + none);
    String csv = Files.readString(dir.resolve(Continual.CSV));
    assertEquals(3, csv.lines().count(), csv);
    assertTrue(csv.startsWith("seed,lambda,heldout_a_after_a,heldout_a_after_b,heldout_b_after_b\n1,0.0,"), csv);
    String md = Files.readString(dir.resolve(Continual.MARKDOWN));
    assertTrue(md.contains("| 0 (no EWC) | ") && md.contains("| 1e9 | ") && md.contains("Chosen λ"), md);
    assertTrue(Files.size(dir.resolve(Continual.PNG)) > 10_000, "the chart");
    assertTrue(bytes.toString(StandardCharsets.UTF_8).contains("Chosen λ"));
  }

  @Test
  void theCommandLineIsChecked() {
    Continual.Options o = cli("--continual", "--seeds", "2", "--steps", "7", "--ewc-lambdas", "1e3,10").continualOptions();
    assertEquals(List.of(1L, 2L), o.seeds());
    assertEquals(7, o.steps());
    assertEquals(List.of(10.0, 1e3), o.lambdas());
    assertEquals(Continual.DEFAULT_LR, o.learningRate());
    assertEquals(List.of(1L, 2L, 3L), cli("--continual").continualOptions().seeds());
    ParameterException e = assertThrows(ParameterException.class,
        () -> cli("--continual", "--accumulate", "2").continualOptions());
    assertEquals("--accumulate cannot be combined with --continual (FAdam on the MLP, seeds 1..--seeds, the paper's defaults)",
        e.getMessage());
    e = assertThrows(ParameterException.class, () -> Demo.parse("--ewc-lambdas", "1"));
    assertEquals("--ewc-lambdas only applies with --continual", e.getMessage());
    e = assertThrows(ParameterException.class, () -> Demo.parse("--fisher", "micro-batch"));
    assertEquals("--fisher micro-batch needs --accumulate K ≥ 2 (the Fisher is fed the mean of the K"
        + " micro-batches' squared gradients); got --accumulate 1", e.getMessage());
    e = assertThrows(ParameterException.class, () -> Demo.parse("--fisher", "exact"));
    assertEquals("--fisher must be one of [mean-batch, micro-batch]; got exact", e.getMessage());
    assertTrue(Demo.parse("--fisher", "micro-batch", "--accumulate", "2").settings().training().microBatchFisher());
  }
}
