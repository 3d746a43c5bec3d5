package org.fadam.demo;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import javax.imageio.ImageIO;
import org.fadam.Algorithm;
import org.fadam.tools.StopSignal;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Stopping the demo (Ctrl-C, SIGTERM, or any stop request): the step under way finishes, every
 * output is written whole, the FAdam run is saved where --save said, the message says how to
 * continue, the exit status is 128 + the signal's number, and --resume then continues the run.
 * The signal tests run scripts/demo in a child process, as a user does.
 */
class DemoStopTest {

  private static final List<String> TINY =
      List.of("--embed", "8", "--hidden", "16", "--eval-every", "50");
  private static final long MANY = 1_000_000;

  /** A child process's exit status and what it printed. */
  record Child(int status, String out, String err) {}

  /**
   * Runs scripts/demo (this JVM's class path, no build) with {@code args}; once the FAdam progress
   * line shows, sends {@code signal} by running {@code kill} with {@code target(pid)}.
   */
  private static Child runAndSignal(boolean ownSession, String signal,
      java.util.function.LongFunction<String> target, List<String> args) throws Exception {
    Path script = Path.of("..", "scripts", "demo");
    Assumptions.assumeTrue(Files.isExecutable(script), "run from fadam-tf-tests/");
    List<String> cmd = new ArrayList<>();
    if (ownSession) { // its own process group, as a terminal's foreground job: Ctrl-C reaches all
      Assumptions.assumeTrue(Files.isExecutable(Path.of("/usr/bin/setsid"))
          || Files.isExecutable(Path.of("/bin/setsid")), "setsid (util-linux) is needed");
      cmd.add("setsid");
    }
    cmd.addAll(List.of("bash", script.toString()));
    cmd.addAll(args);
    ProcessBuilder pb = new ProcessBuilder(cmd);
    pb.environment().put("FADAM_CLASSPATH", System.getProperty("java.class.path"));
    Process p = pb.start();
    p.getOutputStream().close();
    StringBuffer err = new StringBuffer();
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    Thread errReader = copy(p.getErrorStream(), err);
    Thread outReader = new Thread(() -> {
      try {
        p.getInputStream().transferTo(out);
      } catch (IOException e) {
        // the process is gone
      }
    });
    outReader.start();
    try {
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(120);
      while (!err.toString().contains("FAdam  step")) {
        if (!p.isAlive() || System.nanoTime() > deadline) {
          fail("no progress line from scripts/demo " + String.join(" ", args) + ":\n" + err);
        }
        Thread.sleep(20);
      }
      Process kill = new ProcessBuilder("kill", "-" + signal, "--", target.apply(p.pid()))
          .inheritIO().start();
      assertEquals(0, kill.waitFor(), "kill failed");
      if (!p.waitFor(60, TimeUnit.SECONDS)) {
        fail("scripts/demo did not stop within 60 s of " + signal + ":\n" + err);
      }
    } finally {
      p.destroyForcibly();
    }
    errReader.join();
    outReader.join();
    return new Child(p.exitValue(), out.toString(StandardCharsets.UTF_8), err.toString());
  }

  private static Thread copy(InputStream in, StringBuffer to) {
    Thread t = new Thread(() -> {
      byte[] buf = new byte[4096];
      try {
        for (int n; (n = in.read(buf)) > 0; ) {
          to.append(new String(buf, 0, n, StandardCharsets.UTF_8));
        }
      } catch (IOException e) {
        // the process is gone
      }
    });
    t.start();
    return t;
  }

  /** Hidden temporary files or directories that an atomic write left behind. */
  private static List<Path> leftovers(Path dir) throws IOException {
    try (Stream<Path> s = Files.walk(dir)) {
      return s.filter(f -> f.getFileName().toString().startsWith(".")
          && f.getFileName().toString().contains(".tmp-")).toList();
    }
  }

  @Test
  void ctrlCSavesTheRunWritesEveryOutputAndResumeContinuesIt(@TempDir Path tmp) throws Exception {
    Path out = tmp.resolve("out");
    Path sv = tmp.resolve("sv");
    List<String> args = new ArrayList<>(List.of("--steps", "" + MANY, "--optimizers",
        "fadam,adam", "--progress", "--out", out.toString(), "--save", sv.toString()));
    args.addAll(TINY);
    // Ctrl-C: SIGINT to the whole process group (bash, the JVM and the stderr filter).
    Child c = runAndSignal(true, "INT", pid -> "-" + pid, args);

    assertEquals(130, c.status(), c.err());
    Matcher m = Pattern.compile("demo: stopped by SIGINT \\(FAdam at step (\\d+) of " + MANY
        + "\\); the FAdam run is saved at step \\1 in " + Pattern.quote(sv.toString())
        + ": continue it with scripts/demo --resume " + Pattern.quote(sv.toString())
        + " --steps (\\d+) --out " + Pattern.quote(out.toString()) + "\n").matcher(c.err());
    assertTrue(m.find(), c.err());
    long k = Long.parseLong(m.group(1));
    assertEquals(MANY - k, Long.parseLong(m.group(2)));
    assertTrue(c.out().contains("saved the FAdam run to " + sv), c.out());

    // The saved run is whole and says step k; the outputs hold FAdam's rows up to k, Adam none.
    Demo.SavedRun saved = Demo.SavedRun.load(sv);
    assertEquals(k, saved.step());
    List<ResultsCsv.Row> rows = ResultsCsv.read(out.resolve(Demo.CSV));
    assertTrue(rows.stream().allMatch(r -> r.optimizer().equals("FAdam")), rows.toString());
    assertEquals(k, rows.get(rows.size() - 1).step());
    assertEquals(0, rows.get(0).step());
    assertTrue(ImageIO.read(out.resolve(Demo.PNG).toFile()).getWidth() > 0);
    assertTrue(Files.readString(out.resolve(Demo.MARKDOWN)).contains("Stopped by SIGINT"));
    assertEquals(k, Demo.SavedRun.load(out.resolve(Demo.SAVED_MODEL)).step());
    assertEquals(List.of(), leftovers(tmp));

    // --resume continues from step k, appending to the same CSV.
    Demo.Report resumed = Demo.run(Demo.parse("--resume", sv.toString(), "--steps", "3",
            "--eval-every", "50", "--out", out.toString()),
        new PrintStream(OutputStream.nullOutputStream(), true, StandardCharsets.UTF_8),
        new Progress(System.err, false, System::nanoTime));
    assertEquals(3, resumed.trainLosses().get(Algorithm.FADAM).length);
    List<ResultsCsv.Row> after = ResultsCsv.read(out.resolve(Demo.CSV));
    assertEquals(rows, after.subList(0, rows.size()));
    assertEquals(List.of(k + 3), after.subList(rows.size(), after.size()).stream()
        .map(ResultsCsv.Row::step).toList());
  }

  @Test
  void sigtermToTheScriptAloneReachesTheJvm(@TempDir Path tmp) throws Exception {
    Path out = tmp.resolve("out");
    List<String> args = new ArrayList<>(List.of("--steps", "" + MANY, "--optimizers", "fadam",
        "--progress", "--out", out.toString()));
    args.addAll(TINY);
    // kill PID: bash alone gets it, and passes it on to the JVM.
    Child c = runAndSignal(false, "TERM", Long::toString, args);

    assertEquals(143, c.status(), c.err());
    Matcher m = Pattern.compile("demo: stopped by SIGTERM \\(FAdam at step (\\d+) of " + MANY
        + "\\); the FAdam run is saved at step \\1 in " + Pattern.quote(
            out.resolve(Demo.SAVED_MODEL).toString())).matcher(c.err());
    assertTrue(m.find(), c.err());
    assertEquals(Long.parseLong(m.group(1)),
        Demo.SavedRun.load(out.resolve(Demo.SAVED_MODEL)).step());
  }

  @Test
  void aStopBetweenOptimizersLeavesNoRowOfTheOneNotTrained(@TempDir Path tmp) throws Exception {
    Path out = tmp.resolve("out");
    StopSignal stop = StopSignal.none();
    ByteArrayOutputStream err = new ByteArrayOutputStream();
    // The line FAdam's end prints is the moment to stop: before Adam's first step.
    PrintStream stdout = new PrintStream(OutputStream.nullOutputStream(), true,
        StandardCharsets.UTF_8) {
      @Override
      public PrintStream printf(java.util.Locale l, String format, Object... args) {
        if (format.startsWith("%-10s  %d steps")) {
          stop.request("SIGINT", 2);
        }
        return this;
      }
    };
    List<String> args = new ArrayList<>(List.of("--steps", "5", "--optimizers", "fadam,adam",
        "--out", out.toString(), "--no-xla"));
    args.addAll(TINY);
    Demo.Report r = Demo.run(Demo.parse(args.toArray(new String[0])), stdout,
        new PrintStream(err, true, StandardCharsets.UTF_8),
        new Progress(System.err, false, System::nanoTime), stop);

    assertEquals(List.of("FAdam"), r.table().rows().stream()
        .map(ResultsTable.Row::optimizer).toList());
    List<ResultsCsv.Row> rows = ResultsCsv.read(out.resolve(Demo.CSV));
    assertTrue(rows.stream().noneMatch(x -> x.optimizer().equals("Adam")), rows.toString());
    assertEquals(5, rows.get(rows.size() - 1).step());
    String message = err.toString(StandardCharsets.UTF_8);
    assertTrue(message.startsWith("demo: stopped by SIGINT (before Adam); the FAdam run had"
        + " finished and is saved in " + out.resolve(Demo.SAVED_MODEL)), message);
  }

  @Test
  void aStopBeforeTheFirstStepWritesNothing(@TempDir Path tmp) throws Exception {
    Path out = tmp.resolve("out");
    StopSignal stop = StopSignal.none();
    stop.request("SIGTERM", 15);
    ByteArrayOutputStream err = new ByteArrayOutputStream();
    Demo.Report r = Demo.run(Demo.parse("--steps", "5", "--optimizers", "fadam", "--out",
            out.toString(), "--no-xla", "--embed", "8", "--hidden", "16"),
        new PrintStream(OutputStream.nullOutputStream(), true, StandardCharsets.UTF_8),
        new PrintStream(err, true, StandardCharsets.UTF_8),
        new Progress(System.err, false, System::nanoTime), stop);
    assertTrue(r.rows().isEmpty() && r.savedModel().isEmpty(), r.toString());
    assertEquals("demo: stopped by SIGTERM before FAdam; nothing written\n",
        err.toString(StandardCharsets.UTF_8));
    try (Stream<Path> files = Files.list(out)) {
      assertEquals(List.of(), files.toList());
    }
    assertEquals(143, stop.exitStatus());
  }

  @Test
  void aResumedRunDropsTheRowsOfOptimizersThatNeverTrained() {
    List<ResultsCsv.Row> earlier = List.of(
        new ResultsCsv.Row("FAdam", 0, 4, 4), new ResultsCsv.Row("FAdam", 50, 3, 3),
        new ResultsCsv.Row("FAdam", 100, 2, 2), new ResultsCsv.Row("Adam", 0, 4, 4),
        new ResultsCsv.Row("Adam", 50, 3, 3), new ResultsCsv.Row("FAdafactor", 0, 4, 4));
    // FAdam's rows after the saved step belong to another continuation; FAdafactor's lone step-0
    // row is from a run stopped before its first step.
    assertEquals(List.of(earlier.get(0), earlier.get(1), earlier.get(3), earlier.get(4)),
        Demo.keptRows(earlier, 50));
    assertFalse(Demo.keptRows(earlier, 100).contains(earlier.get(5)));
  }
}
