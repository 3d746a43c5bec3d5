package org.fadam;

import java.util.Objects;
import org.tensorflow.types.TBfloat16;
import org.tensorflow.types.family.TFloating;

/**
 * The hyperparameters of FAdam, FAdafactor, the paper's Adam and the paper's Adafactor other than
 * the learning rate: immutable, validated when built. Defaults are the paper's (arXiv 2405.12807v2,
 * Algorithm 1 line 1; Algorithm 4 line 1 for {@code adafactorEpsilon}).
 *
 * <table>
 *   <caption>Paper symbols</caption>
 *   <tr><th>paper</th><th>option</th><th>default</th><th>allowed</th></tr>
 *   <tr><td>β1</td><td>{@code beta1}</td><td>{@value #BETA1_DEFAULT}</td><td>[0, 1)</td></tr>
 *   <tr><td>β2</td><td>{@code beta2}</td><td>{@value #BETA2_DEFAULT}</td><td>[0, 1)</td></tr>
 *   <tr><td>ε</td><td>{@code epsilon}</td><td>{@value #EPSILON_DEFAULT}</td><td>[0, ∞)</td></tr>
 *   <tr><td>ε (Alg. 4)</td><td>{@code adafactorEpsilon}</td><td>{@value #ADAFACTOR_EPSILON_DEFAULT}</td><td>[0, ∞)</td></tr>
 *   <tr><td>ε2</td><td>{@code epsilon2}</td><td>{@value #EPSILON2_DEFAULT}</td><td>[0, ∞)</td></tr>
 *   <tr><td>c</td><td>{@code clipThreshold}</td><td>{@value #CLIP_THRESHOLD_DEFAULT}</td><td>(0, ∞)</td></tr>
 *   <tr><td>λ</td><td>{@code weightDecay}</td><td>{@value #WEIGHT_DECAY_DEFAULT}</td><td>[0, ∞)</td></tr>
 *   <tr><td>ρ</td><td>{@code rho}</td><td>{@value #RHO_DEFAULT}</td><td>(0, ∞)</td></tr>
 *   <tr><td>—</td><td>{@code factoredMinDim}</td><td>{@value #FACTORED_MIN_DIM_DEFAULT}</td><td>[1, ∞)</td></tr>
 *   <tr><td>—</td><td>{@code nonFinite}</td><td>{@link NonFinitePolicy#SKIP}</td><td></td></tr>
 * </table>
 *
 * <p>Algorithm 4 (the paper's Adafactor) names a different quantity ε: a constant added to g²
 * inside the Fisher EMAs, 1e-30 by default, where Algorithms 1–3 add ε = 1e-8 to the denominator
 * (Algorithm 1: ε bounds the adaptive ε̂). The two defaults differ by 22 orders of magnitude, so
 * they are two options: {@link PaperAdafactor} reads {@code adafactorEpsilon} and ignores {@code
 * epsilon}, {@code epsilon2} and {@code rho}; the other three optimizers ignore {@code
 * adafactorEpsilon}. {@link #defaults()} therefore gives every algorithm its own paper defaults.
 *
 * <p>{@code factoredMinDim}: FAdafactor (and Adafactor) factors a tensor of rank ≥ 2 whose last two dimensions are
 * both at least this (the Adafactor reference implementation's rule); FAdam and Adam ignore it.
 *
 * <p>Values are doubles. The optimizers' {@code float} constructor arguments are converted through
 * their shortest decimal form ({@link #exact(float)}), so {@code 0.999f} means 0.999, not
 * 0.99900001287: in float64 arithmetic the difference would move {@code 1 − β2} by 1e-5.
 *
 * @param beta1 β1, the momentum decay
 * @param beta2 β2, the Fisher EMA decay
 * @param epsilon ε, the upper bound of the adaptive epsilon (Algorithms 1–2), added to √f (Algorithm 3)
 * @param adafactorEpsilon ε of Algorithm 4, added to g² inside the Fisher EMAs
 * @param epsilon2 ε2, the factor of RMS(g) in the adaptive epsilon
 * @param clipThreshold c, the RMS clip threshold of ḡ and ḡw
 * @param weightDecay λ, the Riemannian weight decay
 * @param rho ρ, the Fisher exponent
 * @param factoredMinDim the smallest last-two dimensions FAdafactor factors
 * @param nonFinite what a step with a non-finite gradient does
 * @param momentumDtype the dtype of the m slot ({@code TBfloat16.class}), or null for the working
 *     dtype (float32; float64 for float64 parameters)
 */
public record FisherOptions(
    double beta1,
    double beta2,
    double epsilon,
    double adafactorEpsilon,
    double epsilon2,
    double clipThreshold,
    double weightDecay,
    double rho,
    int factoredMinDim,
    NonFinitePolicy nonFinite,
    Class<? extends TFloating> momentumDtype) {

  /** Default β1. */
  public static final double BETA1_DEFAULT = 0.9;
  /** Default β2. */
  public static final double BETA2_DEFAULT = 0.999;
  /** Default ε. */
  public static final double EPSILON_DEFAULT = 1e-8;
  /** Default ε of Algorithm 4 (the paper's Adafactor), added to g² inside the EMAs. */
  public static final double ADAFACTOR_EPSILON_DEFAULT = 1e-30;
  /** Default ε2. */
  public static final double EPSILON2_DEFAULT = 1e-4;
  /** Default clip threshold c. */
  public static final double CLIP_THRESHOLD_DEFAULT = 1.0;
  /** Default weight decay λ. */
  public static final double WEIGHT_DECAY_DEFAULT = 0.001;
  /** Default Fisher exponent ρ. */
  public static final double RHO_DEFAULT = 0.5;
  /** Default FAdafactor factoring threshold. */
  public static final int FACTORED_MIN_DIM_DEFAULT = 128;
  /** Default learning rate η (Adam's). */
  public static final float LEARNING_RATE_DEFAULT = 0.001f;

  /** What a step does when a gradient holds NaN or ±Inf, or its sum of squares overflows. */
  public enum NonFinitePolicy {
    /**
     * Leave every parameter and slot of the step unchanged (step counters included) and count the
     * step in the optimizer's {@code skipped_steps} variable.
     */
    SKIP,
    /** Apply the step as computed: NaN and Inf reach the parameters and slots. */
    PROPAGATE,
    /** Fail the run with an error naming the variable whose gradient is not finite. */
    ERROR
  }

  /**
   * Validates every field; the message names the field, its allowed range and the value.
   *
   * @param beta1 β1, in [0, 1)
   * @param beta2 β2, in [0, 1)
   * @param epsilon ε, finite and ≥ 0
   * @param adafactorEpsilon Algorithm 4's ε, finite and ≥ 0
   * @param epsilon2 ε2, finite and ≥ 0
   * @param clipThreshold c, finite and &gt; 0
   * @param weightDecay λ, finite and ≥ 0
   * @param rho ρ, finite and &gt; 0
   * @param factoredMinDim the factoring threshold, ≥ 1
   * @param nonFinite the non-finite gradient policy, not null
   * @param momentumDtype {@code TBfloat16.class} to keep m in bfloat16, or null for the working
   *     dtype; not with β1 = 0, which keeps no m
   * @throws IllegalArgumentException naming the first field out of its range (NaN is out of every
   *     range)
   * @throws NullPointerException if {@code nonFinite} is null
   */
  public FisherOptions {
    unitInterval("beta1", beta1);
    unitInterval("beta2", beta2);
    nonNegative("epsilon", epsilon);
    nonNegative("adafactorEpsilon", adafactorEpsilon);
    nonNegative("epsilon2", epsilon2);
    positive("clipThreshold", clipThreshold);
    nonNegative("weightDecay", weightDecay);
    positive("rho", rho);
    if (factoredMinDim < 1) {
      throw new IllegalArgumentException(
          "`factoredMinDim` must be in [1, ∞); got " + factoredMinDim);
    }
    Objects.requireNonNull(nonFinite, "`nonFinite` must not be null");
    if (momentumDtype != null && momentumDtype != TBfloat16.class) {
      throw new IllegalArgumentException("`momentumDtype` must be TBfloat16 (or unset, the working dtype); got "
          + momentumDtype.getSimpleName());
    }
    if (momentumDtype != null && beta1 == 0) {
      throw new IllegalArgumentException("`momentumDtype` " + momentumDtype.getSimpleName()
          + " is set but `beta1` is 0, which keeps no m: drop one of them");
    }
  }

  /** {@return the paper's defaults, every field at its {@code *_DEFAULT} constant} */
  public static FisherOptions defaults() {
    return builder().build();
  }

  /** {@return a builder holding the paper's defaults} */
  public static Builder builder() {
    return new Builder();
  }

  /** {@return a builder holding these values, to derive options that differ in a few fields} */
  public Builder toBuilder() {
    return new Builder()
        .beta1(beta1)
        .beta2(beta2)
        .epsilon(epsilon)
        .adafactorEpsilon(adafactorEpsilon)
        .epsilon2(epsilon2)
        .clipThreshold(clipThreshold)
        .weightDecay(weightDecay)
        .rho(rho)
        .factoredMinDim(factoredMinDim)
        .nonFinite(nonFinite)
        .momentumDtype(momentumDtype);
  }

  /**
   * The double a user meant by a float literal: its shortest decimal representation, so that
   * {@code exact(0.999f) == 0.999}.
   *
   * @param value a float (NaN and ±∞ are returned as they are)
   * @return the double whose shortest decimal form is {@code value}'s
   */
  public static double exact(float value) {
    return Float.isFinite(value) ? Double.parseDouble(Float.toString(value)) : value;
  }

  /**
   * The paper's defaults with the framework Adam's three float arguments (see {@link #exact}).
   *
   * @param beta1 β1, in [0, 1)
   * @param beta2 β2, in [0, 1)
   * @param epsilon ε (the {@link #epsilon()} of Algorithms 1–3), finite and ≥ 0
   * @return the options
   * @throws IllegalArgumentException naming the argument out of its range
   */
  public static FisherOptions ofAdam(float beta1, float beta2, float epsilon) {
    return builder().beta1(exact(beta1)).beta2(exact(beta2)).epsilon(exact(epsilon)).build();
  }

  /**
   * The paper's defaults with the framework Adam's three float arguments read as Algorithm 4's
   * β1, β2 and ε (the ε inside the EMAs, {@link #adafactorEpsilon()}).
   *
   * @param beta1 β1, in [0, 1)
   * @param beta2 β2, in [0, 1)
   * @param epsilon Algorithm 4's ε, set as {@link #adafactorEpsilon()}, finite and ≥ 0
   * @return the options ({@link #epsilon()} keeps its default)
   * @throws IllegalArgumentException naming the argument out of its range
   */
  public static FisherOptions ofAdafactor(float beta1, float beta2, float epsilon) {
    return builder()
        .beta1(exact(beta1))
        .beta2(exact(beta2))
        .adafactorEpsilon(exact(epsilon))
        .build();
  }

  /** Checks a learning rate: finite and ≥ 0. */
  static double checkLearningRate(double learningRate) {
    nonNegative("learningRate", learningRate);
    return learningRate;
  }

  private static void unitInterval(String name, double v) {
    if (!(v >= 0 && v < 1)) {
      throw new IllegalArgumentException("`" + name + "` must be in [0, 1); got " + v);
    }
  }

  private static void nonNegative(String name, double v) {
    if (!(v >= 0 && v < Double.POSITIVE_INFINITY)) {
      throw new IllegalArgumentException("`" + name + "` must be in [0, ∞); got " + v);
    }
  }

  private static void positive(String name, double v) {
    if (!(v > 0 && v < Double.POSITIVE_INFINITY)) {
      throw new IllegalArgumentException("`" + name + "` must be in (0, ∞); got " + v);
    }
  }

  /** Mutable builder; {@link #build()} validates. */
  public static final class Builder {
    private double beta1 = BETA1_DEFAULT;
    private double beta2 = BETA2_DEFAULT;
    private double epsilon = EPSILON_DEFAULT;
    private double adafactorEpsilon = ADAFACTOR_EPSILON_DEFAULT;
    private double epsilon2 = EPSILON2_DEFAULT;
    private double clipThreshold = CLIP_THRESHOLD_DEFAULT;
    private double weightDecay = WEIGHT_DECAY_DEFAULT;
    private double rho = RHO_DEFAULT;
    private int factoredMinDim = FACTORED_MIN_DIM_DEFAULT;
    private NonFinitePolicy nonFinite = NonFinitePolicy.SKIP;
    private Class<? extends TFloating> momentumDtype;

    private Builder() {}

    /**
     * Sets β1, default {@value FisherOptions#BETA1_DEFAULT}.
     *
     * @param v β1, the momentum decay, in [0, 1)
     * @return this builder
     */
    public Builder beta1(double v) {
      beta1 = v;
      return this;
    }

    /**
     * Sets β2, default {@value FisherOptions#BETA2_DEFAULT}.
     *
     * @param v β2, the Fisher EMA decay, in [0, 1)
     * @return this builder
     */
    public Builder beta2(double v) {
      beta2 = v;
      return this;
    }

    /**
     * Sets ε, default {@value FisherOptions#EPSILON_DEFAULT}.
     *
     * @param v ε: the upper bound of the adaptive ε̂ (Algorithms 1–2), added to √f (Algorithm 3);
     *     finite and ≥ 0
     * @return this builder
     */
    public Builder epsilon(double v) {
      epsilon = v;
      return this;
    }

    /**
     * Sets Algorithm 4's ε, default {@value FisherOptions#ADAFACTOR_EPSILON_DEFAULT}.
     *
     * @param v Algorithm 4's ε, added to g² inside the Fisher EMAs, finite and ≥ 0
     * @return this builder
     */
    public Builder adafactorEpsilon(double v) {
      adafactorEpsilon = v;
      return this;
    }

    /**
     * Sets ε2, default {@value FisherOptions#EPSILON2_DEFAULT}.
     *
     * @param v ε2, the factor of RMS(g) in the adaptive ε̂, finite and ≥ 0
     * @return this builder
     */
    public Builder epsilon2(double v) {
      epsilon2 = v;
      return this;
    }

    /**
     * Sets c, default {@value FisherOptions#CLIP_THRESHOLD_DEFAULT}.
     *
     * @param v c, the RMS clip threshold, finite and &gt; 0
     * @return this builder
     */
    public Builder clipThreshold(double v) {
      clipThreshold = v;
      return this;
    }

    /**
     * Sets λ, default {@value FisherOptions#WEIGHT_DECAY_DEFAULT}.
     *
     * @param v λ, the weight decay, finite and ≥ 0
     * @return this builder
     */
    public Builder weightDecay(double v) {
      weightDecay = v;
      return this;
    }

    /**
     * Sets ρ, default {@value FisherOptions#RHO_DEFAULT}.
     *
     * @param v ρ, the Fisher exponent, finite and &gt; 0
     * @return this builder
     */
    public Builder rho(double v) {
      rho = v;
      return this;
    }

    /**
     * Sets the factoring threshold, default {@value FisherOptions#FACTORED_MIN_DIM_DEFAULT}.
     *
     * @param v the smallest last-two dimensions that (F)Adafactor factors, ≥ 1
     * @return this builder
     */
    public Builder factoredMinDim(int v) {
      factoredMinDim = v;
      return this;
    }

    /**
     * Sets the non-finite gradient policy, default {@link NonFinitePolicy#SKIP}.
     *
     * @param v what a step with a non-finite gradient does, not null
     * @return this builder
     */
    public Builder nonFinite(NonFinitePolicy v) {
      nonFinite = v;
      return this;
    }

    /**
     * Keeps m in a narrower dtype: {@code TBfloat16.class} halves its bytes (m is computed in the
     * working dtype and rounded to bfloat16, to nearest even, when stored). Default null: the
     * working dtype. β1 = 0 keeps no m at all.
     *
     * @param v {@code TBfloat16.class}, or null
     * @return this builder
     */
    public Builder momentumDtype(Class<? extends TFloating> v) {
      momentumDtype = v;
      return this;
    }

    /**
     * Validates and builds.
     *
     * @return the options
     * @throws IllegalArgumentException naming the first field out of its range
     * @throws NullPointerException if the non-finite policy was set to null
     */
    public FisherOptions build() {
      return new FisherOptions(
          beta1, beta2, epsilon, adafactorEpsilon, epsilon2, clipThreshold, weightDecay, rho,
          factoredMinDim, nonFinite, momentumDtype);
    }
  }
}
