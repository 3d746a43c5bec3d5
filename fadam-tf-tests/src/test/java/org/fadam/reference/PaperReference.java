package org.fadam.reference;

import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;
import org.fadam.Algorithm;

/**
 * Float64 reference of the four optimizers of the FAdam paper (arXiv 2405.12807v2): Algorithm 1
 * (FAdam), Algorithm 2 (FAdafactor), Algorithm 3 (Adam) and Algorithm 4 (Adafactor), with the
 * numerical conventions of docs/design.md, "Numerical conventions" where the paper is silent. It is the test oracle the
 * TensorFlow optimizers are compared against, so every line of a step cites its Algorithm line.
 * An algorithm is named by the library's {@link Algorithm} constant, the one switch over
 * algorithms in the project, but only its name is used: which algorithms factor, the initial
 * values and every line of the math are written here again, independently of the library.
 *
 * <p>Symbols:
 *
 * <pre>
 *   paper   Hyper / State          slot
 *   θ       State.theta
 *   t       State.step
 *   η       lr
 *   β1      beta1
 *   β2      beta2
 *   ε       eps
 *   ε2      eps2
 *   c       clip
 *   λ       weightDecay
 *   ρ       rho
 *   m       momentum               "m"
 *   f       diagonal empirical FIM "fim"      (FAdam, unfactored FAdafactor, Adam, Adafactor)
 *   R       row factor of f        "fim_row"  (factored FAdafactor / Adafactor), shape[:-1]
 *   C       column factor of f     "fim_col"  (factored FAdafactor / Adafactor), shape[:-2]+shape[-1:]
 * </pre>
 *
 * <p>Conventions (docs/design.md, "Numerical conventions"): {@code RMS(x) = sqrt(mean(x²))} over one whole tensor, 0 for an
 * empty tensor; {@code β̂2 = β2 (1 − β2^(t−1)) / (1 − β2^t)} in float64; where a denominator is
 * exactly 0 the quotient is 0; a tensor is factored iff its rank is ≥ 2 and its last two
 * dimensions are both ≥ {@code factoredMinDim} (FAdafactor and Adafactor only); {@code R} sums
 * {@code g²} over the last dimension, {@code C} over the second-last, leading dimensions are batch
 * dimensions; Adam's EMAs are stored uncorrected and corrected when used (Kingma &amp; Ba).
 * All arrays are row-major (C order); a scalar has shape {@code int[0]} and one element.
 */
public final class PaperReference {

  /** Slot name of the momentum m. */
  public static final String M = "m";
  /** Slot name of the full diagonal empirical FIM f. */
  public static final String FIM = "fim";
  /** Slot name of the row factor R of f (one value per row: the last dimension reduced). */
  public static final String FIM_ROW = "fim_row";
  /** Slot name of the column factor C of f (one value per column: the second-last dimension reduced). */
  public static final String FIM_COL = "fim_col";

  private PaperReference() {}

  /**
   * Hyperparameters, doubles. Validated on construction; every check also fails on NaN.
   *
   * @param lr learning rate η, in [0, inf)
   * @param beta1 momentum decay β1, in [0, 1)
   * @param beta2 FIM decay β2, in [0, 1)
   * @param eps ε, in [0, inf) (the paper's Adafactor uses 1e-30)
   * @param eps2 ε2 of the adaptive epsilon, in [0, inf)
   * @param clip clip threshold c, in (0, inf] (infinity disables clipping)
   * @param weightDecay λ, in [0, inf)
   * @param rho FIM exponent ρ, in (0, inf)
   * @param factoredMinDim smallest last-two dimensions of a factored tensor, in [1, inf)
   */
  public record Hyper(
      double lr,
      double beta1,
      double beta2,
      double eps,
      double eps2,
      double clip,
      double weightDecay,
      double rho,
      int factoredMinDim) {

    /** Checks every field. */
    public Hyper {
      check(lr >= 0 && lr < Double.POSITIVE_INFINITY, "lr", "[0, inf)", lr);
      check(beta1 >= 0 && beta1 < 1, "beta1", "[0, 1)", beta1);
      check(beta2 >= 0 && beta2 < 1, "beta2", "[0, 1)", beta2);
      check(eps >= 0 && eps < Double.POSITIVE_INFINITY, "eps", "[0, inf)", eps);
      check(eps2 >= 0 && eps2 < Double.POSITIVE_INFINITY, "eps2", "[0, inf)", eps2);
      check(clip > 0, "clip", "(0, inf]", clip);
      check(
          weightDecay >= 0 && weightDecay < Double.POSITIVE_INFINITY,
          "weightDecay",
          "[0, inf)",
          weightDecay);
      check(rho > 0 && rho < Double.POSITIVE_INFINITY, "rho", "(0, inf)", rho);
      if (factoredMinDim < 1) {
        throw new IllegalArgumentException(
            "`factoredMinDim` must be in [1, inf); got " + factoredMinDim);
      }
    }

    private static void check(boolean ok, String name, String interval, double value) {
      if (!ok) {
        throw new IllegalArgumentException(
            "`" + name + "` must be in " + interval + "; got " + value);
      }
    }

    /**
     * The paper's defaults (Algorithm 1 line 1) with Adam's learning rate: lr 0.001, beta1 0.9,
     * beta2 0.999, eps 1e-8, eps2 1e-4, clip 1, weightDecay 0.001, rho 0.5, factoredMinDim 128.
     */
    public static Hyper paperDefaults() {
      return new Hyper(0.001, 0.9, 0.999, 1e-8, 1e-4, 1.0, 0.001, 0.5, 128);
    }

    public Hyper withLr(double v) {
      return new Hyper(v, beta1, beta2, eps, eps2, clip, weightDecay, rho, factoredMinDim);
    }

    public Hyper withBeta1(double v) {
      return new Hyper(lr, v, beta2, eps, eps2, clip, weightDecay, rho, factoredMinDim);
    }

    public Hyper withBeta2(double v) {
      return new Hyper(lr, beta1, v, eps, eps2, clip, weightDecay, rho, factoredMinDim);
    }

    public Hyper withEps(double v) {
      return new Hyper(lr, beta1, beta2, v, eps2, clip, weightDecay, rho, factoredMinDim);
    }

    public Hyper withEps2(double v) {
      return new Hyper(lr, beta1, beta2, eps, v, clip, weightDecay, rho, factoredMinDim);
    }

    public Hyper withClip(double v) {
      return new Hyper(lr, beta1, beta2, eps, eps2, v, weightDecay, rho, factoredMinDim);
    }

    public Hyper withWeightDecay(double v) {
      return new Hyper(lr, beta1, beta2, eps, eps2, clip, v, rho, factoredMinDim);
    }

    public Hyper withRho(double v) {
      return new Hyper(lr, beta1, beta2, eps, eps2, clip, weightDecay, v, factoredMinDim);
    }

    public Hyper withFactoredMinDim(int v) {
      return new Hyper(lr, beta1, beta2, eps, eps2, clip, weightDecay, rho, v);
    }
  }

  /** Mutable optimizer state of one tensor. Arrays are row-major (C order). */
  public static final class State {
    /** Shape of θ (a copy owned by the state). */
    public final int[] shape;
    /** Parameters θ, updated in place by {@link PaperReference#step}. */
    public double[] theta;
    /** Step count t: the number of steps taken. */
    public long step;
    /** Slots by name: {@link #M}, and {@link #FIM} or {@link #FIM_ROW} and {@link #FIM_COL}. */
    public final Map<String, double[]> slots;

    private State(int[] shape, double[] theta) {
      this.shape = shape.clone();
      this.theta = theta.clone();
      this.step = 0;
      this.slots = new LinkedHashMap<>();
    }

    /** A deep copy (shape, θ, t and every slot array). */
    public State copy() {
      State c = new State(shape, theta);
      c.step = step;
      for (Map.Entry<String, double[]> e : slots.entrySet()) {
        c.slots.put(e.getKey(), e.getValue().clone());
      }
      return c;
    }

    /** Shape, step and the arrays (those of more than 16 elements by their length only). */
    @Override
    public String toString() {
      StringBuilder b = new StringBuilder("State{shape=").append(Arrays.toString(shape));
      b.append(", step=").append(step).append(", theta=").append(brief(theta));
      for (Map.Entry<String, double[]> e : slots.entrySet()) {
        b.append(", ").append(e.getKey()).append('=').append(brief(e.getValue()));
      }
      return b.append('}').toString();
    }

    private static String brief(double[] a) {
      return a == null ? "null" : a.length <= 16 ? Arrays.toString(a) : "double[" + a.length + "]";
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Shapes.

  /**
   * Whether {@code alg} keeps f as the factors R and C for a tensor of this shape: only FAdafactor
   * and Adafactor, only for rank ≥ 2 with both last dimensions ≥ {@code h.factoredMinDim()}.
   */
  public static boolean isFactored(Algorithm alg, int[] shape, Hyper h) {
    requireNonNull(alg, "alg");
    checkShape(shape);
    requireNonNull(h, "h");
    boolean factors = switch (alg) {
      case FADAM, ADAM -> false; // Alg. 1, 3: the full diagonal f always
      case FADAFACTOR, ADAFACTOR -> true; // Alg. 2, 4: R and C for large matrices
    };
    if (!factors) {
      return false;
    }
    int r = shape.length;
    return r >= 2 && shape[r - 1] >= h.factoredMinDim() && shape[r - 2] >= h.factoredMinDim();
  }

  /** Shape of R: {@code shape} without its last dimension. Needs rank ≥ 2. */
  public static int[] rowShape(int[] shape) {
    checkMatrixShape(shape);
    return Arrays.copyOf(shape, shape.length - 1);
  }

  /** Shape of C: {@code shape} without its second-last dimension. Needs rank ≥ 2. */
  public static int[] colShape(int[] shape) {
    checkMatrixShape(shape);
    int r = shape.length;
    int[] c = Arrays.copyOf(shape, r - 1);
    c[r - 2] = shape[r - 1];
    return c;
  }

  // ---------------------------------------------------------------------------------------------
  // Initialization.

  /** The state before the first step (t = 0) of a tensor with parameters {@code theta}. */
  public static State init(Algorithm alg, int[] shape, double[] theta, Hyper h) {
    requireNonNull(alg, "alg");
    requireNonNull(theta, "theta");
    requireNonNull(h, "h");
    int n = size(shape);
    if (theta.length != n) {
      throw new IllegalArgumentException(
          "theta has length " + theta.length + " but shape " + Arrays.toString(shape)
              + " has " + n + " elements");
    }
    State s = new State(shape, theta); // Alg.1-4 l.2: θ0, t ← 0
    s.slots.put(M, new double[n]); // Alg.1-4 l.2: m0 ← 0
    // FAdam and FAdafactor initialize the FIM to 1 (Section 3.4.4), Adam and Adafactor to 0.
    double f0 = switch (alg) {
      case FADAM, FADAFACTOR -> 1.0;
      case ADAM, ADAFACTOR -> 0.0;
    };
    if (isFactored(alg, shape, h)) {
      s.slots.put(FIM_ROW, filled(size(rowShape(shape)), f0)); // Alg.2/4 l.2: R0 ← 1n / 0n
      s.slots.put(FIM_COL, filled(size(colShape(shape)), f0)); // Alg.2/4 l.2: C0 ← 1m / 0m
    } else {
      s.slots.put(FIM, filled(n, f0)); // Alg.1 l.2: f0 ← 1N; Alg.3 l.2: f0 ← 0N
    }
    return s;
  }

  // ---------------------------------------------------------------------------------------------
  // One step.

  /** One step of {@code alg}, in place on {@code s}; {@code grad} is row-major like θ. */
  public static void step(Algorithm alg, State s, double[] grad, Hyper h) {
    step(alg, s, grad, null, h);
  }

  /**
   * One step whose Fisher EMA takes {@code gradSquared} as its g² (paper Eq. 20: the mean of the
   * micro-batches' squared gradients) instead of {@code grad}², or {@code grad}² where it is null
   * (Eq. 21, the algorithms as printed).
   */
  public static void step(Algorithm alg, State s, double[] grad, double[] gradSquared, Hyper h) {
    requireNonNull(alg, "alg");
    requireNonNull(s, "s");
    requireNonNull(grad, "grad");
    requireNonNull(h, "h");
    int n = size(s.shape);
    if (s.theta == null || s.theta.length != n) {
      throw new IllegalArgumentException(
          "state theta has length " + (s.theta == null ? "null" : s.theta.length)
              + " but shape " + Arrays.toString(s.shape) + " has " + n + " elements");
    }
    if (grad.length != n) {
      throw new IllegalArgumentException(
          "grad has length " + grad.length + " but shape " + Arrays.toString(s.shape)
              + " has " + n + " elements");
    }
    boolean factored = isFactored(alg, s.shape, h);
    requireSlot(alg, s, M, n, factored);
    if (factored) {
      requireSlot(alg, s, FIM_ROW, size(rowShape(s.shape)), factored);
      requireSlot(alg, s, FIM_COL, size(colShape(s.shape)), factored);
    } else {
      requireSlot(alg, s, FIM, n, factored);
    }
    Runnable rule = switch (alg) {
      case FADAM -> () -> fisherAdamStep(s, grad, sq(grad, gradSquared, 0.0), h, false);
      case FADAFACTOR -> () -> fisherAdamStep(s, grad, sq(grad, gradSquared, 0.0), h, factored);
      case ADAM -> () -> adamStep(s, grad, sq(grad, gradSquared, 0.0), h);
      case ADAFACTOR -> () -> adafactorStep(s, grad, sq(grad, gradSquared, h.eps()), h, factored);
    };
    rule.run();
  }

  /** Algorithm 1 (factored = false) and Algorithm 2 (factored = true): they differ only in f. */
  private static void fisherAdamStep(State s, double[] g, double[] g2, Hyper h, boolean factored) {
    double[] theta = s.theta; // θ_{t−1}
    double[] m = s.slots.get(M);
    int n = theta.length;
    s.step += 1; // Alg.1 l.4, Alg.2 l.4: t ← t + 1
    double beta2Hat = biasCorrectedBeta2(h.beta2(), s.step); // Alg.1 l.6, Alg.2 l.6
    // g2: g_t² (no ε inside the EMA: Appendix B.3), or Eq. 20's mean of the micro-batches' g²
    double[] f;
    if (factored) {
      f = factoredFisher(s, g2, beta2Hat); // Alg.2 l.7-9: R, C, f = R C / 1ᵀR
    } else {
      f = s.slots.get(FIM);
      for (int k = 0; k < n; k++) {
        f[k] = beta2Hat * f[k] + (1 - beta2Hat) * g2[k]; // Alg.1 l.7: EMA diagonal empirical FIM
      }
    }
    double epsHat = Math.min(h.eps(), h.eps2() * rms(g)); // Alg.1 l.8, Alg.2 l.10: adaptive ε
    double epsTerm = Math.pow(epsHat, 2 * h.rho()); // Alg.1 l.9, Alg.2 l.11: ε̂^(2ρ)
    double[] d = new double[n];
    for (int k = 0; k < n; k++) {
      d[k] = Math.pow(f[k], h.rho()) + epsTerm; // Alg.1 l.9, Alg.2 l.11: f^ρ + ε̂^(2ρ)
    }
    double[] gBar = divide(g, d); // Alg.1 l.9, Alg.2 l.11: invariant natural gradient
    clipByRms(gBar, h.clip()); // Alg.1 l.10, Alg.2 l.12: clip the gradient
    for (int k = 0; k < n; k++) {
      m[k] = h.beta1() * m[k] + (1 - h.beta1()) * gBar[k]; // Alg.1 l.11, Alg.2 l.13: EMA momentum
    }
    double[] gw = divide(theta, d); // Alg.1 l.12, Alg.2 l.14: weight decay θ_{t−1}/(f^ρ + ε̂^(2ρ))
    clipByRms(gw, h.clip()); // Alg.1 l.13, Alg.2 l.15: clip weight decay
    for (int k = 0; k < n; k++) {
      theta[k] = theta[k] - h.lr() * (m[k] + h.weightDecay() * gw[k]); // Alg.1 l.14, Alg.2 l.16
    }
  }

  /** Algorithm 3, with the EMAs stored uncorrected and corrected when used (Kingma &amp; Ba). */
  private static void adamStep(State s, double[] g, double[] g2, Hyper h) {
    double[] theta = s.theta; // θ_{t−1}
    double[] m = s.slots.get(M);
    double[] f = s.slots.get(FIM);
    int n = theta.length;
    s.step += 1; // Alg.3 l.4: t ← t + 1
    for (int k = 0; k < n; k++) {
      f[k] = h.beta2() * f[k] + (1 - h.beta2()) * g2[k]; // Alg.3 l.6: EMA of g² (uncorrected)
      m[k] = h.beta1() * m[k] + (1 - h.beta1()) * g[k]; // Alg.3 l.7: EMA of g (uncorrected)
    }
    double fCorrection = 1 - Math.pow(h.beta2(), s.step); // Alg.3 l.6: 1 − β2^t
    double mCorrection = 1 - Math.pow(h.beta1(), s.step); // Alg.3 l.7: 1 − β1^t
    double[] gBar = new double[n];
    for (int k = 0; k < n; k++) {
      double fHat = f[k] / fCorrection; // Alg.3 l.6: bias-corrected f
      double mHat = m[k] / mCorrection; // Alg.3 l.7: bias-corrected m
      double den = Math.sqrt(fHat) + h.eps(); // Alg.3 l.8: √f + ε
      gBar[k] = den == 0 ? 0.0 : mHat / den; // Alg.3 l.8 (0 where the denominator is 0)
    }
    clipByRms(gBar, h.clip()); // Alg.3 l.9: clip
    for (int k = 0; k < n; k++) {
      theta[k] = theta[k] - h.lr() * (gBar[k] + h.weightDecay() * theta[k]); // Alg.3 l.10
    }
  }

  /** Algorithm 4 (factored), and its diagonal form f ← β̂2 f + (1 − β̂2)(g² + ε) otherwise. */
  private static void adafactorStep(State s, double[] g, double[] g2eps, Hyper h, boolean factored) {
    double[] theta = s.theta; // θ_{t−1}
    double[] m = s.slots.get(M);
    int n = theta.length;
    s.step += 1; // Alg.4 l.4: t ← t + 1
    double beta2Hat = biasCorrectedBeta2(h.beta2(), s.step); // Alg.4 l.6
    // g2eps: Alg.4 l.7-8: g² + ε 1n 1mᵀ
    double[] f;
    if (factored) {
      f = factoredFisher(s, g2eps, beta2Hat); // Alg.4 l.7-9: R, C, f = R C / 1ᵀR
    } else {
      f = s.slots.get(FIM);
      for (int k = 0; k < n; k++) {
        f[k] = beta2Hat * f[k] + (1 - beta2Hat) * g2eps[k]; // Alg.4 l.7-9, unfactored
      }
    }
    double[] sqrtF = new double[n];
    for (int k = 0; k < n; k++) {
      sqrtF[k] = Math.sqrt(f[k]); // Alg.4 l.10: √f
    }
    double[] gBar = divide(g, sqrtF); // Alg.4 l.10: g/√f
    clipByRms(gBar, h.clip()); // Alg.4 l.11: clip
    for (int k = 0; k < n; k++) {
      m[k] = h.beta1() * m[k] + (1 - h.beta1()) * h.lr() * gBar[k]; // Alg.4 l.12: EMA of η ḡ
    }
    for (int k = 0; k < n; k++) {
      theta[k] = theta[k] - (m[k] + h.weightDecay() * theta[k]); // Alg.4 l.13
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Kernels, named after the paper's terms.

  /** Alg.1 l.6: β̂2 = β2 (1 − β2^(t−1)) / (1 − β2^t); 0 at t = 1. */
  static double biasCorrectedBeta2(double beta2, long t) {
    return beta2 * (1 - Math.pow(beta2, t - 1)) / (1 - Math.pow(beta2, t));
  }

  /**
   * RMS(x) = sqrt(mean(x²)) over the whole tensor; 0 for an empty tensor. Computed as
   * M·sqrt(mean((x/M)²)) with M = max|x|, so no square overflows or underflows, and the sum is
   * compensated (Neumaier): the reference stays ~1e-16 accurate on 10⁴ elements and more, where a
   * plain running sum drifts by ~1e-12.
   */
  static double rms(double[] x) {
    double max = 0;
    for (double v : x) {
      max = Math.max(max, Math.abs(v));
    }
    if (max == 0 || Double.isInfinite(max) || Double.isNaN(max)) {
      return x.length == 0 ? 0.0 : max;
    }
    double sum = 0;
    double compensation = 0;
    for (double v : x) {
      double term = (v / max) * (v / max);
      double t = sum + term;
      compensation += Math.abs(sum) >= Math.abs(term) ? (sum - t) + term : (term - t) + sum;
      sum = t;
    }
    return max * Math.sqrt((sum + compensation) / x.length);
  }

  /** Alg.1 l.10 / l.13: x ← x / max(1, RMS(x)/c), in place. */
  static void clipByRms(double[] x, double c) {
    double scale = Math.max(1.0, rms(x) / c);
    for (int k = 0; k < x.length; k++) {
      x[k] = x[k] / scale;
    }
  }

  /** Element-wise a/b, with 0 where b is exactly 0 (docs/design.md, "Zero denominators"). */
  private static double[] divide(double[] a, double[] b) {
    double[] q = new double[a.length];
    for (int k = 0; k < a.length; k++) {
      q[k] = b[k] == 0 ? 0.0 : a[k] / b[k];
    }
    return q;
  }

  /** g² + eps, element-wise. */
  /** g² + eps, or the given squares + eps (Eq. 20), checked for length. */
  private static double[] sq(double[] g, double[] given, double eps) {
    if (given == null) {
      return squares(g, eps);
    }
    if (given.length != g.length) {
      throw new IllegalArgumentException("gradSquared has length " + given.length + ", grad " + g.length);
    }
    double[] out = new double[given.length];
    for (int k = 0; k < out.length; k++) {
      out[k] = given[k] + eps;
    }
    return out;
  }

  private static double[] squares(double[] g, double eps) {
    double[] q = new double[g.length];
    for (int k = 0; k < g.length; k++) {
      q[k] = g[k] * g[k] + eps;
    }
    return q;
  }

  /**
   * Alg.2 l.7-9 and Alg.4 l.7-9 on the slots R and C of {@code s}, given the squared gradient
   * {@code sq} (g², or g² + ε for Adafactor); returns the full f. Leading dimensions are batch
   * dimensions; where 1ᵀR is exactly 0 (all of R is 0, so is C), f is 0.
   */
  private static double[] factoredFisher(State s, double[] sq, double beta2Hat) {
    int r = s.shape.length;
    int rows = s.shape[r - 2];
    int cols = s.shape[r - 1];
    int batch = size(Arrays.copyOf(s.shape, r - 2));
    double[] rowF = s.slots.get(FIM_ROW);
    double[] colF = s.slots.get(FIM_COL);
    double[] f = new double[sq.length];
    for (int b = 0; b < batch; b++) {
      int base = b * rows * cols;
      for (int i = 0; i < rows; i++) {
        double rowSum = 0; // (g² 1m)_i: sum over the last dimension
        for (int j = 0; j < cols; j++) {
          rowSum += sq[base + i * cols + j];
        }
        int ri = b * rows + i;
        rowF[ri] = beta2Hat * rowF[ri] + (1 - beta2Hat) * rowSum; // Alg.2 l.7, Alg.4 l.7: R
      }
      for (int j = 0; j < cols; j++) {
        double colSum = 0; // (1nᵀ g²)_j: sum over the second-last dimension
        for (int i = 0; i < rows; i++) {
          colSum += sq[base + i * cols + j];
        }
        int cj = b * cols + j;
        colF[cj] = beta2Hat * colF[cj] + (1 - beta2Hat) * colSum; // Alg.2 l.8, Alg.4 l.8: C
      }
      double sumR = 0; // 1nᵀ R
      for (int i = 0; i < rows; i++) {
        sumR += rowF[b * rows + i];
      }
      for (int i = 0; i < rows; i++) {
        for (int j = 0; j < cols; j++) {
          double rc = rowF[b * rows + i] * colF[b * cols + j];
          f[base + i * cols + j] = sumR == 0 ? 0.0 : rc / sumR; // Alg.2 l.9, Alg.4 l.9: R C / 1ᵀR
        }
      }
    }
    return f;
  }

  // ---------------------------------------------------------------------------------------------
  // Argument checks.

  private static double[] filled(int n, double v) {
    double[] a = new double[n];
    Arrays.fill(a, v);
    return a;
  }

  /** Number of elements of {@code shape} (1 for a scalar). */
  private static int size(int[] shape) {
    checkShape(shape);
    int n = 1;
    for (int d : shape) {
      try {
        n = Math.multiplyExact(n, d);
      } catch (ArithmeticException e) {
        throw new IllegalArgumentException(
            "shape " + Arrays.toString(shape) + " has more than " + Integer.MAX_VALUE
                + " elements", e);
      }
    }
    return n;
  }

  private static void checkShape(int[] shape) {
    requireNonNull(shape, "shape");
    for (int d : shape) {
      if (d < 0) {
        throw new IllegalArgumentException(
            "shape " + Arrays.toString(shape) + " has a negative dimension");
      }
    }
  }

  private static void checkMatrixShape(int[] shape) {
    checkShape(shape);
    if (shape.length < 2) {
      throw new IllegalArgumentException(
          "shape " + Arrays.toString(shape) + " has rank " + shape.length
              + "; row and column factors need rank >= 2");
    }
  }

  private static void requireSlot(Algorithm alg, State s, String name, int n, boolean factored) {
    double[] v = s.slots.get(name);
    if (v == null || v.length != n) {
      throw new IllegalArgumentException(
          "state of shape " + Arrays.toString(s.shape) + " for " + alg + " (factored=" + factored
              + ") needs slot \"" + name + "\" of length " + n + " but has "
              + (v == null ? "none" : "length " + v.length)
              + "; was it initialized with another algorithm or factoredMinDim?");
    }
  }

  private static void requireNonNull(Object o, String name) {
    if (o == null) {
      throw new IllegalArgumentException("`" + name + "` must not be null");
    }
  }
}
