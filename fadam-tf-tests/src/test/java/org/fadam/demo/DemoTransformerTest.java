package org.fadam.demo;

import static org.fadam.demo.DemoErrorsTest.assertOneLine;
import static org.fadam.demo.DemoErrorsTest.demo;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import org.fadam.Algorithm;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine.ParameterException;

/** {@code scripts/demo --model transformer}: defaults, the text source, save/resume, bad input. */
class DemoTransformerTest {

  private static final List<String> TINY = List.of("--model", "transformer", "--layers", "1", "--width", "16",
      "--heads", "2", "--context", "8", "--batch", "4", "--seed", "3", "--eval-every", "4");

  private static Demo.Report run(Path out, List<String> base, String... args) throws Exception {
    List<String> all = new ArrayList<>(base);
    all.addAll(List.of(args));
    all.addAll(List.of("--out", out.toString()));
    Demo.Options o = Demo.parse(all.toArray(new String[0]));
    ByteArrayOutputStream text = new ByteArrayOutputStream();
    try (PrintStream p = new PrintStream(text, true, StandardCharsets.UTF_8)) {
      return Demo.run(o, p, new Progress(System.err, false, System::nanoTime));
    }
  }

  @Test
  void theTransformerTrainsAsTransformersAreTrained() {
    Demo.Options o = Demo.parse("--model", "transformer");
    Demo.Settings s = o.settings();
    assertEquals(Demo.DEFAULT_TRANSFORMER, s.transformer());
    assertEquals(new TransformerModel.Architecture(2, 128, 4, 32, false), s.transformer());
    assertEquals(Demo.DEFAULT_TRANSFORMER_STEPS, o.steps());
    assertEquals(Demo.DEFAULT_TRANSFORMER_BATCH, s.batch());
    assertEquals(Demo.DEFAULT_TRANSFORMER_EVAL_EVERY, o.evalEvery());
    assertEquals(Demo.DEFAULT_TRANSFORMER_LR, s.learningRate());
    // warmup 5 % then cosine to 10 % at the last step; no decay of biases and layer norms
    assertEquals(new DemoModel.Training("cosine", Demo.DEFAULT_TRANSFORMER_STEPS / 20,
        Demo.DEFAULT_TRANSFORMER_STEPS, true, 1), s.training());
    assertEquals(408_832, s.transformer().parameterCount(64));
    // the MLP keeps its own defaults
    assertEquals(null, Demo.parse().settings().transformer());
    assertEquals(DemoModel.Training.DEFAULT, Demo.parse().settings().training());
    assertEquals(new TransformerModel.Architecture(3, 64, 2, 16, true), Demo.parse("--model", "transformer",
        "--layers", "3", "--width", "64", "--heads", "2", "--context", "16", "--dtype", "bfloat16")
        .settings().transformer());
  }

  @Test
  void badCombinationsFailWithOneLine() {
    Map<List<String>, String> cases = Map.of(
        List.of("--model", "transformer", "--heads", "3"),
        "--heads 3 does not divide --width 128: each head takes width/heads features",
        List.of("--model", "rnn"), "--model must be mlp or transformer; got rnn",
        List.of("--layers", "2", "--text", "f"), "--layers, --text apply to --model transformer",
        List.of("--model", "transformer", "--hidden", "64"),
        "--hidden apply to --model mlp; the transformer's sizes are --layers, --width, --heads and --context",
        List.of("--model", "transformer", "--dtype", "float16"), "--dtype must be float32 or bfloat16; got float16");
    cases.forEach((args, message) -> {
      var e = assertThrows(ParameterException.class, () -> Demo.parse(args.toArray(new String[0])), args.toString());
      assertEquals(message, e.getMessage());
    });
  }

  /**
   * Saved after 4 steps and resumed for 4, a transformer run equals 8 steps in one go (the
   * architecture, the schedule and every variable come back); an MLP save refuses --model
   * transformer with one line.
   */
  @Test
  void aSavedTransformerResumesExactly(@TempDir Path dir) throws Exception {
    Demo.Report whole = run(dir.resolve("whole"), TINY, "--optimizers", "fadam", "--steps", "8");
    Demo.Options first = Demo.parse(concat(TINY, "--optimizers", "fadam", "--steps", "8", "--out",
        dir.resolve("a").toString(), "--save", dir.resolve("saved").toString()));
    Demo.Options firstFour = new Demo.Options(first.settings(), 4, first.optimizers(), first.out(), first.xla(),
        first.save(), null, first.evalEvery(), false, null);
    try (PrintStream p = new PrintStream(new ByteArrayOutputStream(), true, StandardCharsets.UTF_8)) {
      Demo.run(firstFour, p, new Progress(System.err, false, System::nanoTime));
    }
    Demo.Report second = run(dir.resolve("a"), List.of("--eval-every", "4"), "--steps", "4", "--resume",
        dir.resolve("saved").toString());
    float[] all = whole.trainLosses().get(Algorithm.FADAM);
    assertArrayEquals(Arrays.copyOfRange(all, 4, 8), second.trainLosses().get(Algorithm.FADAM));
    assertTrue(all[7] < all[0], Arrays.toString(all));

    run(dir.resolve("mlp"), List.of("--embed", "4", "--hidden", "8"), "--optimizers", "fadam", "--steps", "1",
        "--save", dir.resolve("mlp-saved").toString());
    var e = assertThrows(ParameterException.class, () -> Demo.parse("--resume",
        dir.resolve("mlp-saved").toString(), "--model", "transformer"));
    assertEquals("--resume " + dir.resolve("mlp-saved") + " holds a --model mlp run: it cannot continue as"
        + " --model transformer (a resumed run keeps the model it was saved with)", e.getMessage());
  }

  /**
   * A text the project has never seen: bytes as tokens, the last 10 % held out, no floor (the
   * table says n/a); two optimizers learn it (the held-out loss falls below ln 256 = 5.545).
   */
  @Test
  void trainsOnAnyUtf8Text(@TempDir Path dir) throws Exception {
    StringBuilder text = new StringBuilder();
    for (int i = 0; text.length() < 4000; i++) {
      text.append("Line ").append(i % 17).append(": the Fisher is the metric; ÿ über naïve — ").append('\n');
    }
    Path file = Files.writeString(dir.resolve("notes.txt"), text, StandardCharsets.UTF_8);
    Demo.Report r = run(dir.resolve("out"), TINY, "--optimizers", "fadam,adam", "--steps", "40", "--lr", "1e-2",
        "--text", file.toString());
    assertEquals(2, r.table().rows().size());
    for (ResultsTable.Row row : r.table().rows()) {
      assertTrue(row.heldoutLoss() < Math.log(256) - 1, row.toString());
    }
    assertTrue(Double.isNaN(r.table().floorNats()));
    assertTrue(r.table().toText().contains("n/a"), r.table().toText());
    String md = Files.readString(dir.resolve("out").resolve(Demo.MARKDOWN));
    assertTrue(md.contains("notes.txt, " + Files.size(file) + " bytes as tokens (V=256)"), md);
    assertTrue(Files.isRegularFile(dir.resolve("out").resolve(Demo.PNG)));
  }

  /** Each bad --text fails with one line before any training (through scripts/demo, as a user runs it). */
  @Test
  void badTextsFailWithOneLineBeforeTraining(@TempDir Path dir) throws Exception {
    Path empty = Files.write(dir.resolve("empty.txt"), new byte[0]);
    Path shortText = Files.writeString(dir.resolve("short.txt"), "a".repeat(300));
    Path nul = Files.write(dir.resolve("image.bin"), new byte[] {'P', 'N', 'G', 0, 1, 2});
    Path latin1 = Files.write(dir.resolve("latin1.txt"), new byte[] {'c', 'a', 'f', (byte) 0xe9, '\n'});
    Path missing = dir.resolve("missing.txt");
    String out = dir.resolve("out").toString();
    assertOneLine("demo: --text " + empty + " is empty", demo(concat(TINY, "--text", empty.toString(), "--out", out)));
    assertOneLine("demo: --text " + shortText + " is too short for --context 32: 300 bytes, and its last 10 %"
        + " (held out) must hold a window of 33, so at least 330 bytes",
        demo("--model", "transformer", "--text", shortText.toString(), "--out", out));
    assertOneLine("demo: --text " + nul + " is not text: it holds a NUL byte at offset 3 (a binary file?)",
        demo(concat(TINY, "--text", nul.toString(), "--out", out)));
    assertOneLine("demo: --text " + latin1 + " is not UTF-8 text (a malformed byte sequence; a binary file?)",
        demo(concat(TINY, "--text", latin1.toString(), "--out", out)));
    assertOneLine("demo: --text " + missing + ": cannot read it: No such file or directory",
        demo(concat(TINY, "--text", missing.toString(), "--out", out)));
  }

  private static String[] concat(List<String> base, String... more) {
    List<String> all = new ArrayList<>(base);
    all.addAll(List.of(more));
    return all.toArray(new String[0]);
  }
}
