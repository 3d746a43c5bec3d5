package org.fadam.reference;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.util.Arrays;
import java.util.Set;
import java.util.stream.Stream;
import org.fadam.Algorithm;
import org.fadam.reference.PaperReference.Hyper;
import org.fadam.reference.PaperReference.State;
import org.junit.jupiter.api.Nested;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.EnumSource;
import org.junit.jupiter.params.provider.MethodSource;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Checks {@link PaperReference} against numbers derived independently of it: closed forms worked
 * out by hand from Algorithms 1-4, and a table produced by a separate numpy float64
 * implementation of the four algorithms (kept outside the repository).
 */
class PaperReferenceTest {

  private static final double REL = 1e-12;
  private static final Hyper DEF = Hyper.paperDefaults();
  private static final int[] SCALAR = {};
  private static final double ETA = 1e-3;
  private static final double LAMBDA = 1e-3;

  // ---------------------------------------------------------------------------------------------
  // Helpers.

  private static void assertClose(double expected, double actual, double tol, String what) {
    if (!(Math.abs(actual - expected) <= tol)) {
      fail(what + ": expected " + expected + " but was " + actual + " (tolerance " + tol + ")");
    }
  }

  private static void assertRel(double expected, double actual, String what) {
    assertClose(expected, actual, REL * Math.abs(expected), what);
  }

  private static void assertRel(double[] expected, double[] actual, String what) {
    assertEquals(expected.length, actual.length, what + ": length");
    for (int k = 0; k < expected.length; k++) {
      assertRel(expected[k], actual[k], what + "[" + k + "]");
    }
  }

  private static void assertAllFinite(State s) {
    assertTrue(Arrays.stream(s.theta).allMatch(Double::isFinite), () -> "theta not finite: " + s);
    s.slots.forEach(
        (name, a) ->
            assertTrue(
                Arrays.stream(a).allMatch(Double::isFinite), () -> name + " not finite: " + s));
  }

  /** sqrt(mean(x²)), written here again so the closed forms do not use the code under test. */
  private static double rootMeanSquare(double[] x) {
    double s = 0;
    for (double v : x) {
      s += v * v;
    }
    return Math.sqrt(s / x.length);
  }

  private static double[] clipped(double[] x, double c) {
    double scale = Math.max(1, rootMeanSquare(x) / c);
    double[] y = new double[x.length];
    for (int k = 0; k < x.length; k++) {
      y[k] = x[k] / scale;
    }
    return y;
  }

  private static State run(Algorithm alg, int[] shape, double[] theta0, Hyper h, double[]... grads) {
    State s = PaperReference.init(alg, shape, theta0, h);
    for (double[] g : grads) {
      PaperReference.step(alg, s, g, h);
    }
    return s;
  }

  // ---------------------------------------------------------------------------------------------
  // Algorithm 1 (FAdam): closed forms.

  @Nested
  class FAdamClosedForms {

    /**
     * t = 1, ρ = 0.5, scalar: β̂2 = 0 so f1 = g²; RMS(g) = |g| so ε̂ = min(ε, ε2|g|);
     * d = |g| + ε̂; ḡ = g/d has |ḡ| < 1 = c (no clip); m1 = (1 − β1) ḡ; ḡw = θ0/d, clipped to
     * RMS 1, is θ0 / max(d, |θ0|); θ1 = θ0 − η(m1 + λ ḡw).
     */
    @ParameterizedTest
    @CsvSource({"0.5, 2.0", "-3.0, -0.25", "1e-6, 0.75", "1e-30, -1.5", "2.0, 1e-9", "-7e5, 3.0"})
    void firstStepOnAScalar(double g, double theta0) {
      State s = run(Algorithm.FADAM, SCALAR, new double[] {theta0}, DEF, new double[] {g});
      double epsHat = Math.min(1e-8, 1e-4 * Math.abs(g));
      double d = Math.abs(g) + epsHat;
      double m1 = 0.1 * (g / d);
      double gw = theta0 / Math.max(d, Math.abs(theta0));
      assertEquals(1, s.step);
      assertRel(g * g, s.slots.get("fim")[0], "f1");
      assertRel(m1, s.slots.get("m")[0], "m1");
      assertRel(theta0 - ETA * (m1 + LAMBDA * gw), s.theta[0], "theta1");
    }

    /**
     * ρ = 0.25: d = (g²)^0.25 + ε̂^0.5 = √|g| + √ε̂. For g = 4: d = 2 + 1e-4, ḡ = 4/d ≈ 2 is clipped
     * to c; ḡw = θ0/d = 0.5/d is below c either way.
     */
    @ParameterizedTest
    @ValueSource(doubles = {1.0, 0.5})
    void rhoQuarterClipsAScalarToC(double c) {
      Hyper h = DEF.withRho(0.25).withClip(c);
      State s = run(Algorithm.FADAM, SCALAR, new double[] {0.5}, h, new double[] {4.0});
      double d = 2 + 1e-4;
      double m1 = 0.1 * c;
      assertRel(m1, s.slots.get("m")[0], "m1");
      assertRel(0.5 - ETA * (m1 + LAMBDA * (0.5 / d)), s.theta[0], "theta1");
    }

    /** β̂2 at t = 1 is exactly 0; at t = 2 it is β2(1 − β2)/(1 − β2²) = β2/(1 + β2). */
    @ParameterizedTest
    @ValueSource(doubles = {0.999, 0.99, 0.98, 0.9, 0.5})
    void biasCorrectedBeta2(double beta2) {
      assertEquals(0.0, PaperReference.biasCorrectedBeta2(beta2, 1));
      assertRel(beta2 / (1 + beta2), PaperReference.biasCorrectedBeta2(beta2, 2), "beta2Hat(2)");
      // t = 3: β2 (1 − β2²)/(1 − β2³) = β2 (1 + β2)/(1 + β2 + β2²)
      assertRel(
          beta2 * (1 + beta2) / (1 + beta2 + beta2 * beta2),
          PaperReference.biasCorrectedBeta2(beta2, 3),
          "beta2Hat(3)");
    }

    /** Two steps: f2 = β̂2 g1² + (1 − β̂2) g2² = (β2 g1² + g2²)/(1 + β2). */
    @Test
    void secondStepFisher() {
      State s =
          run(Algorithm.FADAM, SCALAR, new double[] {1}, DEF, new double[] {0.5}, new double[] {-2});
      assertEquals(2, s.step);
      assertRel((0.999 * 0.25 + 4) / 1.999, s.slots.get("fim")[0], "f2");
    }

    /**
     * Unrolling Alg.1 l.6-7: f_t = (1 − β2) Σ_i β2^(t−i) g_i² / (1 − β2^t), the bias-corrected
     * EMA, whatever f0 was.
     */
    @Test
    void fisherIsTheBiasCorrectedEma() {
      Hyper h = DEF.withBeta2(0.9);
      State s = PaperReference.init(Algorithm.FADAM, new int[] {3}, new double[] {1, 2, 3}, h);
      double[][] gs = new double[12][3];
      for (int t = 1; t <= 12; t++) {
        for (int k = 0; k < 3; k++) {
          gs[t - 1][k] = (k + 1) * ((t % 4) - 1.5);
        }
        PaperReference.step(Algorithm.FADAM, s, gs[t - 1], h);
        for (int k = 0; k < 3; k++) {
          double sum = 0;
          for (int i = 1; i <= t; i++) {
            sum += Math.pow(0.9, t - i) * gs[i - 1][k] * gs[i - 1][k];
          }
          double expected = (1 - 0.9) * sum / (1 - Math.pow(0.9, t));
          assertRel(expected, s.slots.get("fim")[k], "f_" + t + "[" + k + "]");
        }
      }
    }

    /** Section 3.4.4: bias correction ignores the initial value of the FIM. */
    @ParameterizedTest
    @EnumSource(
        value = Algorithm.class,
        names = {"FADAM", "FADAFACTOR", "ADAFACTOR"})
    void initialFisherIsIgnored(Algorithm alg) {
      Hyper h = DEF.withFactoredMinDim(2).withEps(alg == Algorithm.ADAFACTOR ? 1e-30 : 1e-8);
      int[] shape = {2, 3};
      double[] theta0 = {0.5, -1, 2, 0.25, -0.75, 1.5};
      double[] g = {0.1, -0.2, 0.3, 0, 2, -1};
      State fresh = run(alg, shape, theta0, h, g);
      State odd = PaperReference.init(alg, shape, theta0, h);
      odd.slots.forEach((name, a) -> Arrays.fill(a, name.equals("m") ? 0.0 : 123.0));
      PaperReference.step(alg, odd, g, h);
      assertArrayEquals(fresh.theta, odd.theta);
      for (String name : fresh.slots.keySet()) {
        assertArrayEquals(fresh.slots.get(name), odd.slots.get(name), name);
      }
    }

    /**
     * Vector, t = 1, c = 0.5: ε̂ = ε (RMS(g) is large), d = |g| + ε; ḡ = g/d has RMS ≈ 1 and is
     * scaled to RMS c; ḡw = θ0/d has RMS ≈ 0.74 and is scaled to RMS c too.
     */
    @Test
    void clipOfGradientAndWeightDecayOnAVector() {
      Hyper h = DEF.withClip(0.5);
      double[] g = {3, -4, 0.5, 2};
      double[] theta0 = {1, -1, 0.5, 2};
      State s = run(Algorithm.FADAM, new int[] {4}, theta0, h, g);
      double[] gBar = new double[4];
      double[] gw = new double[4];
      for (int k = 0; k < 4; k++) {
        double d = Math.abs(g[k]) + 1e-8;
        gBar[k] = g[k] / d;
        gw[k] = theta0[k] / d;
      }
      assertTrue(rootMeanSquare(gBar) > 0.5 && rootMeanSquare(gw) > 0.5, "both are clipped");
      gBar = clipped(gBar, 0.5);
      gw = clipped(gw, 0.5);
      for (int k = 0; k < 4; k++) {
        double m1 = 0.1 * gBar[k];
        assertRel(m1, s.slots.get("m")[k], "m1[" + k + "]");
        assertRel(theta0[k] - ETA * (m1 + LAMBDA * gw[k]), s.theta[k], "theta1[" + k + "]");
      }
    }

    /**
     * An all-zero gradient in the first step: f = 0 and ε̂ = 0, so every denominator is 0 and ḡ
     * and ḡw are 0 (docs/design.md, "Zero denominators"): θ and m do not move. Elements whose
     * gradient stays 0 keep d = 0.
     */
    @Test
    void zeroDenominatorGivesZero() {
      double[] theta0 = {1, -2, 0.5, 3};
      State s = run(Algorithm.FADAM, new int[] {4}, theta0, DEF, new double[4]);
      assertArrayEquals(theta0, s.theta);
      assertArrayEquals(new double[4], s.slots.get("m"));
      assertArrayEquals(new double[4], s.slots.get("fim"));
      PaperReference.step(Algorithm.FADAM, s, new double[] {0.5, 0, 0, 0}, DEF);
      PaperReference.step(Algorithm.FADAM, s, new double[4], DEF);
      assertAllFinite(s);
      assertEquals(0.0, s.slots.get("m")[1]);
      assertNotEquals(theta0[1], s.theta[1], "the weight decay of element 1 acts in step 2");
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Algorithm 2 (FAdafactor): closed forms.

  @Nested
  class FAdafactorClosedForms {

    private final Hyper h2 = DEF.withFactoredMinDim(2);

    /**
     * For g = u vᵀ, R = u² Σv², C = v² Σu², 1ᵀR = Σu² Σv², so f = R C / 1ᵀR = u² v² = g²
     * exactly: the first FAdafactor step equals the first FAdam step.
     */
    @Test
    void rankOneSquareIsFactoredExactly() {
      double[] u = {0.5, -2};
      double[] v = {1, 3, -0.25};
      double[] g = new double[6];
      for (int i = 0; i < 2; i++) {
        for (int j = 0; j < 3; j++) {
          g[i * 3 + j] = u[i] * v[j];
        }
      }
      double[] theta0 = {0.3, -0.7, 1.1, 2.0, -0.05, 0.9};
      State fa = run(Algorithm.FADAFACTOR, new int[] {2, 3}, theta0, h2, g);
      State f = run(Algorithm.FADAM, new int[] {2, 3}, theta0, h2, g);
      assertTrue(PaperReference.isFactored(Algorithm.FADAFACTOR, new int[] {2, 3}, h2));
      double su = 0.25 + 4;
      double sv = 1 + 9 + 0.0625;
      assertRel(new double[] {0.25 * sv, 4 * sv}, fa.slots.get("fim_row"), "R");
      assertRel(new double[] {1 * su, 9 * su, 0.0625 * su}, fa.slots.get("fim_col"), "C");
      assertRel(f.slots.get("m"), fa.slots.get("m"), "m");
      assertRel(f.theta, fa.theta, "theta");
    }

    /** Leading dimensions are batch dimensions: a rank-1 square per batch element is exact too. */
    @Test
    void rankOnePerBatchElement() {
      double[] g = {
        1, 2, -3, /**/ 2, 4, -6, // batch 0: (1, 2)ᵀ (1, 2, -3)
        0.5, 0, 1, /**/ -1.5, 0, -3 // batch 1: (1, -3)ᵀ (0.5, 0, 1)
      };
      double[] theta0 = new double[12];
      for (int k = 0; k < 12; k++) {
        theta0[k] = 0.1 * k - 0.45;
      }
      int[] shape = {2, 2, 3};
      State fa = run(Algorithm.FADAFACTOR, shape, theta0, h2, g);
      State f = run(Algorithm.FADAM, shape, theta0, h2, g);
      assertRel(new double[] {14, 56, 1.25, 11.25}, fa.slots.get("fim_row"), "R");
      assertRel(new double[] {5, 20, 45, 2.5, 0, 10}, fa.slots.get("fim_col"), "C");
      assertRel(f.slots.get("m"), fa.slots.get("m"), "m");
      assertRel(f.theta, fa.theta, "theta");
    }

    /** t = 1, general g: R_i = Σ_j g², C_j = Σ_i g², f = R_i C_j / Σ_i R_i. */
    @Test
    void firstStepFollowsTheFactoredFormula() {
      int n = 3;
      int m = 4;
      double[] g = {0.5, -1, 2, 0, 3, 0.25, -0.5, 1, -2, 1.5, 0.75, -0.125};
      double[] theta0 = {1, -1, 0.5, 0.25, -2, 3, 0.125, -0.5, 1.5, -0.75, 2, 0.01};
      State s = run(Algorithm.FADAFACTOR, new int[] {n, m}, theta0, h2, g);
      double[] r = new double[n];
      double[] c = new double[m];
      double sumR = 0;
      for (int i = 0; i < n; i++) {
        for (int j = 0; j < m; j++) {
          r[i] += g[i * m + j] * g[i * m + j];
          c[j] += g[i * m + j] * g[i * m + j];
        }
        sumR += r[i];
      }
      assertRel(r, s.slots.get("fim_row"), "R");
      assertRel(c, s.slots.get("fim_col"), "C");
      assertFalse(s.slots.containsKey("fim"));
      double[] gBar = new double[n * m];
      double[] gw = new double[n * m];
      for (int i = 0; i < n; i++) {
        for (int j = 0; j < m; j++) {
          double d = Math.sqrt(r[i] * c[j] / sumR) + 1e-8; // ε̂ = ε: RMS(g) ≫ 1e-4
          gBar[i * m + j] = g[i * m + j] / d;
          gw[i * m + j] = theta0[i * m + j] / d;
        }
      }
      gBar = clipped(gBar, 1);
      gw = clipped(gw, 1);
      for (int k = 0; k < n * m; k++) {
        double m1 = 0.1 * gBar[k];
        assertRel(m1, s.slots.get("m")[k], "m[" + k + "]");
        assertRel(theta0[k] - ETA * (m1 + LAMBDA * gw[k]), s.theta[k], "theta[" + k + "]");
      }
    }

    /** Tensors that are not factored (vectors, scalars, small matrices) are FAdam, bit for bit. */
    @ParameterizedTest
    @MethodSource("org.fadam.reference.PaperReferenceTest#unfactoredShapes")
    void unfactoredIsFAdam(int[] shape) {
      assertFalse(PaperReference.isFactored(Algorithm.FADAFACTOR, shape, DEF));
      int n = Math.max(1, Arrays.stream(shape).reduce(1, (a, b) -> a * b));
      double[] theta0 = new double[n];
      for (int k = 0; k < n; k++) {
        theta0[k] = Math.sin(k + 1.0);
      }
      State fa = PaperReference.init(Algorithm.FADAFACTOR, shape, theta0, DEF);
      State f = PaperReference.init(Algorithm.FADAM, shape, theta0, DEF);
      for (int t = 1; t <= 5; t++) {
        double[] g = new double[n];
        for (int k = 0; k < n; k++) {
          g[k] = Math.cos(3.0 * k + t);
        }
        PaperReference.step(Algorithm.FADAFACTOR, fa, g, DEF);
        PaperReference.step(Algorithm.FADAM, f, g, DEF);
      }
      assertEquals(Set.of("m", "fim"), fa.slots.keySet());
      assertArrayEquals(f.theta, fa.theta);
      assertArrayEquals(f.slots.get("m"), fa.slots.get("m"));
      assertArrayEquals(f.slots.get("fim"), fa.slots.get("fim"));
    }
  }

  static Stream<Arguments> unfactoredShapes() {
    return Stream.of(
            SCALAR, new int[] {200}, new int[] {2, 3}, new int[] {3, 200}, new int[] {200, 3},
            new int[] {127, 128}, new int[] {2, 128, 127})
        .map(s -> Arguments.of((Object) s));
  }

  // ---------------------------------------------------------------------------------------------
  // Algorithm 3 (Adam) and Algorithm 4 (Adafactor): closed forms.

  @Nested
  class AdamAndAdafactorClosedForms {

    /**
     * Adam t = 1: m = (1 − β1) g, f = (1 − β2) g², m̂ = g, f̂ = g², ḡ = g/(|g| + ε), then the clip
     * and θ1 = θ0 − η(ḡ + λ θ0).
     */
    @ParameterizedTest
    @ValueSource(doubles = {1.0, 0.5})
    void adamFirstStep(double c) {
      Hyper h = DEF.withClip(c);
      double[] g = {0.5, -2, 0, 1e-3};
      double[] theta0 = {1, -0.5, 0.25, 2};
      State s = run(Algorithm.ADAM, new int[] {4}, theta0, h, g);
      double[] gBar = new double[4];
      for (int k = 0; k < 4; k++) {
        gBar[k] = g[k] / (Math.abs(g[k]) + 1e-8);
        assertRel(0.1 * g[k], s.slots.get("m")[k], "m[" + k + "]");
        assertRel(0.001 * g[k] * g[k], s.slots.get("fim")[k], "f[" + k + "]");
      }
      gBar = clipped(gBar, c);
      for (int k = 0; k < 4; k++) {
        assertRel(theta0[k] - ETA * (gBar[k] + LAMBDA * theta0[k]), s.theta[k], "theta[" + k + "]");
      }
    }

    /** Adam t = 2: m̂ = (β1 g1 + g2)/(1 + β1), f̂ = (β2 g1² + g2²)/(1 + β2). */
    @Test
    void adamSecondStep() {
      State s =
          run(Algorithm.ADAM, SCALAR, new double[] {0.5}, DEF, new double[] {1}, new double[] {-0.5});
      double theta1 = 0.5 - ETA * (1 / (1 + 1e-8) + LAMBDA * 0.5);
      double mHat = (0.9 - 0.5) / 1.9;
      double fHat = (0.999 + 0.25) / 1.999;
      double gBar = mHat / (Math.sqrt(fHat) + 1e-8);
      assertRel(theta1 - ETA * (gBar + LAMBDA * theta1), s.theta[0], "theta2");
      assertRel(0.9 * 0.1 + 0.1 * -0.5, s.slots.get("m")[0], "m2 (uncorrected)");
      assertRel(0.999 * 0.001 + 0.001 * 0.25, s.slots.get("fim")[0], "f2 (uncorrected)");
    }

    /**
     * Adafactor t = 1, unfactored: f = g² + ε, ḡ = g/√f, m = (1 − β1) η ḡ, θ1 = θ0 − (m + λ θ0).
     */
    @Test
    void adafactorFirstStepUnfactored() {
      Hyper h = DEF.withEps(1e-30).withLr(0.01);
      double[] g = {0.5, -2, 0, 1e-3};
      double[] theta0 = {1, -0.5, 0.25, 2};
      State s = run(Algorithm.ADAFACTOR, new int[] {4}, theta0, h, g);
      for (int k = 0; k < 4; k++) {
        double f = g[k] * g[k] + 1e-30;
        double m1 = 0.1 * 0.01 * (g[k] / Math.sqrt(f)); // RMS(ḡ) < 1: no clip
        assertRel(f, s.slots.get("fim")[k], "f[" + k + "]");
        assertRel(m1, s.slots.get("m")[k], "m[" + k + "]");
        assertRel(theta0[k] - (m1 + LAMBDA * theta0[k]), s.theta[k], "theta[" + k + "]");
      }
    }

    /** Adafactor t = 1, factored: R_i = Σ_j (g² + ε), C_j = Σ_i (g² + ε), f = R C / 1ᵀR. */
    @Test
    void adafactorFirstStepFactored() {
      Hyper h = DEF.withEps(1e-3).withFactoredMinDim(2).withClip(0.5);
      int n = 2;
      int m = 3;
      double[] g = {0.5, -1, 2, 0, 3, 0.25};
      double[] theta0 = {1, -1, 0.5, 0.25, -2, 3};
      State s = run(Algorithm.ADAFACTOR, new int[] {n, m}, theta0, h, g);
      double[] r = new double[n];
      double[] c = new double[m];
      for (int i = 0; i < n; i++) {
        for (int j = 0; j < m; j++) {
          r[i] += g[i * m + j] * g[i * m + j] + 1e-3;
          c[j] += g[i * m + j] * g[i * m + j] + 1e-3;
        }
      }
      assertRel(r, s.slots.get("fim_row"), "R");
      assertRel(c, s.slots.get("fim_col"), "C");
      double[] gBar = new double[n * m];
      for (int i = 0; i < n; i++) {
        for (int j = 0; j < m; j++) {
          gBar[i * m + j] = g[i * m + j] / Math.sqrt(r[i] * c[j] / (r[0] + r[1]));
        }
      }
      gBar = clipped(gBar, 0.5);
      for (int k = 0; k < n * m; k++) {
        double m1 = 0.1 * ETA * gBar[k];
        assertRel(m1, s.slots.get("m")[k], "m[" + k + "]");
        assertRel(theta0[k] - (m1 + LAMBDA * theta0[k]), s.theta[k], "theta[" + k + "]");
      }
    }

    /** Alg.4 l.12-13: η scales the momentum only; the weight decay does not depend on η. */
    @Test
    void adafactorWeightDecayIgnoresLearningRate() {
      Hyper h = DEF.withEps(1e-30).withLr(0);
      State s = run(Algorithm.ADAFACTOR, new int[] {2}, new double[] {2, -4}, h, new double[] {1, 1});
      assertArrayEquals(new double[2], s.slots.get("m"));
      assertRel(new double[] {2 - LAMBDA * 2, -4 + LAMBDA * 4}, s.theta, "theta");
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Edge cases.

  @Nested
  class Edges {

    @ParameterizedTest
    @EnumSource(Algorithm.class)
    void zeroGradientsStayFinite(Algorithm alg) {
      Hyper h = DEF.withFactoredMinDim(2).withEps(alg == Algorithm.ADAFACTOR ? 1e-30 : 1e-8);
      for (int[] shape : new int[][] {SCALAR, {5}, {3, 4}, {2, 3, 4}}) {
        int n = Arrays.stream(shape).reduce(1, (a, b) -> a * b);
        double[] theta0 = new double[n];
        Arrays.fill(theta0, 0.75);
        State s = run(alg, shape, theta0, h, new double[n], new double[n], new double[n]);
        assertEquals(3, s.step);
        assertAllFinite(s);
        assertArrayEquals(new double[n], s.slots.get("m"), "m stays 0");
        if (alg == Algorithm.FADAM || alg == Algorithm.FADAFACTOR) {
          assertArrayEquals(theta0, s.theta, "θ does not move on a zero denominator");
        }
      }
    }

    /** Also with ε = 0 for Adam and Adafactor, where √f + ε or √f is exactly 0. */
    @ParameterizedTest
    @EnumSource(
        value = Algorithm.class,
        names = {"ADAM", "ADAFACTOR"})
    void zeroGradientsWithZeroEpsStayFinite(Algorithm alg) {
      Hyper h = DEF.withFactoredMinDim(2).withEps(0);
      State s = run(alg, new int[] {2, 2}, new double[] {1, 2, 3, 4}, h, new double[4]);
      assertAllFinite(s);
    }

    @ParameterizedTest
    @EnumSource(Algorithm.class)
    void tinyGradientsStayFinite(Algorithm alg) {
      Hyper h = DEF.withFactoredMinDim(2).withEps(alg == Algorithm.ADAFACTOR ? 1e-30 : 1e-8);
      for (double scale : new double[] {1e-30, 1e-150}) {
        double[] g = {scale, -2 * scale, 0, 0.5 * scale, scale, -scale};
        State s = run(alg, new int[] {2, 3}, new double[] {1, -1, 2, -2, 0.5, 3}, h, g, g);
        assertAllFinite(s);
        if (alg == Algorithm.FADAM) {
          // t = 1: ḡ = g/(|g| + ε̂) with ε̂ = ε2 RMS(g) ≪ |g|: the step sees only signs.
          State one = run(alg, new int[] {2, 3}, new double[6], h, g);
          double epsHat = 1e-4 * scale * Math.sqrt(7.25 / 6);
          assertRel(0.1 * scale / (scale + epsHat), one.slots.get("m")[0], "m[0]");
        }
      }
    }

    @ParameterizedTest
    @EnumSource(Algorithm.class)
    void emptyTensors(Algorithm alg) {
      Hyper h = DEF.withFactoredMinDim(2);
      for (int[] shape : new int[][] {{0}, {3, 0}, {0, 4}, {0, 2, 2}, {2, 0, 3}}) {
        State s = run(alg, shape, new double[0], h, new double[0], new double[0]);
        assertEquals(2, s.step, Arrays.toString(shape));
        assertEquals(0, s.theta.length);
        s.slots.values().forEach(a -> assertEquals(0, a.length));
      }
      assertEquals(
          alg == Algorithm.FADAFACTOR || alg == Algorithm.ADAFACTOR,
          PaperReference.isFactored(alg, new int[] {0, 2, 2}, h));
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Shapes, slots, validation.

  @Nested
  class Contract {

    @Test
    void factoringRule() {
      Hyper h = DEF;
      for (Algorithm alg : new Algorithm[] {Algorithm.FADAFACTOR, Algorithm.ADAFACTOR}) {
        assertTrue(PaperReference.isFactored(alg, new int[] {128, 128}, h));
        assertTrue(PaperReference.isFactored(alg, new int[] {2, 130, 129}, h));
        assertFalse(PaperReference.isFactored(alg, new int[] {127, 128}, h));
        assertFalse(PaperReference.isFactored(alg, new int[] {128, 127}, h));
        assertFalse(PaperReference.isFactored(alg, new int[] {130, 129, 2}, h));
        assertFalse(PaperReference.isFactored(alg, new int[] {1000}, h));
        assertFalse(PaperReference.isFactored(alg, SCALAR, h));
        assertTrue(PaperReference.isFactored(alg, new int[] {2, 2}, h.withFactoredMinDim(2)));
        assertFalse(PaperReference.isFactored(alg, new int[] {1, 5}, h.withFactoredMinDim(2)));
      }
      for (Algorithm alg : new Algorithm[] {Algorithm.FADAM, Algorithm.ADAM}) {
        assertFalse(PaperReference.isFactored(alg, new int[] {256, 256}, h));
        assertFalse(PaperReference.isFactored(alg, new int[] {2, 2}, h.withFactoredMinDim(1)));
      }
    }

    @Test
    void rowAndColumnShapes() {
      assertArrayEquals(new int[] {2, 130}, PaperReference.rowShape(new int[] {2, 130, 129}));
      assertArrayEquals(new int[] {2, 129}, PaperReference.colShape(new int[] {2, 130, 129}));
      assertArrayEquals(new int[] {4}, PaperReference.rowShape(new int[] {4, 5}));
      assertArrayEquals(new int[] {5}, PaperReference.colShape(new int[] {4, 5}));
      assertThrows(IllegalArgumentException.class, () -> PaperReference.rowShape(new int[] {3}));
      assertThrows(IllegalArgumentException.class, () -> PaperReference.colShape(SCALAR));
    }

    @Test
    void initialSlots() {
      int[] big = {2, 130, 129};
      int n = 2 * 130 * 129;
      double[] theta = new double[n];
      State fa = PaperReference.init(Algorithm.FADAFACTOR, big, theta, DEF);
      assertEquals(Set.of("m", "fim_row", "fim_col"), fa.slots.keySet());
      assertEquals(n, fa.slots.get("m").length);
      assertTrue(Arrays.stream(fa.slots.get("m")).allMatch(v -> v == 0));
      assertEquals(260, fa.slots.get("fim_row").length);
      assertEquals(258, fa.slots.get("fim_col").length);
      assertTrue(Arrays.stream(fa.slots.get("fim_row")).allMatch(v -> v == 1));
      assertTrue(Arrays.stream(fa.slots.get("fim_col")).allMatch(v -> v == 1));
      State af = PaperReference.init(Algorithm.ADAFACTOR, big, theta, DEF);
      assertEquals(Set.of("m", "fim_row", "fim_col"), af.slots.keySet());
      assertTrue(Arrays.stream(af.slots.get("fim_row")).allMatch(v -> v == 0));
      assertTrue(Arrays.stream(af.slots.get("fim_col")).allMatch(v -> v == 0));
      State f = PaperReference.init(Algorithm.FADAM, big, theta, DEF);
      assertEquals(Set.of("m", "fim"), f.slots.keySet());
      assertTrue(Arrays.stream(f.slots.get("fim")).allMatch(v -> v == 1));
      State a = PaperReference.init(Algorithm.ADAM, new int[] {3}, new double[3], DEF);
      assertArrayEquals(new double[3], a.slots.get("fim"));
      assertArrayEquals(new double[3], a.slots.get("m"));
      State scalar = PaperReference.init(Algorithm.FADAM, SCALAR, new double[] {2}, DEF);
      assertArrayEquals(new double[] {1}, scalar.slots.get("fim"));
      assertEquals(0, scalar.step);
    }

    @Test
    void initCopiesItsArguments() {
      int[] shape = {2};
      double[] theta = {1, 2};
      State s = PaperReference.init(Algorithm.FADAM, shape, theta, DEF);
      shape[0] = 5;
      theta[0] = 9;
      assertArrayEquals(new int[] {2}, s.shape);
      assertArrayEquals(new double[] {1, 2}, s.theta);
      State c = s.copy();
      c.slots.get("m")[0] = 4;
      c.theta[1] = 7;
      assertEquals(0.0, s.slots.get("m")[0]);
      assertEquals(2.0, s.theta[1]);
    }

    @Test
    void defaultsAndWithers() {
      assertEquals(new Hyper(0.001, 0.9, 0.999, 1e-8, 1e-4, 1, 0.001, 0.5, 128), DEF);
      assertEquals(0.5, DEF.withLr(0.5).lr());
      assertEquals(0.5, DEF.withBeta1(0.5).beta1());
      assertEquals(0.5, DEF.withBeta2(0.5).beta2());
      assertEquals(0.5, DEF.withEps(0.5).eps());
      assertEquals(0.5, DEF.withEps2(0.5).eps2());
      assertEquals(0.5, DEF.withClip(0.5).clip());
      assertEquals(0.5, DEF.withWeightDecay(0.5).weightDecay());
      assertEquals(0.75, DEF.withRho(0.75).rho());
      assertEquals(7, DEF.withFactoredMinDim(7).factoredMinDim());
      assertEquals(DEF, DEF.withBeta2(0.5).withBeta2(0.999));
      assertEquals(Double.POSITIVE_INFINITY, DEF.withClip(Double.POSITIVE_INFINITY).clip());
    }

    @Test
    void hyperRejectsBadValuesAndNaN() {
      IllegalArgumentException e =
          assertThrows(IllegalArgumentException.class, () -> DEF.withBeta2(1.5));
      assertEquals("`beta2` must be in [0, 1); got 1.5", e.getMessage());
      assertThrows(IllegalArgumentException.class, () -> DEF.withBeta2(1));
      assertThrows(IllegalArgumentException.class, () -> DEF.withBeta1(Double.NaN));
      assertThrows(IllegalArgumentException.class, () -> DEF.withLr(Double.NaN));
      assertThrows(IllegalArgumentException.class, () -> DEF.withLr(-1));
      assertThrows(IllegalArgumentException.class, () -> DEF.withEps(-1e-8));
      assertThrows(IllegalArgumentException.class, () -> DEF.withEps2(Double.NaN));
      assertThrows(IllegalArgumentException.class, () -> DEF.withClip(0));
      assertThrows(IllegalArgumentException.class, () -> DEF.withWeightDecay(-0.1));
      assertThrows(IllegalArgumentException.class, () -> DEF.withRho(0));
      assertThrows(IllegalArgumentException.class, () -> DEF.withRho(Double.NaN));
      assertThrows(IllegalArgumentException.class, () -> DEF.withFactoredMinDim(0));
    }

    @Test
    void argumentsAreChecked() {
      IllegalArgumentException e =
          assertThrows(
              IllegalArgumentException.class,
              () -> PaperReference.init(Algorithm.FADAM, new int[] {2, 3}, new double[5], DEF));
      assertTrue(e.getMessage().contains("theta"), e.getMessage());
      assertThrows(
          IllegalArgumentException.class,
          () -> PaperReference.init(Algorithm.FADAM, new int[] {-1}, new double[0], DEF));
      assertThrows(
          IllegalArgumentException.class,
          () -> PaperReference.init(Algorithm.FADAM, null, new double[0], DEF));
      assertThrows(
          IllegalArgumentException.class,
          () -> PaperReference.init(null, SCALAR, new double[1], DEF));
      assertThrows(
          IllegalArgumentException.class,
          () -> PaperReference.init(Algorithm.FADAM, SCALAR, new double[0], DEF));

      State s = PaperReference.init(Algorithm.FADAM, new int[] {2, 3}, new double[6], DEF);
      e =
          assertThrows(
              IllegalArgumentException.class,
              () -> PaperReference.step(Algorithm.FADAM, s, new double[5], DEF));
      assertTrue(e.getMessage().contains("grad"), e.getMessage());
      assertThrows(
          IllegalArgumentException.class,
          () -> PaperReference.step(Algorithm.FADAM, s, null, DEF));
      // A state made for the unfactored form cannot take a factored step.
      e =
          assertThrows(
              IllegalArgumentException.class,
              () ->
                  PaperReference.step(
                      Algorithm.FADAFACTOR, s, new double[6], DEF.withFactoredMinDim(2)));
      assertTrue(e.getMessage().contains("fim_row"), e.getMessage());
      assertEquals(0, s.step, "a rejected step changes nothing");
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Cross-check against an independent numpy float64 implementation.

  /**
   * One numpy case: θ0[k] = ((5k mod 13) − 6.5)/8, g_t[k] = ((7k + 3t mod 11) − 5)/4 · scale for
   * t = 1..steps; expected = {Δθ[0], Δθ[last], Σ|Δθ|, Σ|m|, Σf} or {..., Σ|m|, ΣR, ΣC}.
   */
  record NumpyCase(
      String name, Algorithm alg, int[] shape, int steps, double scale, Hyper h, double[] expected) {
    @Override
    public String toString() {
      return name;
    }
  }

  private static NumpyCase c(
      String name, Algorithm alg, int[] shape, int steps, double scale, Hyper h, double... e) {
    return new NumpyCase(name, alg, shape, steps, scale, h, e);
  }

  static Stream<NumpyCase> numpyCases() {
    return Stream.of(
        c("fadam_scalar", Algorithm.FADAM, new int[] {}, 3, 1.0,
            DEF,
            5.3815408474156001e-05, 5.3815408474156001e-05, 5.3815408474156001e-05,
            7.5929542406978440e-02, 4.3775018760421663e-01),
        c("fadam_vector5", Algorithm.FADAM, new int[] {5}, 3, 1.0,
            DEF,
            9.0097295626367924e-06, -5.1977644425084402e-05, 7.6561854211765895e-04,
            3.0133764120882867e-01, 2.8955624097222530e+00),
        c("fadam_2x3_rho025_clip05", Algorithm.FADAM, new int[] {2, 3}, 3, 1.0,
            DEF.withRho(0.25).withClip(0.5),
            1.3524961488875498e-05, -4.9554317262501257e-05, 4.7589632460250803e-04,
            1.3598230041475862e-01, 3.6044168612222776e+00),
        c("fadafactor_2x3x4_min2", Algorithm.FADAFACTOR, new int[] {2, 3, 4}, 3, 1.0,
            DEF.withFactoredMinDim(2),
            -1.2153045125362638e-05, -1.5971129733860501e-04, 4.4437826773647202e-03,
            1.9648254230110898e+00, 1.4895562451430617e+01, 1.4895562451430617e+01),
        c("fadafactor_3x4_min2_rho025_clip05", Algorithm.FADAFACTOR, new int[] {3, 4}, 3, 1.0,
            DEF.withFactoredMinDim(2).withRho(0.25).withClip(0.5),
            -5.8262616975390813e-07, 2.3772039516312127e-06, 1.1543537678019855e-03,
            5.1723612589149381e-01, 7.3127501876042169e+00, 7.3127501876042160e+00),
        c("fadafactor_2x130x129", Algorithm.FADAFACTOR, new int[] {2, 130, 129}, 2, 1.0,
            DEF,
            9.0896085728431331e-05, 8.7591652141560949e-05, 5.5138672317603508e+00,
            3.3360723036743557e+03, 2.0962031203101549e+04, 2.0962031203101549e+04),
        c("adam_vector5", Algorithm.ADAM, new int[] {5}, 3, 1.0,
            DEF,
            8.1144046105297019e-04, -7.9620757580278756e-04, 6.4637770416299256e-03,
            1.7424999999999990e-01, 8.6780034375000068e-03),
        c("adam_2x3_clip05", Algorithm.ADAM, new int[] {2, 3}, 3, 1.0,
            DEF.withClip(0.5),
            3.2977206764650546e-04, -4.1206734461818328e-04, 4.3982040648343698e-03,
            2.3174999999999990e-01, 1.0802440937500008e-02),
        c("adafactor_vector5", Algorithm.ADAFACTOR, new int[] {5}, 3, 1.0,
            DEF.withEps(1e-30),
            2.4392527482248738e-03, -2.3891110527801684e-04, 6.6710606116267834e-03,
            3.0133764549375111e-04, 2.8955624097222530e+00),
        c("adafactor_3x4_min2", Algorithm.ADAFACTOR, new int[] {3, 4}, 3, 1.0,
            DEF.withEps(1e-30).withFactoredMinDim(2),
            2.4289992372685809e-03, 1.3229487696038156e-03, 1.6737920272846728e-02,
            1.0145638169268179e-03, 7.3127501876042169e+00, 7.3127501876042160e+00),
        c("adafactor_2x130x129", Algorithm.ADAFACTOR, new int[] {2, 130, 129}, 2, 1.0,
            DEF.withEps(1e-30),
            1.7129650371978666e-03, -2.8681177126094193e-04, 2.7743807814491014e+01,
            3.3360723458735730e+00, 2.0962031203101549e+04, 2.0962031203101549e+04),
        c("fadam_zero_vector5", Algorithm.FADAM, new int[] {5}, 2, 0.0,
            DEF,
            0.0, 0.0, 0.0, 0.0, 0.0),
        c("fadafactor_zero_3x4_min2", Algorithm.FADAFACTOR, new int[] {3, 4}, 2, 0.0,
            DEF.withFactoredMinDim(2),
            0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
        c("adam_zero_vector5", Algorithm.ADAM, new int[] {5}, 2, 0.0,
            DEF,
            1.6249991874328629e-06, -1.2499993750497707e-07, 4.1249979374699541e-06, 0.0, 0.0),
        c("adafactor_zero_3x4_min2", Algorithm.ADAFACTOR, new int[] {3, 4}, 2, 0.0,
            DEF.withEps(1e-30).withFactoredMinDim(2),
            1.6241875000000405e-03, 8.7456249999995350e-04, 1.0244874999999945e-02, 0.0,
            1.2000000000000001e-29, 1.2000000000000001e-29),
        c("fadam_tiny_2x3", Algorithm.FADAM, new int[] {2, 3}, 3, 1e-30,
            DEF,
            1.9403958317787406e-05, -1.4080351944900649e-04, 9.3571813761438027e-04,
            2.9261875892491257e-01, 3.6044168612222779e-60),
        c("fadafactor_tiny_3x4_min2", Algorithm.FADAFACTOR, new int[] {3, 4}, 3, 1e-30,
            DEF.withFactoredMinDim(2),
            -5.2942020478674578e-07, 1.4767895878786685e-05, 2.2474814804229609e-03,
            1.0145091640034360e+00, 7.3127501876042168e-60, 7.3127501876042168e-60),
        c("adam_tiny_vector5", Algorithm.ADAM, new int[] {5}, 3, 1e-30,
            DEF,
            2.4374975624574802e-06, -1.8749981250260062e-07, 6.1874938125025536e-06,
            1.7424999999999997e-31, 8.6780034375000091e-63),
        c("adafactor_tiny_3x4_min2", Algorithm.ADAFACTOR, new int[] {3, 4}, 3, 1e-30,
            DEF.withEps(1e-30).withFactoredMinDim(2),
            2.4350633124999854e-03, 1.3111879374999580e-03, 1.5359630124999996e-02,
            8.1799999999999990e-19, 1.2000000000000001e-29, 1.2000000000000001e-29));
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("numpyCases")
  void matchesNumpy(NumpyCase nc) {
    int n = Arrays.stream(nc.shape()).reduce(1, (a, b) -> a * b);
    double[] theta0 = new double[n];
    for (int k = 0; k < n; k++) {
      theta0[k] = (((k * 5) % 13) - 6.5) / 8.0;
    }
    State s = PaperReference.init(nc.alg(), nc.shape(), theta0, nc.h());
    for (int t = 1; t <= nc.steps(); t++) {
      double[] g = new double[n];
      for (int k = 0; k < n; k++) {
        g[k] = (((k * 7 + t * 3) % 11) - 5) / 4.0 * nc.scale();
      }
      PaperReference.step(nc.alg(), s, g, nc.h());
    }
    assertEquals(nc.steps(), s.step);
    assertAllFinite(s);
    double[] e = nc.expected();
    // Δθ = θ_T − θ0 is known to REL plus the rounding of θ itself (a few ulps of θ0).
    assertClose(e[0], s.theta[0] - theta0[0], REL * Math.abs(e[0]) + 4 * Math.ulp(theta0[0]), "Δθ[0]");
    assertClose(
        e[1],
        s.theta[n - 1] - theta0[n - 1],
        REL * Math.abs(e[1]) + 4 * Math.ulp(theta0[n - 1]),
        "Δθ[last]");
    double absDelta = 0;
    double ulps = 0;
    for (int k = 0; k < n; k++) {
      absDelta += Math.abs(s.theta[k] - theta0[k]);
      ulps += 4 * Math.ulp(theta0[k]);
    }
    assertClose(e[2], absDelta, REL * e[2] + ulps, "Σ|Δθ|");
    assertRel(e[3], Arrays.stream(s.slots.get("m")).map(Math::abs).sum(), "Σ|m|");
    if (e.length == 5) {
      assertEquals(Set.of("m", "fim"), s.slots.keySet());
      assertRel(e[4], Arrays.stream(s.slots.get("fim")).sum(), "Σf");
    } else {
      assertEquals(Set.of("m", "fim_row", "fim_col"), s.slots.keySet());
      assertRel(e[4], Arrays.stream(s.slots.get("fim_row")).sum(), "ΣR");
      assertRel(e[5], Arrays.stream(s.slots.get("fim_col")).sum(), "ΣC");
    }
  }
}
