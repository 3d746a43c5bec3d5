package org.fadam;

import java.util.function.Predicate;

/**
 * Ready-made weight-decay masks for {@link FisherTrainStep.Builder#weightDecayMask} (true =
 * decayed, as in optax). The paper's weight decay pulls every decayed tensor toward 0 at about
 * η·λ·c per step whatever its size (ḡw = θ/√f is nearly always clipped), so the usual rule keeps
 * it off layer-norm gains and biases.
 */
public final class WeightDecayMasks {

  private WeightDecayMasks() {}

  /** {@return a mask that decays the parameters of rank ≥ 2 (matrices, kernels, embeddings) only} */
  public static Predicate<ResourceVariable<?>> matrices() {
    return v -> v.shape().numDimensions() >= 2;
  }

  /**
   * {@return a mask of the drop-in optimizers ({@link FisherOptimizer#weightDecayMask}) that
   * decays every variable whose name matches none of the regular expressions}
   *
   * @param regexes patterns of the names to exclude, matched against the whole name ({@code
   *     ".*(bias|norm).*"})
   */
  public static Predicate<String> excludingNames(String... regexes) {
    Predicate<String> excluded = n -> false;
    for (String r : regexes) {
      java.util.regex.Pattern p = java.util.regex.Pattern.compile(r);
      excluded = excluded.or(n -> p.matcher(n).matches());
    }
    return excluded.negate();
  }
}
