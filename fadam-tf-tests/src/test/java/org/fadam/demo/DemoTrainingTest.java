package org.fadam.demo;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.fadam.Algorithm;
import org.fadam.ResourceVariable;
import org.fadam.WeightDecayMasks;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine.ParameterException;

/** The demo's training options: --schedule, --warmup, --weight-decay-mask, --accumulate. */
class DemoTrainingTest {

  private static final List<String> TINY =
      List.of("--embed", "8", "--hidden", "16", "--seed", "7", "--eval-every", "4", "--optimizers", "fadam");

  private static Demo.Report run(Path out, String... args) throws Exception {
    List<String> all = new ArrayList<>(List.of(args).contains("--resume") ? List.of("--eval-every", "4") : TINY);
    all.addAll(List.of(args));
    all.addAll(List.of("--out", out.toString()));
    Demo.Options o = Demo.parse(all.toArray(new String[0]));
    try (PrintStream p = new PrintStream(new ByteArrayOutputStream(), true, StandardCharsets.UTF_8)) {
      return Demo.run(o, p, new Progress(System.err, false, System::nanoTime));
    }
  }

  @Test
  void parsesTheTrainingOptions() {
    DemoModel.Training t = Demo.parse("--schedule", "cosine", "--steps", "40", "--weight-decay-mask", "matrices",
        "--accumulate", "3").settings().training();
    assertEquals(new DemoModel.Training("cosine", 2, 40, true, 3), t); // warmup: 5 % of the steps
    assertEquals(DemoModel.Training.DEFAULT, Demo.parse().settings().training());
    assertEquals(new DemoModel.Training("rsqrt", 7, Demo.DEFAULT_STEPS, false, 1),
        Demo.parse("--schedule", "rsqrt", "--warmup", "7").settings().training());
  }

  @Test
  void badTrainingOptionsFailWithOneLine() {
    Map<List<String>, String> cases = Map.of(
        List.of("--schedule", "cosine", "--steps", "20", "--warmup", "30"),
        "--schedule cosine --warmup 30 over 20 steps: warmupSteps 30 must be less than totalSteps 20"
            + " (the decay needs at least one step)",
        List.of("--warmup", "5"), "--warmup 5 needs --schedule cosine, linear or rsqrt",
        List.of("--schedule", "step"), "--schedule must be one of [constant, cosine, linear, rsqrt]; got step",
        List.of("--weight-decay-mask", "some"), "--weight-decay-mask must be all or matrices; got some",
        List.of("--momentum", "float16"), "--momentum must be one of [float32, bfloat16, none]; got float16",
        List.of("--tfrecord", "f", "--accumulate", "2"),
        "--tfrecord writes one batch per step: it cannot be combined with --accumulate 2");
    cases.forEach((args, message) -> {
      var e = assertThrows(ParameterException.class, () -> Demo.parse(args.toArray(new String[0])), args.toString());
      assertEquals(message, e.getMessage());
    });
    for (String[] args : List.of(new String[] {"--accumulate", "0"},
        new String[] {"--resume", "x", "--accumulate", "2"}, new String[] {"--resume", "x", "--schedule", "cosine"})) {
      assertThrows(ParameterException.class, () -> Demo.parse(args), String.join(" ", args));
    }
  }

  /** --momentum none builds no m and bfloat16 a 2-byte one: the table's state bytes say so. */
  @Test
  void momentumOptionsShowInTheStateBytes(@TempDir Path dir) throws Exception {
    double[] bytes = new double[3];
    int i = 0;
    for (String m : List.of("float32", "bfloat16", "none")) {
      Demo.Report r = run(dir.resolve(m), "--steps", "2", "--momentum", m); // FAdam: m 4 B of its 8
      bytes[i++] = r.table().rows().get(0).stateBytesPerParam();
    }
    assertEquals(2, bytes[0] - bytes[1], 0.01, java.util.Arrays.toString(bytes));
    assertEquals(4, bytes[0] - bytes[2], 0.01, java.util.Arrays.toString(bytes));
  }

  /** The usual mask keeps the decay off exactly the demo model's biases and layer-norm gain and shift. */
  @Test
  void matricesExcludesTheRankOneTensors() {
    try (DemoModel m = DemoModel.create(Algorithm.FADAM, new DemoModel.Config(64, 8, 16, 1e-3, 1, false,
        new DemoModel.Training("constant", 0, 0, true, 1)))) {
      List<String> excluded = m.step().parameters().stream().filter(WeightDecayMasks.matrices().negate())
          .map(ResourceVariable::name).toList();
      assertEquals(List.of("b1", "ln_gain", "ln_shift", "b2", "b3"), excluded);
    }
  }

  /**
   * A run with a cosine schedule, the matrices mask and accumulation saved after 6 steps and
   * resumed for 6 equals 12 in one go: the saved settings (schedule total included) and the
   * gradient sums come back; and the options change the run.
   */
  @Test
  void trainingOptionsSurviveSaveAndResume(@TempDir Path dir) throws Exception {
    String[] training = {"--schedule", "cosine", "--warmup", "2", "--weight-decay-mask", "matrices", "--accumulate", "2"};
    List<String> oneGo = new ArrayList<>(List.of(training));
    oneGo.addAll(List.of("--steps", "12"));
    Demo.Report whole = run(dir.resolve("whole"), oneGo.toArray(new String[0]));
    // the first half of the same run: total 12 steps, stopped after 6 (the schedule needs the total)
    Demo.Options first = Demo.parse(concat(TINY, List.of(training), List.of("--steps", "12", "--out",
        dir.resolve("a").toString(), "--save", dir.resolve("saved").toString())));
    Demo.Options firstSix = new Demo.Options(first.settings(), 6, first.optimizers(), first.out(), first.xla(),
        first.save(), null, first.evalEvery(), false, null);
    try (PrintStream p = new PrintStream(new ByteArrayOutputStream(), true, StandardCharsets.UTF_8)) {
      Demo.run(firstSix, p, new Progress(System.err, false, System::nanoTime));
    }
    Demo.Report second = run(dir.resolve("a"), "--steps", "6", "--resume", dir.resolve("saved").toString());
    float[] wholeLosses = whole.trainLosses().get(Algorithm.FADAM);
    float[] tail = java.util.Arrays.copyOfRange(wholeLosses, 6, 12);
    assertArrayEquals(tail, second.trainLosses().get(Algorithm.FADAM));
    Demo.Report plain = run(dir.resolve("plain"), "--steps", "12");
    assertFalse(java.util.Arrays.equals(wholeLosses, plain.trainLosses().get(Algorithm.FADAM)));
    assertTrue(Double.isFinite(whole.table().rows().get(0).heldoutLoss()));
    // results.md says how the run trained; a default run's says nothing more
    assertTrue(java.nio.file.Files.readString(dir.resolve("whole").resolve(Demo.MARKDOWN)).contains(
        "Training: cosine schedule with the learning rate as its peak (warmup 2 steps, then down to 10 % of the"
            + " peak at step 12); weight decay on the matrices only (not the biases or the layer norm's gain"
            + " and shift); 2 calls of batch 256 per optimizer step (effective batch 512)."));
    assertFalse(java.nio.file.Files.readString(dir.resolve("plain").resolve(Demo.MARKDOWN)).contains("Training:"));
  }

  /**
   * {@code --accumulate 2 --batch 8} trains on the rows of {@code --batch 16} (step k's 16 rows,
   * split in two halves), so after 5 optimizer steps its parameters and its per-step losses are
   * those of {@code --batch 16} within float32 round-off; the same 5 steps at {@code --batch 8}
   * without accumulation end elsewhere. Through the demo's own loop and data ({@link Demo#train}).
   */
  @Test
  void accumulatingTwoHalvesEqualsTheDoubleBatch() {
    Demo.Options doubleBatch = Demo.parse("--embed", "8", "--hidden", "16", "--seed", "7", "--batch", "16",
        "--steps", "5", "--lr", "3e-3", "--optimizers", "fadam");
    Demo.Options halves = Demo.parse("--embed", "8", "--hidden", "16", "--seed", "7", "--batch", "8",
        "--accumulate", "2", "--steps", "5", "--lr", "3e-3", "--optimizers", "fadam");
    Demo.Options single = Demo.parse("--embed", "8", "--hidden", "16", "--seed", "7", "--batch", "8",
        "--steps", "5", "--lr", "3e-3", "--optimizers", "fadam");
    Trained whole = trainDirect(doubleBatch);
    Trained accumulated = trainDirect(halves);
    Trained alone = trainDirect(single);
    assertEquals(whole.params().keySet(), accumulated.params().keySet());
    double alonesLargestMove = 0;
    for (String n : whole.params().keySet()) {
      float[] want = whole.params().get(n);
      float[] got = accumulated.params().get(n);
      float[] other = alone.params().get(n);
      double scale = 0;
      for (float v : want) {
        scale = Math.max(scale, Math.abs(v));
      }
      for (int e = 0; e < want.length; e++) {
        assertEquals(want[e], got[e], 2e-5 * scale, n + "[" + e + "] after 5 steps");
        alonesLargestMove = Math.max(alonesLargestMove, Math.abs(want[e] - other[e]) / scale);
      }
    }
    assertTrue(alonesLargestMove > 1e-3, "--batch 8 alone should train elsewhere: " + alonesLargestMove);
    assertArrayEquals(whole.losses(), accumulated.losses(), 1e-5f, "each step's loss: the mean of its halves");
  }

  private record Trained(Map<String, float[]> params, float[] losses) {}

  /** Trains FAdam as Demo.run does, keeping the model open to read its parameters. */
  private static Trained trainDirect(Demo.Options o) {
    Demo.Settings s = o.settings();
    DemoData data = new DemoData(s.seed(), s.batch());
    try (DemoModel m = DemoModel.create(Algorithm.FADAM, s.modelConfig(data.vocabSize(), o.xla()))) {
      Demo.Run run = Demo.train(m, o, s.batch(), null, data, row -> { }, new Progress(System.err, false,
          System::nanoTime));
      assertEquals(5, m.iterations(), "optimizer steps");
      return new Trained(m.parameterValues(), run.losses());
    }
  }

  private static String[] concat(List<String> a, List<String> b, List<String> c) {
    List<String> all = new ArrayList<>(a);
    all.addAll(b);
    all.addAll(c);
    return all.toArray(new String[0]);
  }
}
