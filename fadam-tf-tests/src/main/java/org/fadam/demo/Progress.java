package org.fadam.demo;

import java.io.Console;
import java.io.PrintStream;
import java.lang.reflect.Method;
import java.util.Locale;
import java.util.concurrent.TimeUnit;
import java.util.function.LongSupplier;

/**
 * A live one-line progress display for one optimizer's training run, rewritten in place with a
 * carriage return:
 *
 * <pre>
 * FAdam  step 1200/3000  loss 1.8234  52.1k tok/s  ETA 1m05s
 * </pre>
 *
 * It is active only on an interactive terminal ({@link #interactive()}) or when forced,
 * so logs and pipes stay clean; inactive, every method does nothing. Updates are throttled to one
 * per {@value #MIN_INTERVAL_MILLIS} ms, the last one always shown by {@link #end()}, which ends the
 * line. Tokens/s and ETA are measured from {@link #begin}.
 */
public final class Progress {

  /** Smallest interval between two printed updates (about 5 per second). */
  public static final long MIN_INTERVAL_MILLIS = 200;

  private final PrintStream out;
  private final boolean enabled;
  private final LongSupplier nanoClock;

  private String optimizer = "";
  private long totalSteps;
  private long tokensPerStep;
  private long startNanos;
  private long startStep;
  private long lastPrintNanos;
  private boolean printedSinceBegin;
  private int lastLength;
  private long step;
  private double loss = Double.NaN;

  /** Progress on {@code System.err}, active if {@link #interactive()} or {@code force} is set. */
  public static Progress toStderr(boolean force) {
    return new Progress(System.err, force || stderrIsTerminal(), System::nanoTime);
  }

  /**
   * Whether standard error is a terminal: the launcher's word when it gives one
   * ({@code FADAM_STDERR_TTY=1} or {@code 0}, set by scripts/demo from {@code [ -t 2 ]}), else
   * {@link #interactive()}.
   */
  static boolean stderrIsTerminal() {
    String tty = System.getenv("FADAM_STDERR_TTY");
    return tty == null ? interactive() : tty.equals("1");
  }

  /**
   * Whether the JVM runs on an interactive terminal: {@code System.console() != null}, and, on
   * JDK 22 and later (where {@code System.console()} is non-null even when redirected),
   * {@code Console.isTerminal()}. The JDK tests standard input and output, not standard error.
   */
  public static boolean interactive() {
    Console console = System.console();
    if (console == null) {
      return false;
    }
    try {
      Method isTerminal = Console.class.getMethod("isTerminal");
      return Boolean.TRUE.equals(isTerminal.invoke(console));
    } catch (NoSuchMethodException e) {
      return true; // JDK < 22: a console exists only on a terminal
    } catch (ReflectiveOperationException | RuntimeException e) {
      return false;
    }
  }

  /** Progress on {@code out}, active iff {@code enabled}, timed by {@code nanoClock} (tests). */
  Progress(PrintStream out, boolean enabled, LongSupplier nanoClock) {
    this.out = out;
    this.enabled = enabled;
    this.nanoClock = nanoClock;
  }

  /** Whether anything is printed. */
  public boolean enabled() {
    return enabled;
  }

  /**
   * Starts a run: {@code totalSteps} steps of {@code tokensPerStep} tokens each (for tokens/s).
   * The run starts at step 0; {@link #update} reports completed steps.
   */
  public void begin(String optimizer, long totalSteps, long tokensPerStep) {
    begin(optimizer, 0, totalSteps, tokensPerStep);
  }

  /** As {@link #begin(String, long, long)}, resuming at {@code startStep} completed steps. */
  public void begin(String optimizer, long startStep, long totalSteps, long tokensPerStep) {
    this.optimizer = optimizer;
    this.startStep = startStep;
    this.step = startStep;
    this.totalSteps = totalSteps;
    this.tokensPerStep = tokensPerStep;
    this.loss = Double.NaN;
    this.printedSinceBegin = false;
    this.lastLength = 0;
    if (enabled) {
      this.startNanos = nanoClock.getAsLong();
    }
  }

  /** Records that {@code step} steps are done and the latest training loss; prints if due. */
  public void update(long step, double loss) {
    this.step = step;
    this.loss = loss;
    if (!enabled) {
      return;
    }
    long now = nanoClock.getAsLong();
    if (!printedSinceBegin || now - lastPrintNanos >= TimeUnit.MILLISECONDS.toNanos(
        MIN_INTERVAL_MILLIS)) {
      print(now);
    }
  }

  /** Prints the last recorded state (always) and ends the line. */
  public void end() {
    if (!enabled) {
      return;
    }
    print(nanoClock.getAsLong());
    out.print('\n');
    out.flush();
    lastLength = 0;
  }

  private void print(long now) {
    String line = line(now);
    // Blank out what is left of a longer previous line.
    String pad = line.length() < lastLength ? " ".repeat(lastLength - line.length()) : "";
    out.print('\r' + line + pad);
    out.flush();
    lastLength = line.length();
    lastPrintNanos = now;
    printedSinceBegin = true;
  }

  /** The progress text at time {@code now}, without the carriage return. */
  String line(long now) {
    double seconds = (now - startNanos) / 1e9;
    long done = step - startStep;
    StringBuilder sb = new StringBuilder();
    sb.append(optimizer).append("  step ").append(step).append('/').append(totalSteps);
    sb.append("  loss ").append(String.format(Locale.ROOT, "%.4f", loss));
    if (done > 0 && seconds > 0) {
      sb.append("  ").append(humanRate(done * (double) tokensPerStep / seconds)).append(" tok/s");
      double eta = Math.max(0, totalSteps - step) * seconds / done;
      sb.append("  ETA ").append(duration(eta));
    } else {
      sb.append("  - tok/s  ETA -");
    }
    return sb.toString();
  }

  /** {@code 950}, {@code 12.3k}, {@code 4.56M}. */
  static String humanRate(double perSecond) {
    if (perSecond >= 1e6) {
      return String.format(Locale.ROOT, "%.2fM", perSecond / 1e6);
    }
    if (perSecond >= 1e3) {
      return String.format(Locale.ROOT, "%.1fk", perSecond / 1e3);
    }
    return String.format(Locale.ROOT, "%.0f", perSecond);
  }

  /** {@code 42s}, {@code 3m05s}, {@code 2h07m}. */
  static String duration(double seconds) {
    long s = Math.round(seconds);
    if (s < 60) {
      return s + "s";
    }
    if (s < 3600) {
      return String.format(Locale.ROOT, "%dm%02ds", s / 60, s % 60);
    }
    return String.format(Locale.ROOT, "%dh%02dm", s / 3600, (s % 3600) / 60);
  }
}
