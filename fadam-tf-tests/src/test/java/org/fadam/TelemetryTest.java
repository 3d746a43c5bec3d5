package org.fadam;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.fadam.reference.PaperReference;
import org.fadam.reference.PaperReference.Hyper;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.tensorflow.Graph;
import org.tensorflow.Operand;
import org.tensorflow.Session;
import org.tensorflow.Tensor;
import org.tensorflow.ndarray.Shape;
import org.tensorflow.ndarray.buffer.DataBuffers;
import org.tensorflow.op.Ops;
import org.tensorflow.types.TFloat32;

/**
 * The step telemetry (docs/design.md, "Step telemetry") of a fused FAdam and Adam step against the
 * same quantities computed here in float64 from the gradients and the float64 reference's state
 * (f after Alg. 1 l.7, θ before the step): grad_rms, the clipped fractions, the ε̂ floor fraction,
 * the skip counter and η_t, over tensors some of which clip and some not, with the ε floor hit in
 * one tensor and not in the others, one tensor masked out of the weight decay, and a skipped step.
 */
class TelemetryTest {

  /** Shapes of the five tensors; the last is masked out of the weight decay. */
  private static final int[][] SHAPES = {{4, 8}, {32}, {3, 5}, {6}, {2, 3}};
  private static final double LR = 0.1;
  private static final double CLIP = 0.5;

  /** The gradients of one step (loss Σ w·x: the gradient is the input x exactly). */
  private static double[][] gradients(Random r, int step) {
    double[][] g = new double[SHAPES.length][];
    for (int i = 0; i < SHAPES.length; i++) {
      g[i] = new double[size(SHAPES[i])];
      for (int k = 0; k < g[i].length; k++) {
        double v = switch (i) {
          case 0 -> r.nextGaussian(); // dense, RMS ~ 1: ḡ ≈ ±1 clipped, no ε floor
          // 1 in 32 non-zero: RMS(ḡ) = |ḡ_0|/√32 ≤ √t/√32 < c for t ≤ 4 (|ḡ_0| ≤ 1/sqrt(1 − β̂2))
          case 1 -> k == 0 ? r.nextGaussian() : 0;
          case 2 -> 1e-6 * r.nextGaussian(); // RMS(g) ≈ 1e-6: ε2·RMS(g) < ε, the ε floor
          default -> 0.5 * r.nextGaussian(); // dense: ḡ clipped
        };
        g[i][k] = (float) v; // fed as float32
      }
    }
    return g;
  }

  private static int size(int[] shape) {
    int n = 1;
    for (int d : shape) {
      n *= d;
    }
    return n;
  }

  private static double rms(double[] x) {
    double s = 0;
    for (double v : x) {
      s += v * v;
    }
    return Math.sqrt(s / x.length);
  }

  @ParameterizedTest(name = "jit={0}")
  @ValueSource(booleans = {true, false})
  void fadamTelemetryMatchesFloat64(boolean jit) {
    Random r = new Random(21);
    double[][] theta0 = new double[SHAPES.length][];
    for (int i = 0; i < SHAPES.length; i++) {
      theta0[i] = new double[size(SHAPES[i])];
      for (int k = 0; k < theta0[i].length; k++) {
        // tensor 3 small (θ/d ≪ c: its decay not clipped), the others O(1) (clipped)
        theta0[i][k] = (float) ((i == 3 ? 1e-3 : 1.0) * (1 + r.nextDouble()));
      }
    }
    Hyper h = Hyper.paperDefaults().withLr(LR).withClip(CLIP).withWeightDecay(0.01);
    FisherOptions o = FisherOptions.builder().clipThreshold(CLIP).weightDecay(0.01)
        .nonFinite(FisherOptions.NonFinitePolicy.SKIP).build();
    List<PaperReference.State> ref = new ArrayList<>();
    for (int i = 0; i < SHAPES.length; i++) {
      ref.add(PaperReference.init(Algorithm.FADAM, SHAPES[i], theta0[i].clone(), h));
    }
    try (Graph g = new Graph()) {
      FisherTrainStep step = build(g, Algorithm.FADAM, o, theta0, jit);
      try (Session s = new Session(g)) {
        s.initialize();
        long skipped = 0;
        for (int t = 0; t < 4; t++) {
          double[][] grads = gradients(r, t);
          boolean skip = t == 2;
          if (skip) {
            grads[0][3] = Double.NaN; // under SKIP: the step leaves everything, counts a skip
          }
          FisherTrainStep.Result res = train(step, s, grads);
          StepTelemetry got = res.telemetry();
          assertEquals(!skip, res.finite());
          assertEquals((float) LR, got.learningRate(), "η_t");
          if (skip) {
            skipped++;
            assertTrue(Double.isNaN(got.gradRms()), "grad_rms of a NaN gradient: " + got.gradRms());
            assertEquals(0f, got.clippedNatural());
            assertEquals(0f, got.clippedDecay());
            assertEquals(0f, got.epsFloor());
            assertEquals(skipped, got.skipped());
            continue;
          }
          // the float64 telemetry of this step, from the reference's f (after l.7) and θ (before l.14)
          double total = 0;
          double sumSq = 0;
          double natural = 0;
          double decay = 0;
          double floor = 0;
          boolean[] naturalClipped = new boolean[SHAPES.length];
          for (int i = 0; i < SHAPES.length; i++) {
            PaperReference.State st = ref.get(i);
            double[] thetaBefore = st.theta.clone();
            PaperReference.step(Algorithm.FADAM, st, grads[i], h);
            double[] f = st.slots.get(PaperReference.FIM);
            int n = grads[i].length;
            total += n;
            for (double v : grads[i]) {
              sumSq += v * v;
            }
            double rmsG = rms(grads[i]);
            double epsHat = Math.min(h.eps(), h.eps2() * rmsG); // l.8
            double[] gBar = new double[n];
            double[] gw = new double[n];
            for (int k = 0; k < n; k++) {
              double d = Math.sqrt(f[k]) + epsHat; // l.9 with ρ = 1/2: f^ρ + ε̂^(2ρ)
              gBar[k] = grads[i][k] / d;
              gw[k] = thetaBefore[k] / d; // l.12
            }
            naturalClipped[i] = rms(gBar) > CLIP; // l.10
            natural += naturalClipped[i] ? n : 0;
            boolean decayed = i != SHAPES.length - 1;
            decay += decayed && rms(gw) > CLIP ? n : 0; // l.13
            floor += h.eps2() * rmsG < h.eps() ? n : 0; // C.1.1
          }
          String at = "step " + (t + 1);
          assertEquals(Math.sqrt(sumSq / total), got.gradRms(), 1e-6 * got.gradRms(), at + " grad_rms");
          assertEquals(natural / total, got.clippedNatural(), 1e-6, at + " clipped_natural");
          assertEquals(decay / total, got.clippedDecay(), 1e-6, at + " clipped_decay");
          assertEquals(floor / total, got.epsFloor(), 1e-6, at + " eps_floor");
          assertEquals(skipped, got.skipped(), at + " skipped");
          // the cases are what they say: some clip, some don't; the floor is hit and not hit
          assertTrue(naturalClipped[0] && !naturalClipped[1], at + " clip mix");
          assertTrue(floor > 0 && floor < total, at + " ε floor mix");
          assertTrue(decay > 0 && decay < total - size(SHAPES[4]), at + " decay clip mix");
        }
      }
    }
  }

  /**
   * Adam (Algorithm 3) clips m̂/(√f̂ + ε) (l.9) and is counted; it has no clipped decay term and
   * no adaptive ε, so clipped_decay and eps_floor are 0.
   */
  @ParameterizedTest(name = "jit={0}")
  @ValueSource(booleans = {true, false})
  void adamClipsNaturalOnlyAndHasNoEpsFloor(boolean jit) {
    Random r = new Random(7);
    double[][] theta0 = new double[SHAPES.length][];
    for (int i = 0; i < SHAPES.length; i++) {
      theta0[i] = new double[size(SHAPES[i])];
      java.util.Arrays.fill(theta0[i], 1.0);
    }
    FisherOptions o = FisherOptions.builder().clipThreshold(CLIP).weightDecay(0.01).build();
    try (Graph g = new Graph()) {
      FisherTrainStep step = build(g, Algorithm.ADAM, o, theta0, jit);
      try (Session s = new Session(g)) {
        s.initialize();
        double[][] grads = gradients(r, 0);
        StepTelemetry got = train(step, s, grads).telemetry();
        // step 1: m̂ = g, f̂ = g², so ḡ = g/(|g| + ε): ±1 where g ≠ 0 (≈ for tensor 2, g ~ ε·100)
        double total = 0;
        double natural = 0;
        for (int i = 0; i < SHAPES.length; i++) {
          double[] gBar = new double[grads[i].length];
          for (int k = 0; k < gBar.length; k++) {
            gBar[k] = grads[i][k] / (Math.abs(grads[i][k]) + o.epsilon());
          }
          total += gBar.length;
          natural += rms(gBar) > CLIP ? gBar.length : 0;
        }
        assertEquals(natural / total, got.clippedNatural(), 1e-6);
        assertTrue(natural > 0 && natural < total, "some tensors clip, some not: " + natural);
        assertEquals(0f, got.clippedDecay());
        assertEquals(0f, got.epsFloor());
        assertEquals(0L, got.skipped());
      }
    }
  }

  private static FisherTrainStep build(
      Graph g, Algorithm a, FisherOptions o, double[][] theta0, boolean jit) {
    Ops tf = Ops.create(g);
    List<ResourceVariable<?>> vars = new ArrayList<>();
    FisherTrainStep.Builder b = FisherTrainStep.builder(g).algorithm(a, LR, o).jit(jit);
    for (int i = 0; i < SHAPES.length; i++) {
      Shape shape = Shape.of(java.util.Arrays.stream(SHAPES[i]).asLongStream().toArray());
      vars.add(ResourceVariable.create(tf, "w" + i, tf.withInitScope().constant(shape,
          DataBuffers.of(toFloat(theta0[i]), true, false))));
      b.input("x" + i, TFloat32.class, shape);
    }
    ResourceVariable<?> undecayed = vars.get(SHAPES.length - 1);
    return b.variables(vars).weightDecayMask(v -> v != undecayed).loss((ops, in, v) -> {
      Operand<TFloat32> total = null;
      for (int i = 0; i < SHAPES.length; i++) {
        int[] axes = java.util.stream.IntStream.range(0, SHAPES[i].length).toArray();
        Operand<TFloat32> term = ops.reduceSum(
            ops.math.mul(v.float32("w" + i), in.float32("x" + i)), ops.constant(axes)); // ∂/∂w = x
        total = total == null ? term : ops.math.add(total, term);
      }
      return total;
    }).build();
  }

  private static FisherTrainStep.Result train(FisherTrainStep step, Session s, double[][] grads) {
    Map<String, Tensor> feeds = new LinkedHashMap<>();
    try {
      for (int i = 0; i < SHAPES.length; i++) {
        Shape shape = Shape.of(java.util.Arrays.stream(SHAPES[i]).asLongStream().toArray());
        feeds.put("x" + i, TFloat32.tensorOf(shape, DataBuffers.of(toFloat(grads[i]), true, false)));
      }
      FisherTrainStep.Result res = step.train(s, feeds);
      assertFalse(Float.isNaN(res.loss()) && res.finite());
      return res;
    } finally {
      feeds.values().forEach(Tensor::close);
    }
  }

  private static float[] toFloat(double[] x) {
    float[] f = new float[x.length];
    for (int i = 0; i < x.length; i++) {
      f[i] = (float) x[i];
    }
    return f;
  }
}
