package org.fadam.demo;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
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
    // --save's and --tfrecord's folders are checked before training too.
    Path out = tmp.resolve("out");
    assertOneLine("demo: cannot create directory /proc/forbidden: No such file or directory",
        demo("--steps", "1", "--out", out.toString(), "--save", "/proc/forbidden/sv"));
    assertOneLine("demo: cannot create directory " + file + ": it exists and is not a directory",
        demo("--steps", "1", "--out", out.toString(), "--tfrecord", file + "/t.tfrecord"));
    assertFalse(Files.exists(out.resolve(Demo.CSV)));
  }
}
