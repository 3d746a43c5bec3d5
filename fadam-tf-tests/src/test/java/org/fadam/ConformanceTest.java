package org.fadam;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.function.UnaryOperator;
import java.util.stream.Stream;
import org.fadam.reference.PaperReference;
import org.fadam.Algorithm;
import org.fadam.reference.PaperReference.Hyper;
import org.fadam.tools.StepHarness;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The graph optimizers against the float64 reference of the paper (plain Java, no TensorFlow):
 * the variable and every slot after every step, over a table of (optimizer, shape, dtype,
 * hyperparameters, gradient stream). Tolerances: float64 1e-12 relative, float32 1e-5 relative,
 * float16/bfloat16 the variable's own rounding (slots are float32 for them, so 1e-5).
 */
class ConformanceTest {

  /** A named gradient stream: the gradient of each step from a seeded generator. */
  record Grads(String name, double scale, boolean zeroFirst) {
    double[] next(Random rnd, int n, int step) {
      double[] g = new double[n];
      if (zeroFirst && step == 0) {
        return g;
      }
      for (int i = 0; i < n; i++) {
        g[i] = exact(rnd.nextGaussian()) * scale; // exact in every dtype (a power-of-two scale)
      }
      return g;
    }
  }

  /** A number with a 7-bit significand: exactly representable in bfloat16, float16 and up. */
  static double exact(double x) {
    return Math.round(x * 32) / 32.0;
  }

  record Case(
      Algorithm alg, int[] shape, String dtype, String hp, UnaryOperator<Hyper> hyper, Grads grads, int steps) {
    @Override
    public String toString() {
      return alg + " " + Arrays.toString(shape) + " " + dtype + " " + hp + " " + grads.name;
    }
  }

  static final Grads NORMAL = new Grads("normal", 1.0, false);
  static final Grads TINY = new Grads("tiny 2^-40 (adaptive ε)", Math.scalb(1.0, -40), false);
  static final Grads HUGE = new Grads("huge 2^50 (clip)", Math.scalb(1.0, 50), false);
  static final Grads ZERO_FIRST = new Grads("zero first step", 1.0, true);
  static final Grads ALL_ZERO = new Grads("all zero", 0.0, false);

  static Stream<Arguments> cases() {
    List<Case> cases = new ArrayList<>();
    List<int[]> shapes = List.of(new int[0], new int[] {5}, new int[] {3, 4}, new int[] {2, 3, 4});
    List<String> dtypes = List.of("float64", "float32", "float16", "bfloat16");
    for (Algorithm alg : Algorithm.values()) {
      UnaryOperator<Hyper> small = h -> h.withFactoredMinDim(3).withLr(0.01);
      for (int[] shape : shapes) {
        for (String dtype : dtypes) {
          cases.add(new Case(alg, shape, dtype, "defaults lr 0.01 minDim 3", small, NORMAL, 5));
        }
      }
      for (String dtype : List.of("float64", "float32")) {
        cases.add(new Case(alg, new int[] {3, 4}, dtype, "rho 0.25", h -> small.apply(h).withRho(0.25), NORMAL, 5));
        cases.add(new Case(alg, new int[] {3, 4}, dtype, "rho 1", h -> small.apply(h).withRho(1.0), NORMAL, 4));
        cases.add(new Case(alg, new int[] {2, 3, 4}, dtype, "clip 0.5", h -> small.apply(h).withClip(0.5), NORMAL, 5));
        cases.add(new Case(alg, new int[] {5}, dtype, "clip 3, beta2 0.9", h -> small.apply(h).withClip(3).withBeta2(0.9), NORMAL, 6));
        cases.add(new Case(alg, new int[] {3, 4}, dtype, "no weight decay", h -> small.apply(h).withWeightDecay(0), NORMAL, 4));
        // β1 = 0: no m slot, the update takes the clipped natural gradient itself
        cases.add(new Case(alg, new int[] {3, 4}, dtype, "beta1 0", h -> small.apply(h).withBeta1(0), NORMAL, 5));
        cases.add(new Case(alg, new int[] {5}, dtype, "beta1 0", h -> small.apply(h).withBeta1(0), NORMAL, 5));
        cases.add(new Case(alg, new int[] {3, 4}, dtype, "eps 0 eps2 0", h -> small.apply(h).withEps(0).withEps2(0), NORMAL, 4));
        cases.add(new Case(alg, new int[] {3, 4}, dtype, "defaults", small, TINY, 5));
        cases.add(new Case(alg, new int[] {2, 3, 4}, dtype, "defaults", small, HUGE, 4));
        cases.add(new Case(alg, new int[] {3, 4}, dtype, "defaults", small, ZERO_FIRST, 4));
        cases.add(new Case(alg, new int[] {3, 4}, dtype, "defaults", small, ALL_ZERO, 3));
        cases.add(new Case(alg, new int[] {130, 129}, dtype, "paper defaults (minDim 128)", UnaryOperator.identity(), NORMAL, 3));
      }
    }
    return cases.stream().map(Arguments::of);
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("cases")
  void everySlotAfterEveryStepMatchesTheReference(Case c) {
    Hyper h = c.hyper.apply(paperDefaults(c.alg));
    int n = Arrays.stream(c.shape).reduce(1, (a, b) -> a * b);
    Random rnd = new Random(Arrays.hashCode(c.shape) * 31L + c.alg.ordinal());
    double[] theta0 = new double[n];
    for (int i = 0; i < n; i++) {
      theta0[i] = exact(rnd.nextGaussian());
    }
    PaperReference.State ref = PaperReference.init(c.alg, c.shape, theta0, h);
    FisherOptions options = options(c.alg, h);
    long[] shape = Arrays.stream(c.shape).asLongStream().toArray();
    try (StepHarness graph = new StepHarness(c.alg, c.dtype, h.lr(), options, shape, theta0)) {
      for (int step = 1; step <= c.steps; step++) {
        double[] g = c.grads.next(rnd, n, step - 1);
        PaperReference.step(c.alg, ref, g, h);
        graph.step(g);
        Map<String, double[]> got = graph.state();
        assertEquals(step, (long) got.get(FisherOptimizer.STEP)[0], "step counter");
        compare(c, step, "theta", ref.theta, got.get("theta"), thetaTolerance(c.dtype, step));
        var refSlots = new java.util.LinkedHashMap<>(ref.slots);
        if (h.beta1() == 0) {
          refSlots.remove(FisherOptimizer.FIRST_MOMENT); // the reference keeps m = x; the library none
        }
        assertEquals(refSlots.keySet(), withoutThetaAndStep(got), "slot names");
        for (var e : refSlots.entrySet()) {
          compare(c, step, e.getKey(), e.getValue(), got.get(e.getKey()), slotTolerance(c.dtype));
        }
      }
    }
  }

  /**
   * The reference's hyperparameters at the paper's defaults for {@code alg}: Algorithm 1 line 1
   * for FAdam, FAdafactor and Adam; Algorithm 4 line 1 (ε = 1e-30) for Adafactor.
   */
  static Hyper paperDefaults(Algorithm alg) {
    Hyper h = Hyper.paperDefaults();
    return alg == Algorithm.ADAFACTOR ? h.withEps(FisherOptions.ADAFACTOR_EPSILON_DEFAULT) : h;
  }

  /**
   * The library's options for the reference's hyperparameters (PROPAGATE: the raw arithmetic).
   * The reference's ε is Algorithm 4's {@code adafactorEpsilon} for Adafactor, {@code epsilon} for
   * the other three.
   */
  static FisherOptions options(Algorithm alg, Hyper h) {
    FisherOptions.Builder b = FisherOptions.builder()
        .beta1(h.beta1()).beta2(h.beta2()).epsilon2(h.eps2())
        .clipThreshold(h.clip()).weightDecay(h.weightDecay()).rho(h.rho())
        .factoredMinDim(h.factoredMinDim()).nonFinite(FisherOptions.NonFinitePolicy.PROPAGATE);
    return (alg == Algorithm.ADAFACTOR ? b.adafactorEpsilon(h.eps()) : b.epsilon(h.eps())).build();
  }

  /**
   * {@code FisherOptions.defaults()} and the one-argument constructors are each algorithm's paper
   * defaults: for PaperAdafactor that is Algorithm 4 line 1 (ε = 1e-30 inside the EMAs), not the
   * ε = 1e-8 of Algorithms 1–3, which would change f by 1e-8 wherever g² is small.
   */
  @org.junit.jupiter.api.Test
  void adafactorDefaultsAreAlgorithm4Line1() {
    int[] shape = {3, 4};
    Hyper h = paperDefaults(Algorithm.ADAFACTOR).withFactoredMinDim(3);
    Random rnd = new Random(4);
    double[] theta0 = new double[12];
    for (int i = 0; i < theta0.length; i++) {
      theta0[i] = exact(rnd.nextGaussian());
    }
    PaperReference.State ref = PaperReference.init(Algorithm.ADAFACTOR, shape, theta0, h);
    FisherOptions defaults = FisherOptions.builder().factoredMinDim(3)
        .nonFinite(FisherOptions.NonFinitePolicy.PROPAGATE).build();
    assertEquals(1e-30, defaults.adafactorEpsilon());
    assertEquals(options(Algorithm.ADAFACTOR, h), defaults, "FisherOptions defaults = Alg. 4 l.1");
    Grads tiny = new Grads("tiny 2^-60", Math.scalb(1.0, -60), false); // g² ≈ 1e-36: ε matters
    try (StepHarness graph = new StepHarness(Algorithm.ADAFACTOR, "float64",
        FisherOptions.exact(FisherOptions.LEARNING_RATE_DEFAULT), defaults, new long[] {3, 4}, theta0)) {
      for (int step = 1; step <= 3; step++) {
        double[] g = tiny.next(rnd, 12, step - 1);
        PaperReference.step(Algorithm.ADAFACTOR, ref, g, h);
        graph.step(g);
        Case c = new Case(Algorithm.ADAFACTOR, shape, "float64", "defaults", x -> x, tiny, 3);
        compare(c, step, "theta", ref.theta, graph.state().get("theta"), 1e-12);
        compare(c, step, "fim_row", ref.slots.get("fim_row"), graph.state().get("fim_row"), 1e-12);
      }
    }
  }

  private static java.util.Set<String> withoutThetaAndStep(Map<String, double[]> got) {
    var keys = new java.util.LinkedHashSet<>(got.keySet());
    keys.remove("theta");
    keys.remove(FisherOptimizer.STEP);
    return keys;
  }

  static double slotTolerance(String dtype) {
    return dtype.equals("float64") ? 1e-12 : 1e-5;
  }

  /** 16-bit variables round θ at every step: allow that rounding, accumulated over the steps. */
  static double thetaTolerance(String dtype, int step) {
    return switch (dtype) {
      case "float16" -> step * Math.scalb(1.0, -11);
      case "bfloat16" -> step * Math.scalb(1.0, -8);
      default -> slotTolerance(dtype);
    };
  }

  /**
   * |got − want| ≤ tol · max(|want|, floor · max|want|): relative per element, with a floor (a
   * tenth of the tensor's largest magnitude in float32, a hundredth in float64) for elements that
   * are the cancellation of larger terms, such as m = β1 m + (1 − β1) ḡ after a sign change: their
   * round-off is that of the terms, not of the small result.
   */
  static void compare(Case c, int step, String what, double[] want, double[] got, double tol) {
    assertEquals(want.length, got.length, what + " size");
    double scale = 0;
    for (double w : want) {
      scale = Math.max(scale, Math.abs(w));
    }
    for (int i = 0; i < want.length; i++) {
      assertTrue(Double.isFinite(got[i]), c + " step " + step + " " + what + "[" + i + "] = " + got[i]);
      double allowed = tol * Math.max(Math.abs(want[i]), (tol < 1e-9 ? 1e-2 : 1e-1) * scale);
      if (!(Math.abs(got[i] - want[i]) <= allowed)) {
        fail(c + ": step " + step + " " + what + "[" + i + "] = " + got[i] + ", reference " + want[i]
            + " (relative error " + Math.abs(got[i] - want[i]) / Math.abs(want[i]) + ", allowed " + tol + ")");
      }
    }
  }
}
