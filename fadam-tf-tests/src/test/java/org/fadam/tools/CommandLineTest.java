package org.fadam.tools;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.lang.reflect.Modifier;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.function.Supplier;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.fadam.demo.Demo;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.OptionSpec;

/**
 * Every command-line tool keeps one contract (see {@link Tool}): {@code --help} with the defaults,
 * {@code --version} from the POM, exit status 2 and one line on stderr for a usage error, 1 and one
 * line for a failure; and the scripts, thin wrappers, keep TensorFlow's INFO logging out unless
 * {@code --verbose}.
 */
class CommandLineTest {

  /**
   * Every tool: each concrete {@link Tool} among this module's classes (a new tool is found here
   * without being listed), by its command name.
   */
  static Stream<Arguments> tools() throws IOException {
    Path classes = Path.of("target", "classes");
    Assumptions.assumeTrue(Files.isDirectory(classes), "run from fadam-tf-tests/ after compiling");
    List<Arguments> tools = new ArrayList<>();
    try (Stream<Path> files = Files.walk(classes)) {
      for (Path f : files.filter(f -> f.toString().endsWith(".class")).sorted().toList()) {
        String name = classes.relativize(f).toString().replace('/', '.').replaceAll("\\.class$", "");
        Class<?> c;
        try {
          c = Class.forName(name, false, CommandLineTest.class.getClassLoader());
        } catch (ClassNotFoundException e) {
          throw new AssertionError(e);
        }
        if (Tool.class.isAssignableFrom(c) && !Modifier.isAbstract(c.getModifiers())) {
          Supplier<Tool> make = () -> {
            try {
              return (Tool) c.getDeclaredConstructor().newInstance();
            } catch (ReflectiveOperationException e) {
              throw new AssertionError(c + " needs a no-argument constructor", e);
            }
          };
          tools.add(Arguments.of(c.getAnnotation(Command.class).name(), make));
        }
      }
    }
    List<Object> names = tools.stream().map(a -> a.get()[0]).toList();
    assertTrue(names.containsAll(List.of("demo", "fadam-trace", "xla-dump")), names.toString());
    return tools.stream();
  }

  /** The scripts that run a tool (fadam_run CLASS), by name. */
  static List<String> toolScripts() throws IOException {
    Path dir = Path.of("..", "scripts");
    Assumptions.assumeTrue(Files.isDirectory(dir), "run from fadam-tf-tests/");
    Pattern run = Pattern.compile("(?m)^\\s*fadam_run\\s+org\\.fadam\\.");
    List<String> scripts = new ArrayList<>();
    try (Stream<Path> files = Files.list(dir)) {
      for (Path f : files.sorted().toList()) {
        if (!f.getFileName().toString().endsWith(".sh")
            && run.matcher(Files.readString(f)).find()) {
          scripts.add(f.getFileName().toString());
        }
      }
    }
    assertTrue(scripts.containsAll(List.of("demo", "fadam-trace", "xla-dump")), scripts.toString());
    return scripts;
  }

  /** What one run of a tool printed, and its exit status. */
  record Run(int status, String out, String err) {}

  static Run run(Tool tool, String... args) {
    StringWriter out = new StringWriter();
    StringWriter err = new StringWriter();
    int status = Tool.execute(tool, new PrintWriter(out), new PrintWriter(err), args);
    return new Run(status, out.toString(), err.toString());
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("tools")
  void helpListsEveryOptionWithItsDefault(String name, Supplier<Tool> tool) {
    Run r = run(tool.get(), "--help");
    assertEquals(0, r.status(), r.err());
    assertTrue(r.out().startsWith("Usage: " + name + " "), r.out());
    for (String flag : List.of("--help", "--version", "--verbose")) {
      assertTrue(r.out().contains(flag), flag + " missing from\n" + r.out());
    }
    for (OptionSpec o : Tool.commandLine(tool.get()).getCommandSpec().options()) {
      assertTrue(r.out().contains(o.longestName()), o.longestName() + " missing from\n" + r.out());
      if (o.defaultValue() != null) {
        assertTrue(r.out().contains("Default: " + o.defaultValue()),
            "no default shown for " + o.longestName() + " in\n" + r.out());
      }
    }
    assertEquals("", r.err());
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("tools")
  void versionIsThePomVersion(String name, Supplier<Tool> tool) {
    Run r = run(tool.get(), "--version");
    assertEquals(0, r.status(), r.err());
    String pom = System.getProperty("fadam.version");
    Assumptions.assumeTrue(pom != null, "run by Maven (which passes the POM's version)");
    assertEquals(name + " (fadam-tf " + pom + ", TensorFlow Java 1.1.0, Java "
        + System.getProperty("java.version") + ")", r.out().strip());
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("tools")
  void aBadFlagIsAUsageErrorOfOneLine(String name, Supplier<Tool> tool) {
    for (String[] args : List.of(new String[] {"--frobnicate"}, new String[] {"--verbose=2"})) {
      Run r = run(tool.get(), args);
      assertEquals(Tool.USAGE, r.status(), String.join(" ", args));
      assertEquals("", r.out());
      assertEquals(1, r.err().lines().count(), r.err());
      assertTrue(r.err().startsWith(name + ": "), r.err());
    }
  }

  @Test
  void badValuesAndOptionsThatCannotGoTogetherAreUsageErrors() {
    Map<String, String> expected = Map.of(
        "--steps 0", "demo: Invalid value for option '--steps': must be an integer >= 1; got \"0\"",
        "--optimizers fadam,sgd", "demo: Invalid value for option '--optimizers'",
        "--lr nan", "demo: Invalid value for option '--lr': must be a number in (0, ∞); got \"nan\"",
        "--resume r --seed 3", "demo: --seed cannot be combined with --resume",
        "--save s --optimizers adam", "demo: --save exports the FAdam run");
    expected.forEach((args, message) -> {
      Run r = run(new Demo.Cli(), args.split(" "));
      assertEquals(Tool.USAGE, r.status(), args);
      assertTrue(r.err().startsWith(message), args + " -> " + r.err());
      assertEquals(1, r.err().lines().count(), r.err());
    });
    Run r = run(new XlaDump(), "--optimizer", "sgd");
    assertEquals(Tool.USAGE, r.status());
    assertTrue(r.err().startsWith("xla-dump: Invalid value for option '--optimizer'"), r.err());
    r = run(new TraceTool(), "no-such-case.json");
    assertEquals(Tool.USAGE, r.status());
    assertEquals("fadam-trace: no case file no-such-case.json (see fadam-trace --help)",
        r.err().strip());
  }

  @Test
  void aFailureExitsOneWithOneLine(@TempDir Path tmp) throws IOException {
    Path bad = Files.writeString(tmp.resolve("case.json"), "{\"optimizer\": \"sgd\"}");
    Run r = run(new TraceTool(), bad.toString());
    assertEquals(Tool.FAILURE, r.status());
    assertEquals("fadam-trace: `optimizer` must be one of fadam, fadafactor, adam, adafactor; got sgd",
        r.err().strip());
    // --verbose adds the stack trace.
    r = run(new TraceTool(), "--verbose", bad.toString());
    assertEquals(Tool.FAILURE, r.status());
    assertTrue(r.err().contains("at org.fadam."), r.err());

    Path notARun = Files.createDirectories(tmp.resolve("not-a-run"));
    r = run(new Demo.Cli(), "--resume", notARun.toString(), "--out", tmp.resolve("o").toString());
    assertEquals(Tool.FAILURE, r.status());
    assertTrue(r.err().startsWith("demo: " + notARun + " is not a saved demo run"), r.err());
  }

  // --- the scripts, as a user runs them ---------------------------------------------------------

  private static final Pattern TF_INFO = Pattern.compile(
      "(?m)^(I\\d{4} |\\d{4}-\\d\\d-\\d\\d [\\d:.]+: I |WARNING: All log messages before absl)");

  private static final String CASE =
      "{\"optimizer\": \"fadam\", \"theta\": [1, 2], \"grads\": [[0.1, 0.2]]}";

  /** Runs scripts/NAME with this JVM's class path (no build), stdin {@code in}. */
  static Run script(String name, String in, String... args) throws IOException, InterruptedException {
    Path script = Path.of("..", "scripts", name);
    Assumptions.assumeTrue(Files.isExecutable(script), "run from fadam-tf-tests/");
    List<String> cmd = new ArrayList<>(List.of("bash", script.toString()));
    cmd.addAll(List.of(args));
    ProcessBuilder pb = new ProcessBuilder(cmd);
    pb.environment().put("FADAM_CLASSPATH", System.getProperty("java.class.path"));
    pb.environment().remove("TF_CPP_MIN_LOG_LEVEL");
    Process p = pb.start();
    try (var stdin = p.getOutputStream()) {
      stdin.write(in.getBytes(java.nio.charset.StandardCharsets.UTF_8));
    }
    var err = new java.util.concurrent.CompletableFuture<String>();
    Thread t = new Thread(() -> {
      try {
        err.complete(new String(p.getErrorStream().readAllBytes(),
            java.nio.charset.StandardCharsets.UTF_8));
      } catch (IOException e) {
        err.completeExceptionally(e);
      }
    });
    t.start();
    String out = new String(p.getInputStream().readAllBytes(),
        java.nio.charset.StandardCharsets.UTF_8);
    int status = p.waitFor();
    return new Run(status, out, err.join());
  }

  @Test
  void scriptsRunQuietUnlessVerbose() throws Exception {
    Run quiet = script("fadam-trace", CASE);
    assertEquals(0, quiet.status(), quiet.err());
    assertTrue(quiet.out().startsWith("{\"thetas\":[[0.99989"), quiet.out());
    assertFalse(TF_INFO.matcher(quiet.err()).find(), "TensorFlow INFO lines:\n" + quiet.err());
    // The same run with --verbose shows them: the check above can fail.
    Run verbose = script("fadam-trace", CASE, "--verbose");
    assertEquals(0, verbose.status(), verbose.err());
    assertEquals(quiet.out(), verbose.out());
    assertTrue(TF_INFO.matcher(verbose.err()).find(), "no INFO line with --verbose:\n" + verbose.err());
  }

  @Test
  void scriptsAreThinWrappersOfTheTools() throws Exception {
    for (String name : toolScripts()) {
      Run help = script(name, "", "--help");
      assertEquals(0, help.status(), name + ": " + help.err());
      assertTrue(help.out().startsWith("Usage: " + name + " "), help.out());
      Run bad = script(name, "", "--frobnicate");
      assertEquals(Tool.USAGE, bad.status(), name);
      assertEquals(name + ": Unknown option: '--frobnicate' (see " + name + " --help)",
          bad.err().strip());
    }
  }
}
