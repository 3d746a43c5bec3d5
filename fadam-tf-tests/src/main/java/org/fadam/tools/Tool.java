package org.fadam.tools;

import java.io.IOException;
import java.io.InputStream;
import java.io.PrintWriter;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.util.Properties;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.ITypeConverter;
import picocli.CommandLine.IVersionProvider;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Spec;
import picocli.CommandLine.TypeConversionException;

/**
 * The base of every command-line tool of the project (picocli): {@code -h}/{@code --help} with
 * each option's default, {@code -V}/{@code --version} from the POM, {@code --verbose}, and one
 * exit-code contract — 0 success, 2 a usage error (one line on stderr), 1 a failure (one line on
 * stderr; the stack trace too with {@code --verbose}).
 *
 * <p>Writing a new tool:
 *
 * <pre>{@code
 * @Command(name = "bench", description = "What it does, in a sentence or two.")
 * public final class Bench extends Tool {
 *   @Option(names = "--steps", paramLabel = "N", defaultValue = "100",
 *       description = "steps to time")
 *   int steps;
 *
 *   @Override
 *   protected int run() throws Exception {
 *     if (steps < 1) {
 *       throw usageError("--steps must be >= 1; got " + steps); // exit 2
 *     }
 *     out().println("...");                                     // the tool's output
 *     return 0;                                                  // or throw: exit 1
 *   }
 *
 *   public static void main(String[] args) {
 *     exit(new Bench(), args);
 *   }
 * }
 * }</pre>
 *
 * and a thin script, {@code scripts/bench}: {@code . "$(dirname "$0")/lib.sh"; fadam_run
 * org.fadam.tools.Bench "$@"}. {@code fadam_run} builds the project once and keeps TensorFlow's
 * C++ INFO logging out of the way unless {@code --verbose} is among the arguments: it sets
 * {@code TF_CPP_MIN_LOG_LEVEL=1} before the JVM starts (TensorFlow reads it when its native
 * library loads, which no Java call can precede portably) and drops the absl INFO lines that
 * variable does not reach. Tests call {@link #execute(Tool, PrintWriter, PrintWriter, String...)}.
 *
 * <p>Keep the command name equal to the script's name and a no-argument constructor:
 * {@code CommandLineTest} finds every concrete subclass and every script that runs one, and checks
 * this contract for each (help lists every option with its default, version, exit statuses).
 */
@Command(mixinStandardHelpOptions = true, versionProvider = Tool.Version.class,
    showDefaultValues = true, sortOptions = false, usageHelpAutoWidth = true,
    descriptionHeading = "%n", parameterListHeading = "%nParameters:%n",
    optionListHeading = "%nOptions:%n")
public abstract class Tool implements Callable<Integer> {

  /** Exit status of a usage error. */
  public static final int USAGE = CommandLine.ExitCode.USAGE;
  /** Exit status of a failure. */
  public static final int FAILURE = CommandLine.ExitCode.SOFTWARE;

  @Option(names = "--verbose", order = 1000,
      description = "show TensorFlow's INFO logging and the stack trace of a failure")
  private boolean verbose;

  @Spec private CommandSpec spec;

  /**
   * The tool's work, once the command line is parsed.
   *
   * @return the exit status (0 on success)
   * @throws ParameterException from {@link #usageError} for a usage error (exit status 2)
   * @throws Exception any other failure (exit status 1, its message on stderr)
   */
  protected abstract int run() throws Exception;

  @Override
  public final Integer call() throws Exception {
    return run();
  }

  /** A usage error found after parsing (two options that cannot go together, …): exit status 2. */
  protected final ParameterException usageError(String message) {
    return new ParameterException(spec.commandLine(), message);
  }

  /** Whether {@code --verbose} was given. */
  protected final boolean verbose() {
    return verbose;
  }

  /** Whether the option (by one of its names) was on the command line, not defaulted. */
  protected final boolean given(String optionName) {
    return spec.commandLine().getParseResult().hasMatchedOption(optionName);
  }

  /** {@return the options given on the command line, by their longest names, in order} */
  protected final java.util.List<String> givenOptions() {
    return spec.commandLine().getParseResult().matchedOptions().stream()
        .map(o -> o.longestName()).toList();
  }

  /** Where the tool's output goes (stdout, or a test's writer). */
  protected final PrintWriter out() {
    return spec.commandLine().getOut();
  }

  /** Where the tool's messages go (stderr, or a test's writer). */
  protected final PrintWriter err() {
    return spec.commandLine().getErr();
  }

  /** The command line of {@code tool}, with the project's error handling and exit codes. */
  public static CommandLine commandLine(Tool tool) {
    CommandLine cl = new CommandLine(tool);
    cl.setParameterExceptionHandler((e, args) -> {
      CommandLine c = e.getCommandLine();
      c.getErr().println(c.getCommandName() + ": " + firstLine(e.getMessage()) + " (see "
          + c.getCommandName() + " --help)");
      c.getErr().flush();
      return USAGE;
    });
    cl.setExecutionExceptionHandler((e, c, parsed) -> {
      if (tool.verbose) {
        e.printStackTrace(c.getErr());
      }
      String message = e.getMessage() == null ? e.toString() : firstLine(e.getMessage());
      c.getErr().println(c.getCommandName() + ": " + message);
      c.getErr().flush();
      return FAILURE;
    });
    return cl;
  }

  /** Parses {@code args} and runs the tool, writing to {@code out} and {@code err}; the exit status. */
  public static int execute(Tool tool, PrintWriter out, PrintWriter err, String... args) {
    CommandLine cl = commandLine(tool);
    cl.setOut(out);
    cl.setErr(err);
    int status = cl.execute(args);
    out.flush();
    err.flush();
    return status;
  }

  /** The tool's {@code main}: runs it on stdout/stderr and exits with its status. */
  public static void exit(Tool tool, String[] args) {
    PrintWriter out = new PrintWriter(System.out, true, StandardCharsets.UTF_8);
    PrintWriter err = new PrintWriter(System.err, true, StandardCharsets.UTF_8);
    System.exit(execute(tool, out, err, args));
  }

  private static String firstLine(String s) {
    int nl = s.indexOf('\n');
    return nl < 0 ? s : s.substring(0, nl);
  }

  /** {@code --version}: the project's version from the POM (a filtered resource). */
  static final class Version implements IVersionProvider {
    @Override
    public String[] getVersion() {
      Properties p = properties();
      return new String[] {
        "${COMMAND-NAME} (fadam-tf " + p.getProperty("version") + ", TensorFlow Java "
            + p.getProperty("tensorflow.java") + ", Java " + System.getProperty("java.version") + ")"
      };
    }

    static Properties properties() {
      Properties p = new Properties();
      try (InputStream in = Tool.class.getResourceAsStream("version.properties")) {
        if (in == null) {
          throw new IllegalStateException("version.properties is missing from the classpath");
        }
        p.load(in);
      } catch (IOException e) {
        throw new UncheckedIOException(e);
      }
      return p;
    }
  }

  /** An integer option that must be at least 1. */
  public static final class PositiveInt implements ITypeConverter<Integer> {
    @Override
    public Integer convert(String value) {
      try {
        int v = Integer.parseInt(value.strip());
        if (v >= 1) {
          return v;
        }
      } catch (NumberFormatException e) {
        // reported below
      }
      throw new TypeConversionException("must be an integer >= 1; got \"" + value + "\"");
    }
  }

  /** A number option that must be in (0, ∞). */
  public static final class PositiveFiniteDouble implements ITypeConverter<Double> {
    @Override
    public Double convert(String value) {
      try {
        double v = Double.parseDouble(value.strip());
        if (v > 0 && v < Double.POSITIVE_INFINITY) {
          return v;
        }
      } catch (NumberFormatException e) {
        // reported below
      }
      throw new TypeConversionException("must be a number in (0, ∞); got \"" + value + "\"");
    }
  }

  /** The project's version, as the POM gives it. */
  public static String projectVersion() {
    return Version.properties().getProperty("version");
  }
}
