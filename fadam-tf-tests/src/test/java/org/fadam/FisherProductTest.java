package org.fadam;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.fadam.reference.PaperReference;
import org.fadam.reference.PaperReference.Hyper;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.tensorflow.Graph;
import org.tensorflow.Operand;
import org.tensorflow.Output;
import org.tensorflow.Session;
import org.tensorflow.framework.optimizers.Optimizer.GradAndVar;
import org.tensorflow.ndarray.Shape;
import org.tensorflow.ndarray.StdArrays;
import org.tensorflow.op.Op;
import org.tensorflow.op.Ops;
import org.tensorflow.op.core.Variable;
import org.tensorflow.types.TFloat32;
import org.tensorflow.types.TFloat64;
import org.tensorflow.types.family.TType;

/**
 * The Fisher as a product: {@link FisherTrainStep#fisher} and {@link FisherOptimizer#fisher}
 * against the float64 reference's f (R C / 1ᵀR where factored), and {@link Ewc}'s penalty and its
 * gradient against a hand computation.
 */
class FisherProductTest {

  static final int ROWS = 6;
  static final int COLS = 5;
  private static final double LR = 0.01;

  /** w [6, 5] (factored by FAdafactor with factoredMinDim 4) and b [5], float32, seeded values. */
  static FisherTrainStep build(Graph g, Algorithm a, FisherOptions o, int accumulate, boolean microBatchFisher,
      boolean jit) {
    Ops tf = Ops.create(g);
    var w = ResourceVariable.create(tf, "w", tf.withInitScope().constant(matrix(new Random(3), ROWS, COLS)));
    var b = ResourceVariable.create(tf, "b", tf.withInitScope().constant(new float[COLS]));
    return FisherTrainStep.builder(g)
        .algorithm(a, LR, o)
        .input("x", TFloat32.class, Shape.of(-1, ROWS))
        .variables(List.of(w, b))
        .loss((ops, in, v) -> ops.math.mean(ops.math.square(ops.math.add(
            ops.linalg.matMul(in.float32("x"), v.float32("w")), v.float32("b"))), ops.constant(new int[] {0, 1})))
        .accumulate(accumulate)
        .microBatchFisher(microBatchFisher)
        .jit(jit)
        .build();
  }

  static float[][] matrix(Random rnd, int rows, int cols) {
    float[][] m = new float[rows][cols];
    for (float[] r : m) {
      for (int j = 0; j < cols; j++) {
        r[j] = (float) (0.5 * rnd.nextGaussian());
      }
    }
    return m;
  }

  /** A float32 gradient, returned as its exact double values too. */
  static double[] gradient(Random rnd, int n, double scale) {
    double[] out = new double[n];
    for (int i = 0; i < n; i++) {
      out[i] = (float) (scale * rnd.nextGaussian());
    }
    return out;
  }

  static TFloat32 tensor(double[] v, long... shape) {
    float[] f = new float[v.length];
    for (int i = 0; i < f.length; i++) {
      f[i] = (float) v[i];
    }
    return TFloat32.tensorOf(Shape.of(shape), org.tensorflow.ndarray.buffer.DataBuffers.of(f, true, false));
  }

  static void assertClose(double[] want, double[] got, String what) {
    assertEquals(want.length, got.length, what + ": length");
    for (int i = 0; i < want.length; i++) {
      double tol = 2e-6 + 2e-5 * Math.abs(want[i]);
      assertTrue(Math.abs(want[i] - got[i]) <= tol,
          what + "[" + i + "]: want " + want[i] + ", got " + got[i]);
    }
  }

  /** The full f of a reference state: f itself, or R C / 1ᵀR (Alg. 2 l.9, written out here again). */
  static double[] referenceFisher(PaperReference.State s) {
    if (s.slots.containsKey(PaperReference.FIM)) {
      return s.slots.get(PaperReference.FIM).clone();
    }
    double[] r = s.slots.get(PaperReference.FIM_ROW);
    double[] c = s.slots.get(PaperReference.FIM_COL);
    double sumR = 0;
    for (double x : r) {
      sumR += x;
    }
    double[] f = new double[r.length * c.length];
    for (int i = 0; i < r.length; i++) {
      for (int j = 0; j < c.length; j++) {
        f[i * c.length + j] = r[i] * c[j] / sumR; // f_ij = R_i C_j / Σ R
      }
    }
    return f;
  }

  static double[] flat(float[][] m) {
    double[] out = new double[m.length * m[0].length];
    for (int i = 0; i < m.length; i++) {
      for (int j = 0; j < m[0].length; j++) {
        out[i * m[0].length + j] = m[i][j];
      }
    }
    return out;
  }

  /** fisher() of each parameter is the reference's f after 0..3 steps (FAdafactor: R C / 1ᵀR). */
  @ParameterizedTest(name = "{0}")
  @EnumSource(value = Algorithm.class, names = {"FADAM", "FADAFACTOR", "ADAM"})
  void trainStepFisherIsTheReferenceF(Algorithm a) {
    Hyper h = ConformanceTest.paperDefaults(a).withLr(LR).withFactoredMinDim(4);
    FisherOptions o = ConformanceTest.options(a, h);
    PaperReference.State w = PaperReference.init(a, new int[] {ROWS, COLS}, flat(matrix(new Random(3), ROWS, COLS)), h);
    PaperReference.State b = PaperReference.init(a, new int[] {COLS}, new double[COLS], h);
    Random rnd = new Random(11);
    try (Graph g = new Graph(); Session s = new Session(g)) {
      FisherTrainStep step = build(g, a, o, 1, false, true);
      ResourceVariable<?> wv = step.parameters().get(0);
      ResourceVariable<?> bv = step.parameters().get(1);
      Ops tf = Ops.create(g);
      s.initialize();
      for (int t = 0; t <= 3; t++) {
        if (t > 0) {
          double[] gw = gradient(rnd, ROWS * COLS, 1.0);
          double[] gb = gradient(rnd, COLS, 0.3);
          PaperReference.step(a, w, gw, h);
          PaperReference.step(a, b, gb, h);
          try (TFloat32 tw = tensor(gw, ROWS, COLS); TFloat32 tb = tensor(gb, COLS)) {
            step.applyGradients(s, Map.of(FisherTrainStep.gradientKey("w"), tw, FisherTrainStep.gradientKey("b"), tb));
          }
        }
        Operand<?> fw = step.fisher(wv);
        assertEquals(wv.shape(), fw.shape(), "fisher(w)'s shape");
        assertEquals(a == Algorithm.FADAFACTOR, step.slot(wv, Algorithm.FIM_ROW).isPresent());
        double[] wantW = a == Algorithm.ADAM ? corrected(w, h) : referenceFisher(w);
        double[] wantB = a == Algorithm.ADAM ? corrected(b, h) : referenceFisher(b);
        if (t == 0) { // before any step: f0 = 1 (Alg. 1 l.2); R0 C0 / 1ᵀR0 = 1/rows (Alg. 2 l.2, l.9); Adam's f̂: 0
          assertEquals(a == Algorithm.ADAM ? 0.0 : a == Algorithm.FADAFACTOR ? 1.0 / ROWS : 1.0, wantW[0], 1e-15);
          assertEquals(a == Algorithm.ADAM ? 0.0 : 1.0, wantB[0]);
        }
        assertClose(wantW, OptimizerContractTest.values(s, tf, fw), a + " fisher(w) after " + t + " steps");
        assertClose(wantB, OptimizerContractTest.values(s, tf, step.fisher(bv)), a + " fisher(b) after " + t + " steps");
      }
    }
  }

  /** Adam's f̂ = f / (1 − β2^t) (Alg. 3 l.6), 0 before any step. */
  private static double[] corrected(PaperReference.State s, Hyper h) {
    double[] f = s.slots.get(PaperReference.FIM).clone();
    for (int i = 0; i < f.length; i++) {
      f[i] = s.step == 0 ? 0 : f[i] / (1 - Math.pow(h.beta2(), s.step));
    }
    return f;
  }

  /** The drop-in optimizers' fisher() after three applyGradients is the reference's f. */
  @ParameterizedTest(name = "{0}")
  @EnumSource(value = Algorithm.class, names = {"FADAM", "FADAFACTOR"})
  void dropInFisherIsTheReferenceF(Algorithm a) {
    Hyper h = ConformanceTest.paperDefaults(a).withLr(LR).withFactoredMinDim(4);
    PaperReference.State w = PaperReference.init(a, new int[] {ROWS, COLS}, flat(matrix(new Random(3), ROWS, COLS)), h);
    double[] gw = gradient(new Random(12), ROWS * COLS, 1.0);
    try (Graph g = new Graph(); Session s = new Session(g)) {
      Ops tf = Ops.create(g);
      Variable<TFloat32> v = tf.withName("w").variable(tf.constant(matrix(new Random(3), ROWS, COLS)));
      FisherOptimizer opt = FisherOptimizer.create(a, g, a.displayName(), LR, ConformanceTest.options(a, h));
      List<GradAndVar<? extends TType>> gv = new ArrayList<>();
      float[][] gm = new float[ROWS][COLS];
      for (int i = 0; i < ROWS * COLS; i++) {
        gm[i / COLS][i % COLS] = (float) gw[i];
      }
      gv.add(new GradAndVar<>(tf.constant(gm).asOutput(), v.asOutput()));
      Op apply = opt.applyGradients(gv, "apply");
      Operand<?> f = opt.fisher(v);
      assertEquals(v.shape(), f.shape());
      s.initialize();
      for (int t = 1; t <= 3; t++) {
        s.runner().addTarget(apply).run();
        PaperReference.step(a, w, gw, h);
      }
      assertClose(referenceFisher(w), OptimizerContractTest.values(s, tf, f), a + " drop-in fisher(w)");
      Variable<TFloat32> other = tf.withName("other").variable(tf.constant(new float[2]));
      IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> opt.fisher(other));
      assertTrue(e.getMessage().startsWith("variable 'other' has no state in optimizer"), e.getMessage());
    }
  }

  /** λ/2 Σ F (θ − θ*)² and its gradient λ F (θ − θ*), against float64 sums by hand. */
  @Test
  void ewcPenaltyAndGradientAreTheHandComputation() {
    Random rnd = new Random(21);
    double lambda = 3.5;
    double[][] theta = {new double[6], new double[4]};
    double[][] anchor = {new double[6], new double[4]};
    double[][] fisher = {new double[6], new double[4]};
    for (int p = 0; p < 2; p++) {
      for (int i = 0; i < theta[p].length; i++) {
        theta[p][i] = rnd.nextGaussian();
        anchor[p][i] = rnd.nextGaussian();
        fisher[p][i] = Math.abs(rnd.nextGaussian()) * 10;
      }
    }
    double want = 0;
    for (int p = 0; p < 2; p++) {
      for (int i = 0; i < theta[p].length; i++) {
        want += fisher[p][i] * (theta[p][i] - anchor[p][i]) * (theta[p][i] - anchor[p][i]);
      }
    }
    want *= lambda / 2;
    try (Graph g = new Graph(); Session s = new Session(g)) {
      Ops tf = Ops.create(g);
      Map<String, Operand<?>> th = new LinkedHashMap<>();
      Map<String, Operand<?>> an = new LinkedHashMap<>();
      Map<String, Operand<?>> fi = new LinkedHashMap<>();
      th.put("a", tf.constant(StdArrays.ndCopyOf(new double[][] {
          {theta[0][0], theta[0][1], theta[0][2]}, {theta[0][3], theta[0][4], theta[0][5]}})));
      an.put("a", tf.constant(StdArrays.ndCopyOf(new double[][] {
          {anchor[0][0], anchor[0][1], anchor[0][2]}, {anchor[0][3], anchor[0][4], anchor[0][5]}})));
      fi.put("a", tf.constant(StdArrays.ndCopyOf(new double[][] {
          {fisher[0][0], fisher[0][1], fisher[0][2]}, {fisher[0][3], fisher[0][4], fisher[0][5]}})));
      th.put("b", tf.constant(theta[1]));
      an.put("b", tf.constant(anchor[1]));
      fi.put("b", tf.constant(fisher[1]));
      Operand<?> pen = Ewc.penalty(tf, th, an, fi, lambda);
      assertEquals(TFloat64.class, pen.type());
      Output<?>[] grads = g.addGradients(pen.asOutput(), new Output<?>[] {th.get("a").asOutput(), th.get("b").asOutput()});
      assertEquals(want, OptimizerContractTest.values(s, tf, pen)[0], 1e-12 * Math.abs(want));
      for (int p = 0; p < 2; p++) {
        double[] got = OptimizerContractTest.values(s, tf, grads[p]);
        for (int i = 0; i < got.length; i++) {
          double hand = lambda * fisher[p][i] * (theta[p][i] - anchor[p][i]); // ∂/∂θ: λ F (θ − θ*)
          assertEquals(hand, got[i], 1e-12 * Math.max(1, Math.abs(hand)), "gradient " + p + "[" + i + "]");
        }
      }
      // λ = 0: no penalty, and bad input: one line naming the variable
      assertEquals(0.0, OptimizerContractTest.values(s, tf, Ewc.penalty(tf, th, an, fi, 0))[0]);
      Map<String, Operand<?>> badShape = new LinkedHashMap<>(fi);
      badShape.put("b", tf.constant(new double[5]));
      IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
          () -> Ewc.penalty(tf, th, an, badShape, 1));
      assertEquals("EWC: variable 'b' has shape [4], its Fisher [5]", e.getMessage());
      Map<String, Operand<?>> missing = new LinkedHashMap<>(an);
      missing.remove("a");
      e = assertThrows(IllegalArgumentException.class, () -> Ewc.penalty(tf, th, missing, fi, 1));
      assertEquals("EWC: no anchor for variable 'a'; the anchors given are for [b]", e.getMessage());
      e = assertThrows(IllegalArgumentException.class, () -> Ewc.penalty(tf, th, an, fi, -1));
      assertEquals("EWC λ must be finite and ≥ 0; got -1.0", e.getMessage());
    }
  }

  /**
   * A snapshot after task A carries θ* and fisher(); in a new step's (XLA-compiled) loss its
   * penalty is the hand computation at θ = θ* + δ, and the step's gradient pulls θ toward θ*.
   */
  @Test
  void snapshotPenaltyInsideACompiledStep() {
    Map<String, double[]> anchors = new LinkedHashMap<>();
    Map<String, double[]> fishers = new LinkedHashMap<>();
    Ewc.Snapshot snap;
    try (Graph g = new Graph(); Session s = new Session(g)) {
      FisherTrainStep step = build(g, Algorithm.FADAFACTOR, FisherOptions.builder().factoredMinDim(4).build(), 1, false, true);
      Ops tf = Ops.create(g);
      s.initialize();
      Random rnd = new Random(5);
      for (int t = 0; t < 3; t++) {
        try (TFloat32 x = TFloat32.tensorOf(StdArrays.ndCopyOf(matrix(rnd, 8, ROWS)))) {
          step.train(s, Map.of("x", x));
        }
      }
      snap = Ewc.snapshot(s, step);
      for (ResourceVariable<?> p : step.parameters()) {
        anchors.put(p.name(), OptimizerContractTest.values(s, tf, p.read(tf)));
        fishers.put(p.name(), OptimizerContractTest.values(s, tf, step.fisher(p)));
      }
      Ops other = Ops.create(g);
      var foreign = ResourceVariable.create(other, "foreign", other.withInitScope().constant(new float[3]));
      IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> step.fisher(foreign));
      assertEquals("variable 'foreign' is not a parameter of this train step, so it has no Fisher"
          + " estimate; its parameters are [w, b]", e.getMessage());
      e = assertThrows(IllegalArgumentException.class, () -> Ewc.snapshot(s, step, List.of(foreign)));
      assertTrue(e.getMessage().startsWith("variable 'foreign' is not a parameter"), e.getMessage());
    }
    try (snap; Graph g = new Graph(); Session s = new Session(g)) {
      assertEquals(List.of("w", "b"), List.copyOf(snap.names()));
      assertClose(fishers.get("w"), values(snap.fisher("w")), "snapshot F(w)");
      assertClose(anchors.get("b"), values(snap.anchor("b")), "snapshot θ*(b)");
      double delta = 0.25;
      double lambda = 40;
      Ops tf = Ops.create(g);
      Ops init = tf.withInitScope();
      var w = ResourceVariable.create(tf, "w", init.math.add(init.constantOf((TFloat32) snap.anchor("w")), init.constant(0.25f)));
      var b = ResourceVariable.create(tf, "b", init.math.add(init.constantOf((TFloat32) snap.anchor("b")), init.constant(0.25f)));
      FisherTrainStep step = FisherTrainStep.builder(g)
          .fadam(0.01, FisherOptions.builder().weightDecay(0).build())
          .input("x", TFloat32.class, Shape.of(-1, ROWS))
          .variables(List.of(w, b))
          .loss((ops, in, v) -> snap.penalty(ops, v, lambda, TFloat32.class))
          .build();
      s.initialize();
      double want = 0;
      for (String n : List.of("w", "b")) {
        for (double f : fishers.get(n)) {
          want += f * delta * delta; // F (θ − θ*)², θ − θ* = δ
        }
      }
      want *= lambda / 2;
      try (TFloat32 x = TFloat32.tensorOf(StdArrays.ndCopyOf(new float[1][ROWS]))) {
        float got = step.train(s, Map.of("x", x)).loss();
        assertEquals(want, got, 1e-5 * want, "the penalty as the compiled step's loss");
      }
      double[] after = OptimizerContractTest.values(s, tf, w.read(tf));
      double[] anchorW = anchors.get("w");
      for (int i = 0; i < after.length; i++) {
        assertTrue(after[i] - anchorW[i] < delta, "the step pulls w[" + i + "] toward θ*");
      }
      Operands missingB = new Operands(StepFunctions.VARIABLE, Map.of("w", w.read(tf)));
      IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> snap.penalty(tf, missingB, 1, TFloat32.class));
      assertEquals("no variable 'b'; the variables are [w]", e.getMessage());
    }
  }

  private static double[] values(org.tensorflow.Tensor t) {
    TFloat32 f = (TFloat32) t;
    double[] out = new double[(int) f.shape().size()];
    int[] i = {0};
    f.scalars().forEach(x -> out[i[0]++] = x.getFloat());
    return out;
  }
}
