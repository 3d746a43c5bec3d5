package org.fadam;

import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import org.tensorflow.ndarray.Shape;
import org.tensorflow.types.family.TType;

/**
 * The four algorithms of arXiv 2405.12807v2 that this library computes, and what each one keeps:
 * its slots, the options it reads, and the least memory traffic its step needs. Every path — the
 * drop-in optimizers ({@link FisherOptimizer#create}), the fused step ({@link
 * FisherTrainStep.Builder#algorithm}) and the tools — picks an algorithm by this type; the math
 * itself is one package-private rule shared by all of them.
 *
 * <table>
 *   <caption>The algorithms</caption>
 *   <tr><th>constant</th><th>paper</th><th>drop-in class</th><th>slots (unfactored / factored)</th></tr>
 *   <tr><td>{@link #FADAM}</td><td>Algorithm 1</td><td>{@link FAdam}</td><td>m, fim</td></tr>
 *   <tr><td>{@link #FADAFACTOR}</td><td>Algorithm 2</td><td>{@link FAdafactor}</td><td>m, fim / m, fim_row, fim_col</td></tr>
 *   <tr><td>{@link #ADAM}</td><td>Algorithm 3</td><td>{@link PaperAdam}</td><td>m, fim</td></tr>
 *   <tr><td>{@link #ADAFACTOR}</td><td>Algorithm 4</td><td>{@link PaperAdafactor}</td><td>m, fim / m, fim_row, fim_col</td></tr>
 * </table>
 *
 * <p>Every variable also has an int64 step counter, slot {@value #STEP}.
 */
public enum Algorithm {
  /** Algorithm 1, FAdam: the full diagonal empirical Fisher. */
  FADAM("FAdam", false, 1),
  /** Algorithm 2, FAdafactor: a factored Fisher for large matrices, the full diagonal elsewhere. */
  FADAFACTOR("FAdafactor", true, 1),
  /** Algorithm 3, the paper's Adam, read as Kingma &amp; Ba (docs/design.md, "Adam and Adafactor (Algorithms 3 and 4)"). */
  ADAM("Adam", false, 0),
  /** Algorithm 4, the paper's Adafactor: factored like FAdafactor, f0 = 0, ε inside the EMAs. */
  ADAFACTOR("Adafactor", true, 0);

  /** Slot of m, the momentum (Adam's first moment). */
  public static final String M = "m";
  /** Slot of f, the full diagonal (empirical) Fisher. */
  public static final String FIM = "fim";
  /** Slot of R, the row factor of a factored f. */
  public static final String FIM_ROW = "fim_row";
  /** Slot of C, the column factor of a factored f. */
  public static final String FIM_COL = "fim_col";
  /** The per-variable step counter t (int64). */
  public static final String STEP = "step";

  private final String displayName;
  private final boolean factors;
  /** The initial value of f (or R and C): Alg. 1, 2 l.2 f0 = 1; Alg. 3, 4 l.2 f0 = 0. */
  private final double fisherInit;

  Algorithm(String displayName, boolean factors, double fisherInit) {
    this.displayName = displayName;
    this.factors = factors;
    this.fisherInit = fisherInit;
  }

  /** {@return the paper's name: "FAdam", "FAdafactor", "Adam", "Adafactor"} */
  public String displayName() {
    return displayName;
  }

  /** {@return the name on command lines and in CSV files: the display name in lower case} */
  public String cliName() {
    return displayName.toLowerCase(Locale.ROOT);
  }

  /**
   * The algorithm whose {@link #cliName} (or display name, or constant name) is {@code name},
   * ignoring case.
   *
   * @param name a name such as "fadam", "FAdafactor" or "ADAM"
   * @return the algorithm
   * @throws IllegalArgumentException naming the known names
   */
  public static Algorithm parse(String name) {
    for (Algorithm a : values()) {
      if (a.cliName().equalsIgnoreCase(name) || a.name().equalsIgnoreCase(name)) {
        return a;
      }
    }
    throw new IllegalArgumentException("unknown algorithm '" + name + "'; known: "
        + String.join(", ", Arrays.stream(values()).map(Algorithm::cliName).toList()));
  }

  /**
   * Whether this algorithm keeps only row and column factors of f for a tensor of this shape:
   * FAdafactor and Adafactor do for rank ≥ 2 with both last dimensions ≥ {@link
   * FisherOptions#factoredMinDim()} (docs/design.md, "Factoring").
   *
   * @param shape the variable's shape
   * @param options the options (their {@code factoredMinDim})
   * @return true where f is factored
   */
  public boolean factors(Shape shape, FisherOptions options) {
    int r = shape.numDimensions();
    return factors
        && r >= 2
        && shape.get(r - 1) >= options.factoredMinDim()
        && shape.get(r - 2) >= options.factoredMinDim();
  }

  /**
   * The names of the float slots of a variable of this shape, in the order they are created (the
   * {@value #STEP} counter comes on top).
   *
   * @param shape the variable's shape
   * @param options the options
   * @return slot names such as [m, fim] or [m, fim_row, fim_col]
   */
  public List<String> slotNames(Shape shape, FisherOptions options) {
    return slots(shape, options).stream().map(SlotSpec::name).toList();
  }

  /**
   * The options this algorithm reads (the learning rate aside), in the order {@code toString}
   * lists them; every other field of {@link FisherOptions} is ignored by it.
   *
   * @return option names as in {@link FisherOptions}
   */
  public List<String> optionNames() {
    return switch (this) {
      case FADAM -> List.of("beta1", "beta2", "epsilon", "epsilon2", "clipThreshold", "weightDecay",
          "rho", "nonFinite");
      case FADAFACTOR -> List.of("beta1", "beta2", "epsilon", "epsilon2", "clipThreshold",
          "weightDecay", "rho", "factoredMinDim", "nonFinite");
      case ADAM -> List.of("beta1", "beta2", "epsilon", "clipThreshold", "weightDecay", "nonFinite");
      case ADAFACTOR -> List.of("beta1", "beta2", "adafactorEpsilon", "clipThreshold", "weightDecay",
          "factoredMinDim", "nonFinite");
    };
  }

  /**
   * The paper's defaults for this algorithm (its line 1): {@link FisherOptions#defaults()}, whose
   * fields give every algorithm its own line 1 (Algorithm 4's ε is the separate {@code
   * adafactorEpsilon}).
   *
   * @return the default options
   */
  public FisherOptions defaultOptions() {
    return FisherOptions.defaults();
  }

  /**
   * The bytes per parameter that one optimizer step of this algorithm must at least read and write
   * (the gradient given, the loss not counted): each pass the algorithm needs reads its inputs
   * once and writes its outputs once. With p the bytes of a parameter (and of its gradient) and s
   * = 4 (float32 slots; 8 for float64 parameters), and m's bytes counted as s (2 in bfloat16, none
   * where β1 = 0):
   *
   * <ul>
   *   <li>FAdam: Σg² for RMS(g) (Alg. 1 l.8) reads g (p); the clip sums RMS(ḡ) and RMS(ḡw)
   *       (l.10, l.13) read g, f and θ (2p + s); the last pass reads g, θ, f, m and writes f, m,
   *       θ (3p + 4s): {@code 6p + 5s}. Without weight decay the clip pass reads no θ: {@code 5p
   *       + 5s}.
   *   <li>FAdafactor on a factored tensor: the same passes with no full-size f (R and C are
   *       summed in the first pass): {@code 6p + 2s}, {@code 5p + 2s} without weight decay;
   *       unfactored it is FAdam's.
   *   <li>Adam: one pass reads g, f, m and writes f, m with Σḡ² (p + 4s), the next reads f, m, θ
   *       and writes θ (2p + 2s): {@code 3p + 6s}.
   *   <li>Adafactor on a factored tensor: R and C read g (p); the clip reads g (p); the last pass
   *       reads g, m, θ and writes m, θ (3p + 2s): {@code 5p + 2s}; unfactored, the clip pass
   *       reads g and f (p + s) and the last reads g, f, m, θ and writes f, m, θ (3p + 4s):
   *       {@code 4p + 5s}.
   * </ul>
   *
   * @param shape the parameter's shape
   * @param options the options (their {@code factoredMinDim} and {@code weightDecay})
   * @param parameterBytes bytes of one element of the parameter (4 float32, 2 bfloat16, 8 float64)
   * @return bytes per parameter
   */
  public int minimumBytesPerParameter(Shape shape, FisherOptions options, int parameterBytes) {
    int p = parameterBytes;
    int s = parameterBytes == 8 ? 8 : 4; // slots: float64 for float64 parameters, else float32
    // m: none where β1 = 0, 2 B in bfloat16, else a slot's
    int m = options.beta1() == 0 ? 0 : options.momentumDtype() != null ? 2 : s;
    boolean decay = options.weightDecay() != 0;
    boolean factored = factors(shape, options);
    return switch (this) {
      case FADAM -> (decay ? 6 : 5) * p + 3 * s + 2 * m; // Σg²; clip sums (g, f, θ); g, θ, f, m → f, m, θ
      case FADAFACTOR -> factored
          ? (decay ? 6 : 5) * p + 2 * m // as FAdam, R and C instead of a full-size f
          : FADAM.minimumBytesPerParameter(shape, options, parameterBytes);
      // g, f, m → f, m (Σḡ²); f, m, θ → θ (β1 = 0: m̂ = g, so that pass reads g instead of m)
      case ADAM -> (options.beta1() == 0 ? 4 : 3) * p + 3 * s + 3 * m;
      case ADAFACTOR -> factored ? 5 * p + 2 * m : 4 * p + 3 * s + 2 * m; // R, C; clip; g, m, θ → m, θ
    };
  }

  /**
   * A slot: its name, shape, initial value and dtype (null: the working dtype).
   *
   * @param name the slot's name
   * @param shape its shape
   * @param init its initial value
   * @param type its dtype, or null for the working dtype
   */
  record SlotSpec(String name, Shape shape, double init, Class<? extends TType> type) {}

  /**
   * The float slots of a variable of this shape (the int64 step counter comes on top): without m
   * where β1 = 0 (the update then takes the clipped natural gradient itself), m in {@link
   * FisherOptions#momentumDtype} where set.
   */
  List<SlotSpec> slots(Shape shape, FisherOptions o) {
    List<SlotSpec> out = new java.util.ArrayList<>();
    for (SlotSpec s : fullSlots(shape, o)) {
      if (!s.name().equals(M)) {
        out.add(s);
      } else if (o.beta1() != 0) {
        out.add(new SlotSpec(M, s.shape(), s.init(), o.momentumDtype()));
      }
    }
    return List.copyOf(out);
  }

  /** Every float slot of a variable of this shape, m included, in the working dtype. */
  private List<SlotSpec> fullSlots(Shape shape, FisherOptions o) {
    if (factors(shape, o)) {
      int r = shape.numDimensions();
      long[] dims = shape.asArray();
      long[] row = Arrays.copyOf(dims, r - 1); // R reduces the last axis
      long[] col = Arrays.copyOf(dims, r - 1);
      col[r - 2] = dims[r - 1]; // C reduces the second-last axis
      return List.of(
          new SlotSpec(M, shape, 0, null), // Alg. 2, 4 l.2: m0 = 0
          new SlotSpec(FIM_ROW, Shape.of(row), fisherInit, null), // Alg. 2 l.2: R0 = 1; Alg. 4 l.2: R0 = 0
          new SlotSpec(FIM_COL, Shape.of(col), fisherInit, null)); // Alg. 2 l.2: C0 = 1; Alg. 4 l.2: C0 = 0
    }
    // Alg. 1 l.2: m0 = 0, f0 = 1; Alg. 3 l.2: m0 = f0 = 0; Alg. 4 l.2 unfactored: f0 = 0
    return List.of(new SlotSpec(M, shape, 0, null), new SlotSpec(FIM, shape, fisherInit, null));
  }

  /** Whether the step needs Σg² (RMS(g) of the adaptive ε, Alg. 1 l.8) without a policy. */
  boolean needsGradientStats() {
    return this == FADAM || this == FADAFACTOR;
  }
}
