package org.fadam.demo;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.OutputStream;
import java.io.PrintStream;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The demo's answers to what a careless user gives it: each is one line on stderr that says what
 * failed and why, before any training, with exit status 1. Run through scripts/demo, as a user
 * does, so that the line is all that reaches the terminal (no TensorFlow log line, no trace).
 */
class DemoErrorsTest {

  /** A child process's exit status and what it printed. */
  record Child(int status, String out, String err) {}

  static Child demo(String... args) throws IOException, InterruptedException {
    Path script = Path.of("..", "scripts", "demo");
    Assumptions.assumeTrue(Files.isExecutable(script), "run from fadam-tf-tests/");
    List<String> cmd = new ArrayList<>(List.of("bash", script.toString()));
    cmd.addAll(List.of(args));
    ProcessBuilder pb = new ProcessBuilder(cmd);
    pb.environment().put("FADAM_CLASSPATH", System.getProperty("java.class.path"));
    Process p = pb.start();
    p.getOutputStream().close();
    CompletableFuture<String> err = CompletableFuture.supplyAsync(() -> {
      try {
        return new String(p.getErrorStream().readAllBytes(), StandardCharsets.UTF_8);
      } catch (IOException e) {
        throw new java.io.UncheckedIOException(e);
      }
    });
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    if (!p.waitFor(120, TimeUnit.SECONDS)) {
      p.destroyForcibly();
      throw new AssertionError("scripts/demo " + String.join(" ", args) + " did not end");
    }
    return new Child(p.exitValue(), out, err.join());
  }

  /** Fails unless the run failed (status 1) with exactly this line and printed nothing else. */
  static void assertOneLine(String expected, Child c) {
    assertEquals(1, c.status(), c.err());
    assertEquals(expected + "\n", c.err());
    assertEquals("", c.out(), "it started on the run before failing");
  }

  @Test
  void anOutputDirectoryThatCannotBeMadeIsNamedWithTheReasonBeforeAnyTraining(@TempDir Path tmp)
      throws Exception {
    Path file = Files.writeString(tmp.resolve("a-file"), "x");
    assertOneLine("demo: cannot create directory " + file.resolve("sub") + ": Not a directory",
        demo("--steps", "1", "--out", file.resolve("sub").toString()));
    assertOneLine("demo: cannot create directory " + file + ": it exists and is not a directory",
        demo("--steps", "1", "--out", file.toString()));
    Assumptions.assumeTrue(Files.isDirectory(Path.of("/proc/self")), "Linux /proc");
    assertOneLine("demo: cannot create directory /proc/forbidden: No such file or directory",
        demo("--steps", "1", "--out", "/proc/forbidden"));
    // --save's, --tfrecord's and --tensorboard's folders are checked before training too.
    Path out = tmp.resolve("out");
    assertOneLine("demo: cannot create directory /proc/forbidden: No such file or directory",
        demo("--steps", "1", "--out", out.toString(), "--save", "/proc/forbidden/sv"));
    assertOneLine("demo: cannot create directory " + file + ": it exists and is not a directory",
        demo("--steps", "1", "--out", out.toString(), "--tfrecord", file + "/t.tfrecord"));
    // and --tensorboard's
    assertOneLine("demo: cannot create directory " + file + ": it exists and is not a directory",
        demo("--steps", "1", "--out", out.toString(), "--tensorboard", file.toString()));
    assertFalse(Files.exists(out.resolve(Demo.CSV)));
  }

  /** A copy of a saved run whose file {@code damaged} is cut to half its length. */
  private static Path truncatedCopy(Path run, Path to, String damaged) throws IOException {
    try (Stream<Path> files = Files.walk(run)) {
      for (Path f : files.toList()) {
        Files.copy(f, to.resolve(run.relativize(f).toString()));
      }
    }
    try (FileChannel c = FileChannel.open(to.resolve(damaged), StandardOpenOption.WRITE)) {
      c.truncate(c.size() / 2);
    }
    return to;
  }

  @Test
  void resumeErrorsNameTheFolderOrTheDamagedFile(@TempDir Path tmp) throws Exception {
    Path out = tmp.resolve("out");
    Path sv = tmp.resolve("sv");
    Demo.run(Demo.parse("--steps", "2", "--optimizers", "fadam", "--no-xla", "--embed", "8",
            "--hidden", "16", "--out", out.toString(), "--save", sv.toString()),
        new PrintStream(OutputStream.nullOutputStream(), true, StandardCharsets.UTF_8),
        new Progress(System.err, false, System::nanoTime));
    String o2 = tmp.resolve("o2").toString();

    // The demo's output folder, where the saved run is the folder inside it.
    Path inside = out.resolve(Demo.SAVED_MODEL);
    assertOneLine("demo: " + out + " is not a saved demo run, but " + inside + " is: --resume "
        + inside, demo("--resume", out.toString(), "--out", o2));
    // A folder that is not there.
    Path missing = tmp.resolve("no-such-run");
    assertOneLine("demo: no saved demo run at " + missing + ": the directory does not exist"
        + " (--save DIR writes one when the FAdam run ends or is stopped)",
        demo("--resume", missing.toString(), "--out", o2));

    // A copy whose saved_model.pb is cut short: the graph is rebuilt, not read, so only a check
    // of the file itself finds it.
    Path pb = truncatedCopy(sv, tmp.resolve("short-pb"), "saved_model.pb").resolve("saved_model.pb");
    Child c = demo("--resume", pb.getParent().toString(), "--out", o2);
    assertEquals(1, c.status(), c.err());
    assertTrue(c.err().startsWith("demo: " + pb + " is truncated or corrupt (not a SavedModel: "),
        c.err());
    assertEquals(1, c.err().lines().count(), c.err());

    // A copy whose variables are cut short, or whose index is: the file, and TensorFlow's words
    // for it, without TensorFlow's own warning line about the failed op.
    Path data;
    try (Stream<Path> files = Files.list(sv.resolve("variables"))) {
      data = files.filter(f -> f.getFileName().toString().startsWith("variables.data-"))
          .findFirst().orElseThrow();
    }
    Path shortData = truncatedCopy(sv, tmp.resolve("short-data"), "variables/" + data.getFileName());
    c = demo("--resume", shortData.toString(), "--out", o2);
    assertEquals(1, c.status(), c.err());
    assertEquals("demo: " + shortData.resolve("variables").resolve(data.getFileName())
        + " is truncated or corrupt (TensorFlow: Read less bytes than requested)\n", c.err());
    Path shortIndex = truncatedCopy(sv, tmp.resolve("short-index"), "variables/variables.index");
    c = demo("--resume", shortIndex.toString(), "--out", o2);
    assertEquals(1, c.status(), c.err());
    assertTrue(c.err().startsWith("demo: " + shortIndex.resolve("variables/variables.index")
        + " is truncated or corrupt (TensorFlow: "), c.err());
    assertEquals(1, c.err().lines().count(), c.err());
  }
}
