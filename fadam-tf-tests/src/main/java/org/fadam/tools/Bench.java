package org.fadam.tools;

import java.io.IOException;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.time.Instant;
import java.time.temporal.ChronoUnit;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import org.tensorflow.Graph;
import org.tensorflow.op.Ops;
import java.util.Locale;
import org.fadam.tools.BenchCase.Candidate;
import org.tensorflow.ndarray.Shape;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * scripts/bench: train-step speed of FAdam, FAdafactor and the paper's Adam on every path, side by
 * side with the framework {@code Adam} (fused {@code ApplyAdam}) and {@code GradientDescent}, in
 * one JVM. Each case runs paired with framework Adam of the same variables: warm-up (XLA compiles
 * in it), then rounds alternating the two (which goes first alternates too), each round timing a
 * batch of steps of about the same wall time; the ratio is the median of the case's per-step times
 * over the median of Adam's in those rounds. The machine's triad bandwidth is measured in the same
 * run. No assertion is made on any time.
 */
@Command(name = "bench",
    description = {
        "Times one train step (loss 1/2*sum(w^2), float32) of FAdam, FAdafactor, the paper's Adam"
            + " and the paper's Adafactor on the drop-in path (graph: minimize on ref variables),"
            + " the fused step without XLA (graph-fused), with XLA (xla) and optimizer-only with the"
            + " gradient given (xla-apply), side by side with the framework Adam (fused ApplyAdam"
            + " kernel, path fused-kernel) and GradientDescent, on one matrix per size and on a"
            + " model-like list of 100 variables (embedding, 8 blocks of norms, biases, square and"
            + " rectangular matrices).",
        "Each case is paired with framework Adam on the same variables (xla-apply: Adam's"
            + " applyGradients with the gradient fed, row adam-framework-apply): warm-up, then"
            + " interleaved rounds; ratio_to_adam is the median case time over the median Adam time"
            + " of those rounds. bandwidth_fraction: bytes of the algorithm's minimum passes per step"
            + " / step time / the triad bandwidth measured in the same run. state_bytes_per_param:"
            + " every optimizer variable (slots, counters, beta powers) from its dtype and shape.",
        "Timings on a shared machine are noisy: compare ratios; the load average is printed before"
            + " and after. Up to about 1e6 parameters a tensor (4 MB) framework Adam's one pass"
            + " runs from the caches while the multi-pass steps do not, so ratios there overstate"
            + " the cost; 16777216 (in --quick too) is beyond them. scripts/bench sets"
            + " TF_CPU_ALLOCATOR_USE_BFC=true."})
public final class Bench extends Tool {

  @Option(names = "--quick", description = "sizes 1e6 and 16777216 (4096x4096: beyond the caches,"
      + " where 1e6 is not), a 2-block model of width 64 (28 variables), paths graph,xla, 5 rounds"
      + " of 0.1 s (under 3 minutes)")
  boolean quick;

  @Option(names = "--csv", paramLabel = "FILE", description = "also write the rows as CSV")
  java.nio.file.Path csv;

  @Option(names = "--sizes", paramLabel = "LIST", split = ",",
      description = "parameters of the single matrix per group (default 1e4,1e5,1e6,16777216;"
          + " quick 1e6,16777216; none: only the model-like list)")
  List<String> sizes;

  @Option(names = "--model-width", paramLabel = "D",
      description = "width of the model-like list (default 384: 1.66e7 params; quick 64; 0: none)")
  Integer modelWidth;

  @Option(names = "--model-blocks", paramLabel = "B", converter = Tool.PositiveInt.class,
      description = "blocks of the model-like list: 12 variables each, plus 4 (default 8: 100 variables;"
          + " quick 2)")
  Integer modelBlocks;

  @Option(names = "--optimizers", paramLabel = "LIST", split = ",",
      description = "from gd-framework,fadam,fadafactor,adam-paper,adafactor-paper (default all)")
  List<String> optimizers;

  @Option(names = "--paths", paramLabel = "LIST", split = ",",
      description = "from graph,graph-fused,xla,xla-apply (default all; quick graph,xla)")
  List<String> paths;

  @Option(names = "--rounds", paramLabel = "R", converter = Tool.PositiveInt.class,
      description = "paired rounds per case (default 9; quick 5)")
  Integer rounds;

  @Option(names = "--sample-seconds", paramLabel = "S", converter = Tool.PositiveFiniteDouble.class,
      description = "wall time of one timed batch of steps (default 0.3; quick 0.1)")
  Double sampleSeconds;

  /** Entry point. */
  public static void main(String[] args) {
    exit(new Bench(), args);
  }

  /** One result row: exactly the CSV's columns, plus ms/step for the printed table. */
  record Row(
      String optimizer,
      String path,
      long params,
      int variables,
      double nsPerParam,
      double ratioToAdam,
      double stateBytesPerParam,
      double bandwidthFraction,
      double msPerStep) {

    static final String CSV_HEADER =
        "optimizer,path,params,variables,ns_per_param,ratio_to_adam,state_bytes_per_param,bandwidth_fraction";

    /** The CSV fields: the numbers with 4 decimals. */
    List<String> csvFields() {
      return List.of(optimizer, path, Long.toString(params), Integer.toString(variables),
          decimals4(nsPerParam), decimals4(ratioToAdam), decimals4(stateBytesPerParam),
          decimals4(bandwidthFraction));
    }

    private static String decimals4(double v) {
      return String.format(Locale.ROOT, "%.4f", v);
    }
  }

  /** A set of variables benchmarked together. */
  record Group(String label, List<Shape> shapes) {
    long params() {
      return shapes.stream().mapToLong(Shape::size).sum();
    }
  }

  /** What to run. */
  record Settings(
      boolean quick,
      java.nio.file.Path csv,
      List<Group> groups,
      List<Candidate> optimizers,
      List<BenchCase.Path> paths,
      int rounds,
      double sampleSeconds) {}

  /** The settings the options (and --quick) give. */
  Settings settings() {
    List<Group> groups = new ArrayList<>();
    List<String> sizeList = sizes != null ? sizes
        : quick ? List.of("1e6", "16777216") : List.of("1e4", "1e5", "1e6", "16777216");
    if (sizeList.size() == 1 && sizeList.get(0).trim().equals("none")) {
      sizeList = List.of();
    }
    for (String s : sizeList) {
      long n = parseCount(s.trim());
      groups.add(new Group(String.valueOf(n), List.of(squareish(n))));
    }
    int w = modelWidth != null ? modelWidth : quick ? 64 : 384;
    if (w < 0) {
      throw new IllegalArgumentException("--model-width must be >= 0; got " + w);
    }
    if (w > 0) {
      groups.add(new Group("model-like", modelLike(w, modelBlocks != null ? modelBlocks : quick ? 2 : 8)));
    }
    List<Candidate> opt = new ArrayList<>();
    if (optimizers == null) {
      opt.addAll(Arrays.asList(Candidate.values()));
    } else {
      for (String s : optimizers) {
        opt.add(Candidate.parse(s.trim()));
      }
    }
    List<BenchCase.Path> p = new ArrayList<>();
    if (paths == null && quick) {
      p.addAll(List.of(BenchCase.Path.GRAPH, BenchCase.Path.XLA));
    } else if (paths == null) {
      p.addAll(List.of(BenchCase.Path.GRAPH, BenchCase.Path.GRAPH_FUSED, BenchCase.Path.XLA,
          BenchCase.Path.XLA_APPLY));
    } else {
      for (String s : paths) {
        BenchCase.Path x = BenchCase.Path.parse(s.trim());
        if (x == BenchCase.Path.FUSED_KERNEL) {
          throw new IllegalArgumentException("--paths: fused-kernel is the framework optimizers' own path");
        }
        p.add(x);
      }
    }
    return new Settings(quick, csv, groups, opt, p, rounds != null ? rounds : quick ? 5 : 9,
        sampleSeconds != null ? sampleSeconds : quick ? 0.1 : 0.3);
  }

  /** "1e6", "16777216" → a count ≥ 1. */
  static long parseCount(String s) {
    double d;
    try {
      d = Double.parseDouble(s);
    } catch (NumberFormatException e) {
      throw new IllegalArgumentException("--sizes: '" + s + "' is not a number", e);
    }
    if (!(d >= 1 && d <= 1e9) || d != Math.rint(d)) {
      throw new IllegalArgumentException("--sizes: '" + s + "' must be a whole number in [1, 1e9]");
    }
    return (long) d;
  }

  /** A matrix of exactly n elements, as square as n's divisors allow. */
  static Shape squareish(long n) {
    long rows = (long) Math.floor(Math.sqrt(n));
    while (n % rows != 0) {
      rows--;
    }
    return Shape.of(rows, n / rows);
  }

  /**
   * 12·blocks + 4 variables (100 for 8 blocks) shaped like a small transformer of width d: a
   * 6400×d embedding, blocks of (2 norm scales and biases, q/k/v/o d×d, d×4d and 4d×d with
   * biases), a final norm and an output bias.
   */
  static List<Shape> modelLike(int d, int blocks) {
    List<Shape> s = new ArrayList<>();
    s.add(Shape.of(6400, d));
    for (int layer = 0; layer < blocks; layer++) {
      s.add(Shape.of(d));
      s.add(Shape.of(d));
      for (int k = 0; k < 4; k++) {
        s.add(Shape.of(d, d));
      }
      s.add(Shape.of(d));
      s.add(Shape.of(d));
      s.add(Shape.of(d, 4L * d));
      s.add(Shape.of(4L * d));
      s.add(Shape.of(4L * d, d));
      s.add(Shape.of(d));
    }
    s.add(Shape.of(d));
    s.add(Shape.of(d));
    s.add(Shape.of(6400));
    return s;
  }

  /**
   * Bytes per parameter of the minimum passes of one whole step: the loss reads θ once (4 B; the
   * optimizer-only rows leave it out), then the optimizer's step, the gradient given. For the
   * paper's algorithms that is {@link org.fadam.Algorithm#minimumBytesPerParameter} at the
   * defaults the bench runs with (float32 parameters), the same figure {@code scripts/gpu-replay}
   * reads from the replay's manifest; the framework baselines keep their own: GradientDescent
   * reads g, θ and writes θ (12), ApplyAdam reads g, θ, m, v and writes θ, m, v (28).
   */
  static double minimumBytesPerParam(Candidate c, List<Shape> shapes) {
    double total = 0;
    for (Shape s : shapes) {
      double b = switch (c) {
        case GD_FRAMEWORK -> 12; // read g, θ; write θ
        case ADAM_FRAMEWORK -> 28; // read g, θ, m, v; write θ, m, v
        case FADAM, FADAFACTOR, ADAM_PAPER, ADAFACTOR_PAPER ->
            c.algorithm.minimumBytesPerParameter(s, c.algorithm.defaultOptions(), 4);
      };
      total += (4 + b) * s.size(); // + the loss's read of θ
    }
    return total / shapes.stream().mapToLong(Shape::size).sum();
  }

  @Override
  protected int run() throws IOException {
    Settings settings;
    try {
      settings = settings();
    } catch (IllegalArgumentException e) {
      throw usageError(e.getMessage());
    }
    PrintWriter out = out();
    out.println("# " + Machine.describe() + "; " + Instant.now().truncatedTo(ChronoUnit.SECONDS));
    out.println("# load average before: " + Machine.loadAverage());
    double triad = Triad.bytesPerSecond();
    out.printf(Locale.ROOT, "# triad bandwidth (a = b + s*c, 12 B/element): %.2f GB/s%n", triad / 1e9);
    out.flush();
    List<Row> rows = new ArrayList<>();
    for (Group g : settings.groups()) {
      rows.addAll(runGroup(g, settings, triad, err()));
    }
    out.println("# load average after: " + Machine.loadAverage());
    out.print(table(rows));
    out.println(leanState());
    if (settings.csv() != null) {
      writeCsv(settings.csv(), rows);
      out.println("# wrote " + settings.csv());
    }
    return 0;
  }

  /** Every case of one group, each paired with framework Adam on the same variables. */
  static List<Row> runGroup(Group g, Settings s, double triad, PrintWriter log) {
    List<Row> rows = new ArrayList<>();
    List<Double> adamAll = new ArrayList<>();
    List<Case> cases = new ArrayList<>();
    if (s.optimizers().contains(Candidate.GD_FRAMEWORK)) {
      cases.add(new Case(Candidate.GD_FRAMEWORK, BenchCase.Path.FUSED_KERNEL));
    }
    for (Candidate a : s.optimizers()) {
      if (!a.framework()) {
        for (BenchCase.Path p : s.paths()) {
          cases.add(new Case(a, p));
        }
      }
    }
    try (BenchCase adam = BenchCase.create(Candidate.ADAM_FRAMEWORK, BenchCase.Path.FUSED_KERNEL, g.shapes());
        BenchCase adamApply = s.paths().contains(BenchCase.Path.XLA_APPLY)
            ? BenchCase.adamApplyOnly(g.shapes()) : null) {
      int adamBatch = warmUp(adam, s.sampleSeconds());
      int applyBatch = adamApply == null ? 0 : warmUp(adamApply, s.sampleSeconds());
      List<Double> applyAll = new ArrayList<>();
      for (Case c : cases) {
        log.printf(Locale.ROOT, "bench: %s params, %s/%s ...%n", g.label(), c.a.csv, c.p.csv);
        log.flush();
        boolean applyOnly = c.p == BenchCase.Path.XLA_APPLY;
        BenchCase ref = applyOnly ? adamApply : adam;
        int refBatch = applyOnly ? applyBatch : adamBatch;
        try (BenchCase other = BenchCase.create(c.a, c.p, g.shapes())) {
          int batch = warmUp(other, s.sampleSeconds());
          double[] ta = new double[s.rounds()];
          double[] tc = new double[s.rounds()];
          for (int r = 0; r < s.rounds(); r++) {
            if (r % 2 == 0) {
              ta[r] = time(ref, refBatch);
              tc[r] = time(other, batch);
            } else {
              tc[r] = time(other, batch);
              ta[r] = time(ref, refBatch);
            }
          }
          for (double t : ta) {
            (applyOnly ? applyAll : adamAll).add(t);
          }
          double mc = median(tc);
          Row row = row(other, mc, mc / median(ta), triad, !applyOnly);
          rows.add(row);
          log.printf(Locale.ROOT, "bench:   %.3f ms/step, %.2f x Adam (Adam: %.3f ms/step in the"
              + " same rounds)%n", row.msPerStep(), row.ratioToAdam(),
              row.msPerStep() / row.ratioToAdam());
          log.flush();
        }
      }
      rows.add(0, row(adam, medianOrTime(adamAll, adam, adamBatch, s.rounds()), 1.0, triad, true));
      if (adamApply != null) {
        Row r = row(adamApply, medianOrTime(applyAll, adamApply, applyBatch, s.rounds()), 1.0, triad, false);
        rows.add(1, new Row("adam-framework-apply", r.path(), r.params(), r.variables(),
            r.nsPerParam(), 1.0, r.stateBytesPerParam(), r.bandwidthFraction(), r.msPerStep()));
      }
    }
    return rows;
  }

  /** The median of the times taken, or of fresh ones where none were. */
  private static double medianOrTime(List<Double> taken, BenchCase c, int batch, int rounds) {
    if (!taken.isEmpty()) {
      return median(taken.stream().mapToDouble(Double::doubleValue).toArray());
    }
    double[] t = new double[rounds];
    for (int r = 0; r < rounds; r++) {
      t[r] = time(c, batch);
    }
    return median(t);
  }

  private record Case(Candidate a, BenchCase.Path p) {}

  private static Row row(BenchCase c, double secondsPerStep, double ratio, double triad, boolean loss) {
    double bytes = (minimumBytesPerParam(c.optimizer, c.shapes) - (loss ? 0 : 4)) * c.params();
    return new Row(c.optimizer.csv, c.path.csv, c.params(), c.variables(),
        secondsPerStep * 1e9 / c.params(), ratio, c.stateBytesPerParam(),
        bytes / secondsPerStep / triad, secondsPerStep * 1e3);
  }

  /** Runs the case until compiled and warm; returns the steps per timed batch. */
  private static int warmUp(BenchCase c, double sampleSeconds) {
    c.run(2); // the first run compiles (XLA) and faults in the buffers
    double t = time(c, 1);
    int batch = (int) Math.max(1, Math.min(10_000, Math.round(sampleSeconds / Math.max(t, 1e-6))));
    time(c, batch);
    return batch;
  }

  /** Seconds per step over a batch of steps. */
  private static double time(BenchCase c, int steps) {
    long t0 = System.nanoTime();
    c.run(steps);
    return (System.nanoTime() - t0) / 1e9 / steps;
  }

  static double median(double[] x) {
    if (x.length == 0) {
      return Double.NaN;
    }
    double[] s = x.clone();
    Arrays.sort(s);
    int n = s.length;
    return n % 2 == 1 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
  }

  /**
   * The printed table. "x Adam" is the median of the row's steps over the median of framework
   * Adam's steps in the same interleaved rounds, not over the Adam row above it (the median of all
   * Adam's rounds): Adam's time moves from case to case (caches, the machine's load), so two rows
   * with the same ms/step can show different ratios. The "Adam ms" column shows the paired time
   * the ratio divides by (ms/step / x Adam, exactly).
   */
  static String table(List<Row> rows) {
    List<List<String>> cells = new ArrayList<>();
    cells.add(List.of("optimizer", "path", "params", "vars", "ms/step", "ns/param", "Adam ms",
        "x Adam", "state B", "BW frac"));
    for (Row r : rows) {
      cells.add(List.of(r.optimizer(), r.path(), Long.toString(r.params()),
          Integer.toString(r.variables()), fmt("%.3f", r.msPerStep()), fmt("%.3f", r.nsPerParam()),
          fmt("%.3f", r.msPerStep() / r.ratioToAdam()), fmt("%.2f", r.ratioToAdam()),
          fmt("%.2f", r.stateBytesPerParam()), fmt("%.3f", r.bandwidthFraction())));
    }
    // single spaces; optimizer and path left-aligned; the widths the table has always had
    return "# x Adam = ms/step / Adam ms: framework Adam (xla-apply rows: its apply-only step)"
        + " timed in the same interleaved rounds as the row; Adam's own rows: all its rounds\n"
        + TextTable.text(cells, " ", 2, 20, 13, 10, 5, 9, 9, 9, 8, 8, 7);
  }

  /**
   * FAdafactor's optimizer state per parameter at 4096×4096 with m in float32, in bfloat16 and
   * without m (β1 = 0), from the fused step's own count of its state variables (no timing).
   */
  static String leanState() {
    List<String> parts = new ArrayList<>();
    Map<String, org.fadam.FisherOptions> cases = new java.util.LinkedHashMap<>();
    cases.put("m float32", org.fadam.FisherOptions.defaults());
    cases.put("m bfloat16", org.fadam.FisherOptions.builder()
        .momentumDtype(org.tensorflow.types.TBfloat16.class).build());
    cases.put("no m (beta1 = 0)", org.fadam.FisherOptions.builder().beta1(0).build());
    cases.forEach((name, o) -> {
      try (Graph g = new Graph()) {
        Ops tf = Ops.create(g);
        var w = org.fadam.ResourceVariable.create(tf, "w", tf.withInitScope().fill(
            tf.withInitScope().constant(new long[] {4096, 4096}), tf.withInitScope().constant(0f)));
        var step = org.fadam.FisherTrainStep.builder(g).fadafactor(0.001, o).variables(List.of(w))
            .loss((ops, in, v) -> ops.math.mean(ops.math.square(v.float32("w")), ops.constant(new int[] {0, 1})))
            .build();
        parts.add(name + " " + fmt("%.3f", step.optimizerStateBytes() / (double) step.parameterCount()));
      }
    });
    return "# FAdafactor state B/param at 4096x4096: " + String.join(", ", parts);
  }

  private static String fmt(String format, double v) {
    return String.format(Locale.ROOT, format, v);
  }

  static void writeCsv(java.nio.file.Path file, List<Row> rows) throws IOException {
    java.nio.file.Path parent = file.toAbsolutePath().getParent();
    if (parent != null) {
      Files.createDirectories(parent);
    }
    try (java.io.Writer w = Files.newBufferedWriter(file, StandardCharsets.UTF_8)) {
      Csv.printRecord(w, List.of(Row.CSV_HEADER.split(",")));
      for (Row r : rows) {
        Csv.printRecord(w, r.csvFields());
      }
    }
  }

  /** What the machine is, as far as the JVM can tell. */
  static final class Machine {
    private Machine() {}

    static String describe() {
      String cpu = "unknown CPU";
      try {
        for (String line : Files.readAllLines(java.nio.file.Path.of("/proc/cpuinfo"))) {
          if (line.startsWith("model name")) {
            cpu = line.substring(line.indexOf(':') + 1).trim();
            break;
          }
        }
      } catch (IOException e) {
        // not Linux: keep "unknown CPU"
      }
      long mem = Runtime.getRuntime().maxMemory() >> 20;
      return cpu + ", " + Runtime.getRuntime().availableProcessors() + " cores, Java "
          + System.getProperty("java.version") + ", JVM max heap " + mem + " MiB";
    }

    static String loadAverage() {
      try {
        return Files.readString(java.nio.file.Path.of("/proc/loadavg")).trim();
      } catch (IOException e) {
        return "unknown";
      }
    }
  }

  /** The machine's memory bandwidth for a = b + s·c over arrays far larger than the caches. */
  static final class Triad {
    private Triad() {}

    static double bytesPerSecond() {
      int n = 1 << 24;
      float[] a = new float[n];
      float[] b = new float[n];
      float[] c = new float[n];
      Arrays.fill(b, 1f);
      Arrays.fill(c, 2f);
      int threads = Math.max(1, Runtime.getRuntime().availableProcessors());
      double best = Double.MAX_VALUE;
      for (int rep = 0; rep < 12; rep++) {
        long t0 = System.nanoTime();
        Thread[] ts = new Thread[threads];
        for (int k = 0; k < threads; k++) {
          int lo = (int) ((long) n * k / threads);
          int hi = (int) ((long) n * (k + 1) / threads);
          ts[k] = new Thread(() -> triad(a, b, c, 3f, lo, hi));
          ts[k].start();
        }
        for (Thread t : ts) {
          try {
            t.join();
          } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted", e);
          }
        }
        best = Math.min(best, (System.nanoTime() - t0) / 1e9);
      }
      return 12.0 * n / best;
    }

    private static void triad(float[] a, float[] b, float[] c, float s, int lo, int hi) {
      for (int i = lo; i < hi; i++) {
        a[i] = b[i] + s * c[i];
      }
    }
  }
}
