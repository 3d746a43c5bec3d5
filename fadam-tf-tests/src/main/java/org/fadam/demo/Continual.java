package org.fadam.demo;

import java.awt.BasicStroke;
import java.awt.Color;
import java.awt.Font;
import java.awt.geom.Ellipse2D;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.text.DecimalFormat;
import java.text.DecimalFormatSymbols;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import org.fadam.Algorithm;
import org.fadam.Ewc;
import org.fadam.FisherOptions;
import org.fadam.FisherTrainStep;
import org.fadam.ResourceVariable;
import org.jfree.chart.ChartUtils;
import org.jfree.chart.JFreeChart;
import org.jfree.chart.axis.LogAxis;
import org.jfree.chart.axis.NumberAxis;
import org.jfree.chart.axis.NumberTickUnit;
import org.jfree.chart.plot.ValueMarker;
import org.jfree.chart.plot.XYPlot;
import org.jfree.chart.renderer.xy.DeviationRenderer;
import org.jfree.data.xy.YIntervalSeries;
import org.jfree.data.xy.YIntervalSeriesCollection;
import org.tensorflow.Graph;
import org.tensorflow.Operand;
import org.tensorflow.Session;
import org.tensorflow.ndarray.Shape;
import org.tensorflow.op.Ops;
import org.tensorflow.types.TFloat32;
import org.tensorflow.types.TInt32;

/**
 * The continual-learning demo ({@code scripts/demo --continual}): the demo's model trains with
 * FAdam on Markov chain A, then on chain B (a fresh optimizer, the parameters carried over), once
 * without EWC and once per EWC strength λ, whose penalty λ/2 · Σ F (θ − θ*)² takes θ* and F from
 * {@link Ewc#snapshot} of the step after A ({@link FisherTrainStep#fisher}: the optimizer's own,
 * bias-corrected Fisher). It reports the held-out loss on A after A and after B (their difference
 * is the forgetting) and on B after B, per λ over seeds, as a table ({@value #MARKDOWN}), a CSV
 * ({@value #CSV}) and a chart ({@value #PNG}).
 */
public final class Continual {

  /** Default optimizer steps per task. */
  public static final int DEFAULT_STEPS = 1000;
  /** Default seeds (1..N). */
  public static final int DEFAULT_SEEDS = 3;
  /** Default learning rate: the sweep's best FAdam rate at 1000 steps (docs/demo.md). */
  public static final double DEFAULT_LR = 3e-3;
  /** Default EWC strengths swept (0, no EWC, is always run). */
  public static final List<Double> DEFAULT_LAMBDAS = List.of(1e1, 1e2, 1e3, 1e4, 1e5);

  static final String MARKDOWN = "continual.md";
  static final String CSV = "continual.csv";
  static final String PNG = "continual.png";

  /** The chains: A is the main demo's; B another draw of the same family. */
  static final long CHAIN_A = MarkovSource.DEFAULT_SEED;
  static final long CHAIN_B = MarkovSource.DEFAULT_SEED + 1;

  private static final int STREAM_TOKENS = 1 << 18;
  private static final int HELDOUT_ROWS = 8192;
  // random streams derived from the seed (apart from the main demo's 1..4)
  private static final long TRAIN_A = 11;
  private static final long TRAIN_B = 12;
  private static final long HELDOUT_A = 13;
  private static final long HELDOUT_B = 14;
  private static final long INIT = 15;
  private static final long BATCHES_A = 16;
  private static final long BATCHES_B = 17;

  private Continual() {}

  /**
   * The experiment's settings.
   *
   * @param seeds the seeds (data streams, initial values, batches)
   * @param steps optimizer steps per task
   * @param batch rows per step
   * @param learningRate FAdam's η
   * @param embed embedding width
   * @param hidden hidden width
   * @param lambdas the EWC strengths λ > 0 (λ = 0 is run too)
   * @param jit whether the steps are XLA-compiled
   * @param out the output directory
   */
  public record Options(List<Long> seeds, int steps, int batch, double learningRate, int embed, int hidden,
      List<Double> lambdas, boolean jit, Path out) {

    /** Checks the values, failing with one line naming the option. */
    public Options {
      seeds = List.copyOf(seeds);
      lambdas = List.copyOf(new java.util.TreeSet<>(lambdas));
      if (seeds.isEmpty()) {
        throw new IllegalArgumentException("--continual needs at least one seed");
      }
      for (double l : lambdas) {
        if (!(l > 0 && l < Double.POSITIVE_INFINITY)) {
          throw new IllegalArgumentException("--ewc-lambdas must be finite and > 0 (λ = 0 is always run); got " + l);
        }
      }
    }
  }

  /**
   * One seed's numbers at one λ.
   *
   * @param seed the seed
   * @param lambda λ (0: no EWC)
   * @param aAfterA held-out loss on A after training on A (nats/token)
   * @param aAfterB held-out loss on A after training on B
   * @param bAfterB held-out loss on B after training on B
   */
  record Run(long seed, double lambda, double aAfterA, double aAfterB, double bAfterB) {
    double forgetting() {
      return aAfterB - aAfterA;
    }

    double mean() {
      return (aAfterB + bAfterB) / 2;
    }
  }

  /** Runs the experiment and writes its files into {@code o.out()}; prints the table. */
  public static List<Run> run(Options o, PrintStream out) throws IOException {
    MarkovSource a = MarkovSource.random(MarkovSource.DEFAULT_VOCAB_SIZE, MarkovSource.DEFAULT_MIN_SUCCESSORS,
        MarkovSource.DEFAULT_MAX_SUCCESSORS, CHAIN_A);
    MarkovSource b = MarkovSource.random(MarkovSource.DEFAULT_VOCAB_SIZE, MarkovSource.DEFAULT_MIN_SUCCESSORS,
        MarkovSource.DEFAULT_MAX_SUCCESSORS, CHAIN_B);
    List<Double> lambdas = new ArrayList<>(List.of(0.0));
    lambdas.addAll(o.lambdas());
    List<Run> runs = new ArrayList<>();
    long started = System.nanoTime();
    for (long seed : o.seeds()) {
      Task taskA = new Task(a, seed, TRAIN_A, HELDOUT_A, BATCHES_A);
      Task taskB = new Task(b, seed, TRAIN_B, HELDOUT_B, BATCHES_B);
      DemoModel.Config config = new DemoModel.Config(a.vocabSize(), o.embed(), o.hidden(), o.learningRate(),
          Demo.mix(seed, INIT, 0), o.jit());
      double aAfterA;
      try (Net net = new Net(config, null, 0); Ewc.Snapshot snapshot = trainAndSnapshot(net, taskA, o)) {
        aAfterA = net.heldOut(taskA);
        for (double lambda : lambdas) {
          try (Net next = new Net(config, snapshot, lambda)) {
            next.train(taskB, o);
            Run r = new Run(seed, lambda, aAfterA, next.heldOut(taskA), next.heldOut(taskB));
            runs.add(r);
            out.printf(Locale.ROOT, "seed %d  λ %-8s  A after A %.4f  A after B %.4f  B after B %.4f  (%.0f s)%n",
                seed, fmt(lambda), r.aAfterA(), r.aAfterB(), r.bAfterB(), (System.nanoTime() - started) / 1e9);
          }
        }
      }
    }
    Files.createDirectories(o.out());
    String csv = csv(runs);
    AtomicFile.write(o.out().resolve(CSV), f -> Files.writeString(f, csv, StandardCharsets.UTF_8));
    String table = table(runs, o, a, b);
    AtomicFile.write(o.out().resolve(MARKDOWN), f -> Files.writeString(f, table, StandardCharsets.UTF_8));
    JFreeChart chart = chart(runs);
    AtomicFile.write(o.out().resolve(PNG), f -> ChartUtils.saveChartAsPNG(f.toFile(), chart, SweepPlot.WIDTH, SweepPlot.HEIGHT));
    out.print(table);
    out.println("wrote " + o.out().resolve(MARKDOWN) + ", " + o.out().resolve(CSV) + ", " + o.out().resolve(PNG));
    return runs;
  }

  private static Ewc.Snapshot trainAndSnapshot(Net net, Task task, Options o) {
    net.train(task, o);
    return Ewc.snapshot(net.session, net.step);
  }

  /** One task's data for one seed: the training stream's batches and the held-out rows. */
  private static final class Task {
    final int[] stream;
    final Batches.Batch heldOut;
    final long batchSeed;

    Task(MarkovSource source, long seed, long trainStream, long heldOutStream, long batchStream) {
      this.stream = source.sample(Demo.mix(seed, trainStream, 0), STREAM_TOKENS);
      int[] held = source.sample(Demo.mix(seed, heldOutStream, 0), HELDOUT_ROWS * DemoModel.CONTEXT + 1);
      this.heldOut = Batches.heldOut(held, HELDOUT_ROWS, DemoModel.CONTEXT, 1).get(0);
      this.batchSeed = Demo.mix(seed, batchStream, 0);
    }
  }

  /**
   * The demo's model in a graph of its own, with FAdam and, where λ &gt; 0, the EWC penalty of a
   * snapshot in its loss; its parameters start at the seed's initial values, or at the snapshot's θ*.
   */
  private static final class Net implements AutoCloseable {
    final Graph graph = new Graph();
    final Session session;
    final FisherTrainStep step;
    /** The task's loss alone (no penalty), on the held-out rows. */
    final Operand<TFloat32> taskLoss;

    Net(DemoModel.Config c, Ewc.Snapshot from, double lambda) {
      try {
        Ops tf = Ops.create(graph);
        List<ResourceVariable<TFloat32>> vars;
        if (from == null) {
          vars = DemoModel.variables(tf, c);
        } else {
          vars = new ArrayList<>();
          for (String n : from.names()) { // the names and order of DemoModel.variables
            vars.add(ResourceVariable.create(tf, n, tf.withInitScope().constantOf((TFloat32) from.anchor(n))));
          }
        }
        int v = c.vocabSize();
        this.step = FisherTrainStep.builder(graph)
            .algorithm(Algorithm.FADAM, c.learningRate(), FisherOptions.defaults())
            .input(DemoModel.TOKENS, TInt32.class, Shape.of(-1, DemoModel.CONTEXT))
            .input(DemoModel.LABELS, TInt32.class, Shape.of(-1))
            .variables(vars)
            .loss((ops, in, w) -> {
              Operand<TFloat32> task = DemoModel.loss(ops, DemoModel.logits(ops, in.int32(DemoModel.TOKENS), w),
                  in.int32(DemoModel.LABELS), v);
              return lambda == 0 ? task : ops.math.add(task, from.penalty(ops, w, lambda, TFloat32.class));
            })
            .predictions((ops, in, w) -> DemoModel.logits(ops, in.int32(DemoModel.TOKENS), w), DemoModel.TOKENS)
            .jit(c.jit())
            .build();
        @SuppressWarnings("unchecked")
        Operand<TInt32> labels = (Operand<TInt32>) step.input(DemoModel.LABELS);
        @SuppressWarnings("unchecked")
        Operand<TFloat32> logits = (Operand<TFloat32>) step.predictions().orElseThrow();
        Operand<TFloat32> oneHot = tf.oneHot(labels, tf.constant(v), tf.constant(1f), tf.constant(0f));
        this.taskLoss = tf.math.mean(tf.nn.softmaxCrossEntropyWithLogits(logits, oneHot).loss(), tf.constant(0));
        this.session = new Session(graph);
        session.initialize();
      } catch (RuntimeException e) {
        graph.close();
        throw e;
      }
    }

    void train(Task task, Options o) {
      Batches batches = new Batches(task.stream, o.batch(), DemoModel.CONTEXT, task.batchSeed);
      for (int i = 0; i < o.steps(); i++) {
        Batches.Batch batch = batches.next();
        try (TInt32 tokens = DemoModel.tokens(batch); TInt32 labels = DemoModel.labels(batch)) {
          float loss = step.train(session, Map.of(DemoModel.TOKENS, tokens, DemoModel.LABELS, labels)).loss();
          if (!Float.isFinite(loss)) {
            throw new IllegalStateException("the loss is " + loss + " at step " + (i + 1) + "; lower --lr or λ");
          }
        }
      }
    }

    double heldOut(Task task) {
      try (TInt32 tokens = DemoModel.tokens(task.heldOut); TInt32 labels = DemoModel.labels(task.heldOut);
          var r = session.runner().feed(step.input(DemoModel.TOKENS), tokens)
              .feed(step.input(DemoModel.LABELS), labels).fetch(taskLoss).run()) {
        return ((TFloat32) r.get(0)).getFloat();
      }
    }

    @Override
    public void close() {
      session.close();
      graph.close();
    }
  }

  static String fmt(double lambda) {
    return lambda == 0 ? "0" : String.format(Locale.ROOT, "%.0e", lambda).replace("e+0", "e").replace("e+", "e");
  }

  private static String csv(List<Run> runs) {
    StringBuilder s = new StringBuilder("seed,lambda,heldout_a_after_a,heldout_a_after_b,heldout_b_after_b\n");
    for (Run r : runs) {
      s.append(String.format(Locale.ROOT, "%d,%s,%.6f,%.6f,%.6f%n", r.seed(), r.lambda(), r.aAfterA(), r.aAfterB(), r.bAfterB()));
    }
    return s.toString();
  }

  /** Mean and [min, max] over seeds of one number of the runs at one λ. */
  private record Stat(double mean, double min, double max) {
    static Stat of(List<Run> runs, java.util.function.ToDoubleFunction<Run> f) {
      double sum = 0;
      double lo = Double.POSITIVE_INFINITY;
      double hi = Double.NEGATIVE_INFINITY;
      for (Run r : runs) {
        double x = f.applyAsDouble(r);
        sum += x;
        lo = Math.min(lo, x);
        hi = Math.max(hi, x);
      }
      return new Stat(sum / runs.size(), lo, hi);
    }

    @Override
    public String toString() {
      return String.format(Locale.ROOT, "%.4f [%.4f, %.4f]", mean, min, max);
    }
  }

  private static Map<Double, List<Run>> byLambda(List<Run> runs) {
    Map<Double, List<Run>> m = new LinkedHashMap<>();
    runs.forEach(r -> m.computeIfAbsent(r.lambda(), k -> new ArrayList<>()).add(r));
    return m;
  }

  /** The λ > 0 with the lowest mean over seeds of (A after B + B after B)/2, or 0 if none beats it. */
  static double chosen(List<Run> runs) {
    double best = Double.POSITIVE_INFINITY;
    double at = 0;
    for (var e : byLambda(runs).entrySet()) {
      double m = Stat.of(e.getValue(), Run::mean).mean();
      if (m < best) {
        best = m;
        at = e.getKey();
      }
    }
    return at;
  }

  static String table(List<Run> runs, Options o, MarkovSource a, MarkovSource b) {
    StringBuilder s = new StringBuilder();
    s.append("FAdam on chain A, then on chain B (fresh optimizer, parameters carried over), with and without EWC ")
        .append("(penalty λ/2 · Σ F (θ − θ*)², F = `step.fisher(p)` after A). Held-out loss in nats/token, ")
        .append("mean [min, max] over seeds ").append(o.seeds()).append("; ").append(o.steps())
        .append(" steps per task, batch ").append(o.batch()).append(", η ").append(o.learningRate())
        .append(", embed ").append(o.embed()).append(", hidden ").append(o.hidden())
        .append(o.jit() ? "" : ", no XLA").append(". Floors (entropy rates): A ")
        .append(String.format(Locale.ROOT, "%.4f", a.entropyRateNats())).append(", B ")
        .append(String.format(Locale.ROOT, "%.4f", b.entropyRateNats())).append(".\n\n");
    s.append("| λ | A after A | A after B | forgetting (A after B − A after A) | B after B | (A + B)/2 after B |\n");
    s.append("|---|---|---|---|---|---|\n");
    for (var e : byLambda(runs).entrySet()) {
      List<Run> rs = e.getValue();
      s.append("| ").append(fmt(e.getKey())).append(e.getKey() == 0 ? " (no EWC)" : "")
          .append(" | ").append(Stat.of(rs, Run::aAfterA))
          .append(" | ").append(Stat.of(rs, Run::aAfterB))
          .append(" | ").append(Stat.of(rs, Run::forgetting))
          .append(" | ").append(Stat.of(rs, Run::bAfterB))
          .append(" | ").append(Stat.of(rs, Run::mean)).append(" |\n");
    }
    double c = chosen(runs);
    s.append("\nChosen λ (lowest mean of the two tasks' losses after B): ").append(fmt(c))
        .append(c == 0 ? " (no λ swept beat training without EWC)" : "").append(".\n");
    return s.toString();
  }

  /** Held-out loss on A and on B after B against λ (log axis), bands over seeds; λ = 0 as dashed lines. */
  static JFreeChart chart(List<Run> runs) {
    YIntervalSeriesCollection data = new YIntervalSeriesCollection();
    YIntervalSeries onA = new YIntervalSeries("held-out loss on A after B");
    YIntervalSeries onB = new YIntervalSeries("held-out loss on B after B");
    Stat a0 = null;
    Stat b0 = null;
    double lo = Double.POSITIVE_INFINITY;
    double hi = Double.NEGATIVE_INFINITY;
    double lMin = Double.POSITIVE_INFINITY;
    double lMax = 0;
    for (var e : byLambda(runs).entrySet()) {
      Stat sa = Stat.of(e.getValue(), Run::aAfterB);
      Stat sb = Stat.of(e.getValue(), Run::bAfterB);
      lo = Math.min(lo, Math.min(sa.min(), sb.min()));
      hi = Math.max(hi, Math.max(sa.max(), sb.max()));
      if (e.getKey() == 0) {
        a0 = sa;
        b0 = sb;
      } else {
        onA.add(e.getKey(), sa.mean(), sa.min(), sa.max());
        onB.add(e.getKey(), sb.mean(), sb.min(), sb.max());
        lMin = Math.min(lMin, e.getKey());
        lMax = Math.max(lMax, e.getKey());
      }
    }
    data.addSeries(onA);
    data.addSeries(onB);
    LogAxis lambdaAxis = new LogAxis("EWC λ (log scale)");
    lambdaAxis.setBase(10);
    lambdaAxis.setTickUnit(new NumberTickUnit(1));
    DecimalFormatSymbols symbols = DecimalFormatSymbols.getInstance(Locale.ROOT);
    symbols.setExponentSeparator("e");
    lambdaAxis.setNumberFormatOverride(new DecimalFormat("0E0", symbols));
    if (lMax > 0) {
      lambdaAxis.setRange(lMin / 1.5, lMax * 1.5);
    }
    NumberAxis lossAxis = new NumberAxis("held-out loss after training on B (nats/token)");
    lossAxis.setAutoRangeIncludesZero(false);
    double pad = 0.04 * Math.max(hi - lo, 0.1);
    lossAxis.setRange(lo - pad, hi + pad);
    DeviationRenderer renderer = new DeviationRenderer(true, true);
    renderer.setAlpha(0.18f);
    for (int i = 0; i < 2; i++) {
      Color color = LossPlot.PALETTE[i];
      renderer.setSeriesPaint(i, color);
      renderer.setSeriesFillPaint(i, color);
      renderer.setSeriesStroke(i, new BasicStroke(2.2f, BasicStroke.CAP_ROUND, BasicStroke.JOIN_ROUND));
      renderer.setSeriesShape(i, new Ellipse2D.Double(-3.5, -3.5, 7, 7));
    }
    XYPlot plot = new XYPlot(data, lambdaAxis, lossAxis, renderer);
    plot.setBackgroundPaint(Color.WHITE);
    plot.setRangeGridlinePaint(new Color(0xDDDDDD));
    plot.setDomainGridlinePaint(new Color(0xDDDDDD));
    Stat[] zero = {a0, b0};
    String[] what = {"A, no EWC", "B, no EWC"};
    for (int i = 0; i < 2; i++) {
      if (zero[i] != null) {
        ValueMarker m = new ValueMarker(zero[i].mean(), LossPlot.PALETTE[i], new BasicStroke(1.5f,
            BasicStroke.CAP_BUTT, BasicStroke.JOIN_MITER, 10f, new float[] {6f, 4f}, 0f));
        m.setLabel(what[i] + String.format(Locale.ROOT, " (λ = 0): %.3f", zero[i].mean()));
        m.setLabelFont(new Font("SansSerif", Font.PLAIN, 12));
        m.setLabelAnchor(org.jfree.chart.ui.RectangleAnchor.TOP_LEFT);
        m.setLabelTextAnchor(org.jfree.chart.ui.TextAnchor.BOTTOM_LEFT);
        plot.addRangeMarker(m);
      }
    }
    return LossPlot.styled(new JFreeChart("Continual learning: chain A, then chain B, with EWC",
        new Font("SansSerif", Font.BOLD, 18), plot, true),
        "FAdam; EWC's F is the optimizer's own Fisher (step.fisher); bands: min–max over seeds");
  }
}
