package org.fadam.tools;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.fadam.Algorithm;
import org.fadam.demo.Batches;
import org.fadam.demo.Demo;
import org.fadam.demo.DemoModel;
import org.fadam.demo.MarkovSource;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * Runs the demo model's XLA-compiled train step once, in a JVM started with
 * {@code XLA_FLAGS=--xla_dump_to=DIR}, and prints the HLO module files XLA wrote for it: the
 * evidence that forward pass, gradients and optimizer compiled as one program. Exit status 1 if
 * there are none. {@code scripts/xla-dump} sets the environment; TF reads it once, at load time.
 */
@Command(name = "xla-dump",
    description = {
      "Builds the demo model's fused train step (forward, gradients and optimizer in one"
          + " function) with XLA on, runs it once, and lists the HLO module files XLA dumped for it"
          + " into --out (created if needed; other files there are left alone). Exit status 1 if"
          + " XLA wrote none.",
      "The JVM must start with XLA_FLAGS=--xla_dump_to=DIR: scripts/xla-dump sets it from --out.",
      "With --replay SET it instead exports train steps for scripts/gpu-replay into --out (default"
          + " gpu-replay-in): per configuration the HLO module (NAME.hlo.pb), for checked ones the"
          + " inputs and this CPU's outputs after steps 1 and 3 (NAME.npz), and manifest.json"
          + " naming every HLO parameter and output. Sets: ci = FAdam and FAdafactor on one"
          + " 128x256 variable (float32, bfloat16) and the demo model's whole step with each;"
          + " gpu = those, the same for the baselines (the paper's Adam and Adafactor), and every"
          + " optimizer on one 4096x4096 variable (the HLO only, for timing). Each configuration"
          + " compiles in a"
          + " child JVM of its own."
    })
public final class XlaDump extends Tool {

  private static final Pattern DUMP_TO = Pattern.compile("--xla_dump_to=(\\S+)");

  @Option(names = "--out", paramLabel = "DIR", defaultValue = "xla-dump",
      description = "where XLA writes the HLO modules")
  private Path out;

  @Option(names = "--optimizer", paramLabel = "NAME", defaultValue = "fadam",
      converter = Demo.OptimizerConverter.class, description = "fadam, fadafactor, adam or adafactor")
  private Algorithm optimizer;

  @Option(names = "--replay", paramLabel = "SET",
      description = "ci or gpu: export steps for scripts/gpu-replay (see above)")
  private String replay;

  @Option(names = "--only", paramLabel = "NAME", split = ",",
      description = "with --replay: only these configurations (comma-separated)")
  private List<String> only = List.of();

  /** Entry point. */
  public static void main(String[] args) {
    exit(new XlaDump(), args);
  }

  @Override
  protected int run() throws IOException, InterruptedException {
    if (replay != null) {
      List<ReplayExport.Config> configs;
      try {
        configs = ReplayExport.select(ReplayExport.set(replay), only);
      } catch (IllegalArgumentException e) {
        throw usageError(e.getMessage());
      }
      Path dir = given("--out") ? out : Path.of("gpu-replay-in");
      ReplayExport.export(configs, dir, out());
      out().println("wrote " + configs.size() + " configurations and " + ReplayExport.MANIFEST + " to " + dir);
      return 0;
    }
    if (!only.isEmpty()) {
      throw usageError("--only needs --replay");
    }
    checkDumpFlag(out);
    Files.createDirectories(out);
    FileTime started = FileTime.fromMillis(System.currentTimeMillis() - 1000);
    String function;
    Demo.Settings demo = Demo.Options.defaults(out).settings(); // the default demo's model
    DemoModel.Config config = new DemoModel.Config(MarkovSource.DEFAULT_VOCAB_SIZE, demo.embed(),
        demo.hidden(), demo.learningRate(), demo.seed(), true);
    try (DemoModel model = DemoModel.create(optimizer, config)) {
      int[] stream = MarkovSource.createDefault().sample(demo.seed(), 4096);
      model.train(new Batches(stream, demo.batch(), DemoModel.CONTEXT, demo.seed()).next());
      function = model.step().functionName();
    }
    List<Path> modules = modules(out, function, started);
    if (modules.isEmpty()) {
      throw new IllegalStateException("no HLO module for " + function + " in " + out
          + " (was XLA_FLAGS set before the JVM started?)");
    }
    out().println("HLO modules of the " + optimizer.displayName() + " train step ("
        + function + "):");
    modules.forEach(out()::println);
    return 0;
  }

  /** The HLO text files of {@code function} written since {@code since}, sorted by name. */
  static List<Path> modules(Path dir, String function, FileTime since) throws IOException {
    try (Stream<Path> files = Files.list(dir)) {
      return files.filter(p -> {
        String name = p.getFileName().toString();
        try {
          return name.contains(function) && name.endsWith(".txt")
              && Files.getLastModifiedTime(p).compareTo(since) >= 0;
        } catch (IOException e) {
          return false;
        }
      }).sorted().toList();
    }
  }

  /** Fails unless XLA_FLAGS dumps into {@code out}: TF reads it only when it loads. */
  private void checkDumpFlag(Path out) {
    String flags = System.getenv("XLA_FLAGS");
    Matcher m = DUMP_TO.matcher(flags == null ? "" : flags);
    if (!m.find()) {
      throw usageError("XLA_FLAGS does not contain --xla_dump_to=" + out
          + "; it must be set before the JVM starts (scripts/xla-dump does it)");
    }
    Path target = Path.of(m.group(1)).toAbsolutePath().normalize();
    if (!target.equals(out.toAbsolutePath().normalize())) {
      throw usageError(
          "XLA_FLAGS dumps to " + target + ", not to --out " + out.toAbsolutePath().normalize());
    }
  }
}
