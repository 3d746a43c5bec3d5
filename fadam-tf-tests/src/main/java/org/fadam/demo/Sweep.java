package org.fadam.demo;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.ZoneOffset;
import java.time.ZonedDateTime;
import java.time.format.DateTimeFormatter;
import java.time.temporal.ChronoUnit;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicInteger;
import org.fadam.Algorithm;

/**
 * The learning-rate sweep of {@code scripts/demo --sweep}: every optimizer at every learning rate
 * and seed, each point exactly the run {@code scripts/demo --optimizers O --lr X --steps N --seed
 * S} makes (the same {@link Demo#train} on the same {@link DemoData}), so one point can be checked
 * against a plain run. Writes {@value #CSV}, {@value #PNG} and {@value #MARKDOWN} into the output
 * directory.
 *
 * <p>Points run on {@code workers} threads, each with its own graph and session; TensorFlow's
 * kernels share the process's thread pools, whose size (not the load) decides how work is split,
 * so a point's numbers do not depend on what else runs beside it.
 */
public final class Sweep {

  /** Default learning rates: a log grid from 1e-4 to 3e-2, two per decade. */
  public static final List<Double> DEFAULT_LRS = List.of(1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2);
  /** Default number of seeds (seeds 1..N). */
  public static final int DEFAULT_SEEDS = 3;
  /** Default steps per point: fewer than the plain demo's, so the default sweep fits in 15 minutes. */
  public static final int DEFAULT_STEPS = 1000;
  /** Default evaluation interval of the sweep, steps. */
  public static final int DEFAULT_EVAL_EVERY = 500;
  /** Default steps per point of {@code --model transformer}. */
  public static final int DEFAULT_TRANSFORMER_STEPS = 1000;
  /** Default evaluation interval of {@code --model transformer}, steps. */
  public static final int DEFAULT_TRANSFORMER_EVAL_EVERY = 500;
  /**
   * Default worker threads: both cores of the reference machine. Measured there (2026-11-28, other
   * jobs loading the machine, load average 10 to 17): 4 runs of 400 steps took 64 s and 69 s on one
   * worker, 45 s and 59 s on two, with the same sweep.csv byte for byte.
   */
  public static final int DEFAULT_WORKERS = 2;

  /** The files a sweep writes into its output directory. */
  static final String CSV = "sweep.csv";
  static final String PNG = "sweep.png";
  static final String MARKDOWN = "sweep.md";

  private Sweep() {}

  /**
   * What to sweep.
   *
   * @param optimizers the optimizers, in order
   * @param lrs the learning rates, in order
   * @param seeds the seeds 1..seeds
   * @param steps steps per point
   * @param evalEvery evaluation interval, steps
   * @param batch rows per step
   * @param embed embedding width
   * @param hidden hidden width
   * @param xla whether train steps are XLA-compiled
   * @param workers points trained at the same time
   * @param out the output directory
   * @param training the schedule, weight-decay mask and accumulation of every point
   * @param transformer the transformer's shape, or null for the MLP
   * @param text the transformer's {@code --text} file, or null for the Markov source
   */
  public record Options(List<Algorithm> optimizers, List<Double> lrs, int seeds, int steps,
      int evalEvery, int batch, int embed, int hidden, boolean xla, int workers, Path out,
      DemoModel.Training training, TransformerModel.Architecture transformer, Path text) {

    /** Options of the MLP on the Markov source. */
    public Options(List<Algorithm> optimizers, List<Double> lrs, int seeds, int steps,
        int evalEvery, int batch, int embed, int hidden, boolean xla, int workers, Path out,
        DemoModel.Training training) {
      this(optimizers, lrs, seeds, steps, evalEvery, batch, embed, hidden, xla, workers, out,
          training, null, null);
    }

    /** Options whose points train as {@link DemoModel.Training#DEFAULT}. */
    public Options(List<Algorithm> optimizers, List<Double> lrs, int seeds, int steps,
        int evalEvery, int batch, int embed, int hidden, boolean xla, int workers, Path out) {
      this(optimizers, lrs, seeds, steps, evalEvery, batch, embed, hidden, xla, workers, out,
          DemoModel.Training.DEFAULT);
    }

    /** Checks every field. */
    public Options {
      optimizers = List.copyOf(optimizers);
      lrs = List.copyOf(lrs);
      if (optimizers.isEmpty()) {
        throw new IllegalArgumentException("`optimizers` must not be empty");
      }
      if (lrs.isEmpty()) {
        throw new IllegalArgumentException("`lrs` must not be empty");
      }
      for (double lr : lrs) {
        if (!(lr > 0 && lr < Double.POSITIVE_INFINITY)) {
          throw new IllegalArgumentException("every learning rate must be in (0, ∞); got " + lr);
        }
      }
      for (int v : new int[] {seeds, steps, evalEvery, batch, embed, hidden, workers}) {
        if (v < 1) {
          throw new IllegalArgumentException(
              "seeds, steps, evalEvery, batch, embed, hidden and workers must be >= 1; got " + v);
        }
      }
    }

    /** The defaults, writing to {@code out}. */
    public static Options defaults(Path out) {
      return new Options(List.of(Algorithm.values()), DEFAULT_LRS, DEFAULT_SEEDS, DEFAULT_STEPS,
          DEFAULT_EVAL_EVERY, Demo.DEFAULT_BATCH, Demo.DEFAULT_EMBED, Demo.DEFAULT_HIDDEN, true,
          DEFAULT_WORKERS, out);
    }

    /** The plain demo's options of one point (what {@code scripts/demo --lr X --seed S ...} runs). */
    Demo.Options point(Algorithm optimizer, double lr, long seed) {
      return new Demo.Options(new Demo.Settings(seed, batch, lr, embed, hidden, training, transformer, text), steps,
          List.of(optimizer), out, xla, null, null, evalEvery, false, null);
    }
  }

  /** One point of the grid. */
  public record Point(Algorithm optimizer, double lr, long seed) {}

  /**
   * One trained point: its rows (every evaluation) and its wall time.
   *
   * @param point the point
   * @param rows its evaluations, step 0 first
   * @param seconds wall time of the point (model build, compile, training, evaluations)
   */
  public record Result(Point point, List<SweepCsv.Row> rows, double seconds) {
    /** The held-out loss at the last step. */
    public double finalHeldout() {
      return rows.get(rows.size() - 1).heldoutLoss();
    }
  }

  /** What a sweep produced: the results, the summary table and its wall time. */
  public record Report(List<Result> results, SweepTable table, double seconds) {}

  /** Runs the sweep, writes the CSV, the plot and the table, and prints progress and the table. */
  public static Report run(Options o, PrintStream out) throws IOException {
    Files.createDirectories(o.out());
    String loadBefore = loadAverage();
    List<Point> points = new ArrayList<>();
    for (long seed = 1; seed <= o.seeds(); seed++) { // a seed's data is built once, used by all
      for (Algorithm opt : o.optimizers()) {
        for (double lr : o.lrs()) {
          points.add(new Point(opt, lr, seed));
        }
      }
    }
    out.printf(Locale.ROOT, "sweep: %d optimizers x %d learning rates x %d seeds = %d runs of %d"
        + " steps, %d at a time%n", o.optimizers().size(), o.lrs().size(), o.seeds(),
        points.size(), o.steps(), o.workers());
    long t0 = System.nanoTime();
    Map<Long, DemoData> data = new ConcurrentHashMap<>();
    // the data of seed 1 now: a bad --text fails before any training
    data.put(1L, DemoData.of(o.point(o.optimizers().get(0), o.lrs().get(0), 1).settings()));
    AtomicInteger done = new AtomicInteger();
    List<Result> results = new ArrayList<>();
    ExecutorService pool = Executors.newFixedThreadPool(o.workers());
    try {
      List<Future<Result>> futures = new ArrayList<>();
      for (Point p : points) {
        futures.add(pool.submit(() -> {
          Result r = train(o, p, data.computeIfAbsent(p.seed(), s -> dataOf(o, p)));
          synchronized (out) {
            out.printf(Locale.ROOT, "[%d/%d] %-10s lr %-6s seed %d: held-out %.4f (%.1f s)%n",
                done.incrementAndGet(), points.size(), p.optimizer().displayName(),
                SweepTable.rate(p.lr()), p.seed(), r.finalHeldout(), r.seconds());
          }
          return r;
        }));
      }
      for (Future<Result> f : futures) {
        results.add(f.get());
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException("the sweep was interrupted", e);
    } catch (ExecutionException e) {
      Throwable cause = e.getCause();
      if (cause instanceof RuntimeException re) {
        throw re;
      }
      throw new IllegalStateException(cause);
    } finally {
      pool.shutdownNow();
    }
    double seconds = (System.nanoTime() - t0) / 1e9;
    String load = loadBefore.isEmpty() ? "" : " Load average (1, 5, 15 min) of the machine: "
        + loadBefore + " at the start, " + loadAverage() + " at the end.";
    double floor = data.get(1L).floor();

    List<SweepCsv.Row> rows = new ArrayList<>();
    results.forEach(r -> rows.addAll(r.rows()));
    rows.sort(Comparator.comparing((SweepCsv.Row r) -> order(o, r.optimizer()))
        .thenComparingDouble(SweepCsv.Row::lr).thenComparingLong(SweepCsv.Row::seed)
        .thenComparingLong(SweepCsv.Row::step));
    SweepCsv.write(o.out().resolve(CSV), rows);
    SweepTable table = SweepTable.of(results, floor);
    SweepPlot.write(o.out().resolve(PNG), table, floor, subtitle(o));
    Files.writeString(o.out().resolve(MARKDOWN), markdown(o, table, seconds, load),
        StandardCharsets.UTF_8);
    out.println();
    out.print(table.toText());
    out.println(table.verdict());
    out.println();
    out.printf(Locale.ROOT, "%d runs in %s%n", points.size(), Progress.duration(seconds));
    for (String f : List.of(CSV, PNG, MARKDOWN)) {
      out.println("wrote " + o.out().resolve(f));
    }
    return new Report(List.copyOf(results), table, seconds);
  }

  /** Trains one point exactly as the plain demo trains it. */
  /** The data of a point's seed (the same for every optimizer and rate). */
  private static DemoData dataOf(Options o, Point p) {
    try {
      return DemoData.of(o.point(p.optimizer(), p.lr(), p.seed()).settings());
    } catch (java.io.IOException e) {
      throw new java.io.UncheckedIOException(e);
    }
  }

  static Result train(Options o, Point p, DemoData data) {
    long t0 = System.nanoTime();
    Demo.Options plain = o.point(p.optimizer(), p.lr(), p.seed());
    Demo.Settings s = plain.settings();
    List<SweepCsv.Row> rows = new ArrayList<>();
    try (LanguageModel model = s.model(p.optimizer(), data, o.xla())) {
      Demo.train(model, plain, s.batch(), null, data,
          r -> rows.add(SweepCsv.Row.of(p.lr(), p.seed(), r)),
          new Progress(System.err, false, System::nanoTime));
    }
    return new Result(p, List.copyOf(rows), (System.nanoTime() - t0) / 1e9);
  }

  private static int order(Options o, String displayName) {
    for (int i = 0; i < o.optimizers().size(); i++) {
      if (o.optimizers().get(i).displayName().equals(displayName)) {
        return i;
      }
    }
    return Integer.MAX_VALUE;
  }

  private static String subtitle(Options o) {
    return String.format(Locale.ROOT, "%d steps, batch %d, seeds 1-%d, paper defaults · line:"
        + " mean over seeds, band: min to max", o.steps(), o.batch(), o.seeds());
  }

  /** The machine's load average (Linux /proc/loadavg: 1, 5 and 15 minutes), or "" elsewhere. */
  static String loadAverage() {
    try {
      String[] f = Files.readString(Path.of("/proc/loadavg")).trim().split("\\s+");
      return f[0] + ", " + f[1] + ", " + f[2];
    } catch (IOException | RuntimeException e) {
      return "";
    }
  }

  private static String markdown(Options o, SweepTable table, double seconds, String load) {
    String when = ZonedDateTime.now(ZoneOffset.UTC).truncatedTo(ChronoUnit.SECONDS)
        .format(DateTimeFormatter.ISO_INSTANT);
    StringBuilder md = new StringBuilder("# fadam-tf learning-rate sweep\n\n");
    md.append(table.toMarkdown()).append('\n');
    md.append(table.verdict()).append("\n\n");
    md.append(SweepTable.LEGEND).append("\n\n");
    md.append("Every point (final held-out loss, mean ± sd over the seeds):\n\n");
    md.append(table.gridMarkdown()).append('\n');
    md.append(String.format(Locale.ROOT, "Final held-out loss after %d steps (batch %d, XLA %s),"
        + " seeds 1-%d, learning rates %s; every optimizer at the paper's defaults. %d runs, %d at"
        + " a time, in %s.%n%n", o.steps(), o.batch(), o.xla() ? "on" : "off", o.seeds(),
        String.join(", ", o.lrs().stream().map(SweepTable::rate).toList()),
        o.optimizers().size() * o.lrs().size() * o.seeds(), o.workers(),
        Progress.duration(seconds)));
    String training = o.training().describe(o.batch());
    if (!training.isEmpty()) {
      md.append(training).append("\n\n");
    }
    md.append(String.format(Locale.ROOT, "Measured on %s %s, %d cores, Java %s, %s.%s%n",
        System.getProperty("os.name"), System.getProperty("os.arch"),
        Runtime.getRuntime().availableProcessors(), System.getProperty("java.version"), when,
        load));
    return md.toString();
  }
}
