package org.fadam.demo;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import javax.imageio.ImageIO;
import org.fadam.FisherTrainStep;
import org.fadam.Algorithm;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.api.io.TempDir;
import org.tensorflow.SavedModelBundle;
import org.tensorflow.Tensor;
import org.tensorflow.ndarray.Shape;
import org.tensorflow.ndarray.buffer.DataBuffers;
import org.tensorflow.types.TFloat32;
import org.tensorflow.types.TInt32;
import picocli.CommandLine.ParameterException;

/**
 * The demo end to end, tiny (FAdam only, to stay quick: each XLA compilation takes seconds): a
 * 20-step run writes every output, the same seed gives the same numbers, and 10 steps saved then
 * resumed for 10 more give the 20-step run exactly.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class DemoTest {

  /** Small and quick, but the demo's code path (XLA on); a resumed run keeps these. */
  private static final List<String> TINY = List.of("--embed", "8", "--hidden", "16", "--seed", "7");
  private static final List<String> EVAL = List.of("--eval-every", "5");

  private Path tmp;
  private Demo.Report oneGo;
  private Path oneGoOut;
  private String oneGoStdout;

  @BeforeAll
  void runTwentySteps(@TempDir Path dir) throws Exception {
    tmp = dir;
    oneGoOut = tmp.resolve("one-go");
    ByteArrayOutputStream stdout = new ByteArrayOutputStream();
    oneGo = run(stdout, "--steps", "20", "--optimizers", "fadam", "--out", oneGoOut.toString());
    oneGoStdout = stdout.toString(StandardCharsets.UTF_8);
  }

  private static Demo.Report run(ByteArrayOutputStream stdout, String... args) throws Exception {
    List<String> all = new ArrayList<>(EVAL);
    if (!List.of(args).contains("--resume")) {
      all.addAll(TINY);
    }
    all.addAll(List.of(args));
    Demo.Options o = Demo.parse(all.toArray(new String[0]));
    try (PrintStream out = new PrintStream(stdout, true, StandardCharsets.UTF_8)) {
      return Demo.run(o, out, new Progress(System.err, false, System::nanoTime));
    }
  }

  private static Demo.Report run(String... args) throws Exception {
    return run(new ByteArrayOutputStream(), args);
  }

  private static List<ResultsCsv.Row> rowsOf(List<ResultsCsv.Row> rows, Algorithm o) {
    return rows.stream().filter(r -> r.optimizer().equals(o.displayName())).toList();
  }

  @Test
  void writesTheCsvPlotTableAndSavedModel() throws IOException {
    List<ResultsCsv.Row> csv = ResultsCsv.read(oneGoOut.resolve(Demo.CSV));
    assertEquals(oneGo.rows(), csv);
    List<Long> steps = rowsOf(csv, Algorithm.FADAM).stream().map(ResultsCsv.Row::step).toList();
    assertEquals(List.of(0L, 5L, 10L, 15L, 20L), steps);
    for (ResultsCsv.Row r : csv) {
      assertTrue(Double.isFinite(r.trainLoss()) && Double.isFinite(r.heldoutLoss()), r.toString());
    }
    assertTrue(ImageIO.read(oneGoOut.resolve(Demo.PNG).toFile()).getWidth() > 0);
    String md = Files.readString(oneGoOut.resolve(Demo.MARKDOWN));
    assertTrue(md.contains("| FAdam "), md);
    assertEquals(1, oneGo.table().rows().size());

    Path model = oneGoOut.resolve(Demo.SAVED_MODEL);
    assertEquals(oneGo.savedModel().orElseThrow(), model);
    assertTrue(oneGoStdout.contains(model.toString()), oneGoStdout);
    try (SavedModelBundle bundle = SavedModelBundle.load(model.toString(), "serve");
        TInt32 tokens = TInt32.tensorOf(Shape.of(2, 2), DataBuffers.of(new int[] {1, 2, 3, 4}));
        var result = bundle.function(FisherTrainStep.SERVE).call(Map.of(DemoModel.TOKENS, tokens))) {
      assertTrue(bundle.signatures().stream().anyMatch(s -> s.key().equals(FisherTrainStep.TRAIN)));
      Tensor p = result.get(FisherTrainStep.PREDICTIONS).orElseThrow();
      assertEquals(Shape.of(2, 64), p.shape());
      float sum = 0;
      for (int c = 0; c < 64; c++) {
        sum += ((TFloat32) p).getFloat(0, c);
      }
      assertEquals(1f, sum, 1e-5f);
    }
  }

  @Test
  void sameSeedSameNumbers() throws Exception {
    Demo.Report again = run("--steps", "20", "--optimizers", "fadam",
        "--out", tmp.resolve("again").toString());
    assertEquals(rowsOf(oneGo.rows(), Algorithm.FADAM), again.rows());
    assertArrayEquals(oneGo.trainLosses().get(Algorithm.FADAM),
        again.trainLosses().get(Algorithm.FADAM));
  }

  @Test
  void tenStepsSavedThenTenResumedEqualTwentyInOneGo() throws Exception {
    Path out = tmp.resolve("resumed");
    Path saved = tmp.resolve("saved");
    Demo.Report first = run("--steps", "10", "--optimizers", "fadam", "--out", out.toString(),
        "--save", saved.toString());
    Demo.Report second = run("--steps", "10", "--resume", saved.toString(),
        "--out", out.toString());

    float[] losses = new float[20];
    System.arraycopy(first.trainLosses().get(Algorithm.FADAM), 0, losses, 0, 10);
    System.arraycopy(second.trainLosses().get(Algorithm.FADAM), 0, losses, 10, 10);
    assertArrayEquals(oneGo.trainLosses().get(Algorithm.FADAM), losses);
    // The resumed run appended its rows to the first run's CSV: together, the 20-step run's rows.
    assertEquals(rowsOf(oneGo.rows(), Algorithm.FADAM), ResultsCsv.read(out.resolve(Demo.CSV)));
  }

  @Test
  void neverReplacesADirectoryThatIsNotASavedModelOrResumesFromOne() throws IOException {
    Path precious = tmp.resolve("precious");
    Files.createDirectories(precious);
    Files.writeString(precious.resolve("notes.txt"), "keep me");
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
        () -> run("--steps", "1", "--out", tmp.resolve("o").toString(),
            "--save", precious.toString()));
    assertTrue(e.getMessage().contains("not a SavedModel"), e.getMessage());
    assertTrue(Files.exists(precious.resolve("notes.txt")));
    e = assertThrows(IllegalArgumentException.class,
        () -> run("--resume", precious.toString(), "--out", tmp.resolve("o").toString()));
    assertTrue(e.getMessage().contains(Demo.RUN_PROPERTIES), e.getMessage());
  }

  @Test
  void rejectsBadCommandLines() {
    for (String[] args : List.of(
        new String[] {"--steps", "0"},
        new String[] {"--steps"},
        new String[] {"--steps", "many"},
        new String[] {"--optimizers", "fadam,sgd"},
        new String[] {"--lr", "-1"},
        new String[] {"--lr", "Infinity"},
        new String[] {"--frobnicate"},
        new String[] {"--no-xla=yes"},
        new String[] {"--resume", "x", "--seed", "3"},
        new String[] {"--resume", "x", "--optimizers", "adam"},
        new String[] {"--save", "x", "--optimizers", "adam"})) {
      assertThrows(ParameterException.class, () -> Demo.parse(args), String.join(" ", args));
    }
  }

  @Test
  void parsesEveryOption() {
    Demo.Options o = Demo.parse("--steps=12", "--optimizers", "adam,fadam,adam",
        "--seed", "-5", "--out", "o", "--no-xla", "--save", "s", "--batch", "32", "--lr", "0.01",
        "--eval-every", "3", "--embed", "4", "--hidden", "8", "--progress", "--tfrecord", "t.tfrecord");
    assertEquals(new Demo.Options(new Demo.Settings(-5, 32, 0.01, 4, 8), 12,
        List.of(Algorithm.ADAM, Algorithm.FADAM), Path.of("o"), false, Path.of("s"), null, 3, true,
        Path.of("t.tfrecord")), o);
    assertEquals(Demo.Options.defaults(Path.of("demo-out")), Demo.parse());
    assertEquals(List.of(Algorithm.FADAM), Demo.parse("--resume", "r").optimizers());
  }
}
