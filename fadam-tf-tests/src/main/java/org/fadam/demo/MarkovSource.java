package org.fadam.demo;

import java.util.Arrays;
import java.util.List;
import java.util.Random;

/**
 * A sparse random Markov chain of order 2 over {@code V} symbols whose entropy rate is known
 * exactly: the demo's synthetic language, so every optimizer's loss can be compared with the best
 * loss any model can reach.
 *
 * <h2>The chain</h2>
 *
 * The state is the pair {@code (a, b)} of the last two symbols; there are {@code V²} pair-states,
 * indexed {@code a·V + b}. From context {@code (a, b)} the next symbol {@code c} is drawn from
 * {@code K(a, b)} successors with probabilities {@code P(c | a, b)}, and the state moves to
 * {@code (b, c)}. In {@link #random random} chains {@code K(a, b)} is uniform in
 * {@code [minSuccessors, maxSuccessors]} and the probabilities are Dirichlet(2) (normalised sums of
 * two standard exponentials), so the entropy rate of the default chain is about 1.6 nats/token.
 *
 * <h2>Why the stream really has the computed entropy rate</h2>
 *
 * The entropy rate {@code H = Σ π(a,b) H(next | a,b)} is the limit of the per-token log-loss of
 * the true model along one sampled stream only if the pair-chain is irreducible (one stationary
 * distribution {@code π}, reached from every start) and aperiodic (power iteration converges).
 * Random sparse successors alone do not give that: a pair {@code (b, d)} whose {@code d} is no
 * successor of any {@code (x, b)} is unreachable (about {@code V²·e^-K} of them). So the successors
 * of {@code (a, b)} always include the two <em>guaranteed successors</em>
 * {@code (a + b) mod V} and {@code (a + b + 1) mod V}, with positive probability:
 *
 * <ul>
 *   <li>each map {@code (a, b) ↦ (b, a + b + e)}, {@code e ∈ {0, 1}}, is a bijection of the pair
 *       states (inverse {@code (b, c) ↦ (c − b − e, b)}), so every edge of the guaranteed graph
 *       lies on a cycle and it is strongly connected as soon as it is connected;
 *   <li>it is connected: writing {@code f_e} for the two maps, {@code f_1 ∘ f_0⁻¹} is
 *       {@code (b, c) ↦ (b, c + 1)} and {@code f_0⁻¹ ∘ f_1} is {@code (a, b) ↦ (a + 1, b)}, and
 *       these two translations reach every pair-state from every other;
 *   <li>{@code (0, 0) → (0, 0)} ({@code e = 0}) is a self-loop, so the chain is aperiodic.
 * </ul>
 *
 * Every chain, random or {@linkplain #of given}, is checked on construction (strong connectivity
 * by two breadth-first searches, period by the gcd of BFS level differences), so the argument above
 * is also verified, not only stated.
 *
 * <p>All randomness comes from {@link java.util.Random} with an explicit seed, whose algorithm the
 * Java SE specification fixes, and logarithms from {@link StrictMath} (fdlibm, bit-identical
 * everywhere, where {@code Math.log} may differ by an ulp between JVMs): the same seed gives the
 * same chain, entropy rate and streams, to the bit, on every JVM.
 * Entropies are in nats (natural logarithm), the unit of cross-entropy losses.
 */
public final class MarkovSource {

  /** The order of every chain: the next symbol depends on the two before it. */
  public static final int ORDER = 2;

  /** Default alphabet size {@code V}. */
  public static final int DEFAULT_VOCAB_SIZE = 64;

  /** Default smallest number of successors of a context. */
  public static final int DEFAULT_MIN_SUCCESSORS = 4;

  /** Default largest number of successors of a context. */
  public static final int DEFAULT_MAX_SUCCESSORS = 8;

  /** Seed of the {@linkplain #createDefault() default} chain. */
  public static final long DEFAULT_SEED = 20240520L;

  /** Power iteration stops when the L1 change of {@code π} in one step is below this. */
  public static final double STATIONARY_TOLERANCE = 1e-15;

  private static final int MAX_POWER_ITERATIONS = 1_000_000;

  private final int vocabSize;
  /** successors[a·V + b] = the symbols c with P(c | a, b) > 0, ascending. */
  private final int[][] successors;
  /** probabilities[s][i] = P(successors[s][i] | s). */
  private final double[][] probabilities;
  /** cumulative[s][i] = Σ_{j ≤ i} probabilities[s][j], with the last entry exactly 1. */
  private final double[][] cumulative;

  /** π over pair-states, and its running sums (last entry exactly 1). */
  private final double[] stationary;
  private final double[] stationaryCumulative;

  private MarkovSource(int vocabSize, int[][] successors, double[][] probabilities) {
    this.vocabSize = vocabSize;
    this.successors = successors;
    this.probabilities = probabilities;
    this.cumulative = new double[successors.length][];
    for (int s = 0; s < successors.length; s++) {
      double[] p = probabilities[s];
      double[] c = new double[p.length];
      double acc = 0;
      for (int i = 0; i < p.length; i++) {
        acc += p[i];
        c[i] = acc;
      }
      c[p.length - 1] = 1.0;
      cumulative[s] = c;
    }
    checkIrreducibleAndAperiodic();
    this.stationary = powerIteration();
    double[] cum = new double[stationary.length];
    double acc = 0;
    for (int s = 0; s < cum.length; s++) {
      acc += stationary[s];
      cum[s] = acc;
    }
    cum[cum.length - 1] = 1.0;
    this.stationaryCumulative = cum;
  }

  /**
   * The demo's chain: {@value #DEFAULT_VOCAB_SIZE} symbols, {@value #DEFAULT_MIN_SUCCESSORS} to
   * {@value #DEFAULT_MAX_SUCCESSORS} successors per context, seed {@value #DEFAULT_SEED}.
   */
  public static MarkovSource createDefault() {
    return random(DEFAULT_VOCAB_SIZE, DEFAULT_MIN_SUCCESSORS, DEFAULT_MAX_SUCCESSORS, DEFAULT_SEED);
  }

  /**
   * A random chain: each context {@code (a, b)} has {@code K} successors, {@code K} uniform in
   * {@code [minSuccessors, maxSuccessors]}: the two guaranteed ones ({@code (a+b) mod V},
   * {@code (a+b+1) mod V}) and {@code K − 2} distinct others chosen uniformly; their probabilities
   * are Dirichlet(2).
   *
   * @throws IllegalArgumentException unless {@code 2 ≤ vocabSize ≤ 46340} and
   *     {@code 2 ≤ minSuccessors ≤ maxSuccessors ≤ vocabSize}
   */
  public static MarkovSource random(
      int vocabSize, int minSuccessors, int maxSuccessors, long seed) {
    checkVocabSize(vocabSize);
    if (!(minSuccessors >= 2 && minSuccessors <= vocabSize)) {
      throw new IllegalArgumentException(
          "`minSuccessors` must be in [2, vocabSize=" + vocabSize + "]; got " + minSuccessors);
    }
    if (!(maxSuccessors >= minSuccessors && maxSuccessors <= vocabSize)) {
      throw new IllegalArgumentException(
          "`maxSuccessors` must be in [minSuccessors=" + minSuccessors + ", vocabSize=" + vocabSize
              + "]; got " + maxSuccessors);
    }
    Random rng = new Random(seed);
    int states = vocabSize * vocabSize;
    int[][] succ = new int[states][];
    double[][] prob = new double[states][];
    for (int s = 0; s < states; s++) {
      int k = minSuccessors + rng.nextInt(maxSuccessors - minSuccessors + 1);
      int[] chosen = chooseSuccessors(s / vocabSize, s % vocabSize, vocabSize, k, rng);
      double[] w = new double[k];
      double sum = 0;
      for (int i = 0; i < k; i++) {
        // Gamma(2, 1) = sum of two Exp(1); 1 - nextDouble() is in (0, 1], so each term is >= 0.
        w[i] = -StrictMath.log(1.0 - rng.nextDouble()) - StrictMath.log(1.0 - rng.nextDouble());
        if (w[i] == 0.0) {
          w[i] = Double.MIN_NORMAL; // probability 2^-106; keeps every listed successor possible
        }
        sum += w[i];
      }
      for (int i = 0; i < k; i++) {
        w[i] /= sum;
      }
      sortTogether(chosen, w);
      succ[s] = chosen;
      prob[s] = w;
    }
    return new MarkovSource(vocabSize, succ, prob);
  }

  /**
   * A chain whose every context has exactly {@code successors} equally likely successors (the two
   * guaranteed ones and {@code successors − 2} random others): its entropy rate is exactly
   * {@code ln(successors)}, whatever its stationary distribution.
   *
   * @throws IllegalArgumentException unless {@code 2 ≤ successors ≤ vocabSize}
   */
  public static MarkovSource uniform(int vocabSize, int successors, long seed) {
    checkVocabSize(vocabSize);
    if (!(successors >= 2 && successors <= vocabSize)) {
      throw new IllegalArgumentException(
          "`successors` must be in [2, vocabSize=" + vocabSize + "]; got " + successors);
    }
    Random rng = new Random(seed);
    int states = vocabSize * vocabSize;
    int[][] succ = new int[states][];
    double[][] prob = new double[states][];
    for (int s = 0; s < states; s++) {
      int[] chosen = chooseSuccessors(s / vocabSize, s % vocabSize, vocabSize, successors, rng);
      Arrays.sort(chosen);
      double[] p = new double[successors];
      Arrays.fill(p, 1.0 / successors);
      succ[s] = chosen;
      prob[s] = p;
    }
    return new MarkovSource(vocabSize, succ, prob);
  }

  /**
   * A chain given by its table: {@code successors[a·V + b]} lists the distinct symbols that may
   * follow {@code (a, b)} and {@code probabilities[a·V + b]} their probabilities (each positive,
   * summing to 1 within 1e-9; they are renormalised).
   *
   * @throws IllegalArgumentException if the table is malformed, or the pair-chain is not
   *     irreducible over all {@code V²} pair-states, or is periodic
   */
  public static MarkovSource of(int vocabSize, int[][] successors, double[][] probabilities) {
    checkVocabSize(vocabSize);
    int states = vocabSize * vocabSize;
    if (successors.length != states || probabilities.length != states) {
      throw new IllegalArgumentException(
          "`successors` and `probabilities` must have vocabSize² = " + states + " rows; got "
              + successors.length + " and " + probabilities.length);
    }
    int[][] succ = new int[states][];
    double[][] prob = new double[states][];
    for (int s = 0; s < states; s++) {
      int[] c = successors[s].clone();
      double[] p = probabilities[s].clone();
      if (c.length == 0 || c.length != p.length) {
        throw new IllegalArgumentException(
            "context " + s + ": needs as many probabilities as successors, at least one; got "
                + c.length + " successors and " + p.length + " probabilities");
      }
      double sum = 0;
      for (int i = 0; i < c.length; i++) {
        if (!(c[i] >= 0 && c[i] < vocabSize)) {
          throw new IllegalArgumentException(
              "context " + s + ": successor must be in [0, " + vocabSize + "); got " + c[i]);
        }
        if (!(p[i] > 0 && p[i] <= 1)) {
          throw new IllegalArgumentException(
              "context " + s + ": probability must be in (0, 1]; got " + p[i]);
        }
        sum += p[i];
      }
      if (!(Math.abs(sum - 1.0) <= 1e-9)) {
        throw new IllegalArgumentException(
            "context " + s + ": probabilities must sum to 1; got " + sum);
      }
      for (int i = 0; i < p.length; i++) {
        p[i] /= sum;
      }
      sortTogether(c, p);
      for (int i = 1; i < c.length; i++) {
        if (c[i] == c[i - 1]) {
          throw new IllegalArgumentException("context " + s + ": successor " + c[i] + " repeated");
        }
      }
      succ[s] = c;
      prob[s] = p;
    }
    return new MarkovSource(vocabSize, succ, prob);
  }

  /** The alphabet size {@code V}: symbols are {@code 0 … V−1}. */
  public int vocabSize() {
    return vocabSize;
  }

  /** The number of symbols that may follow {@code (a, b)}. */
  public int successorCount(int a, int b) {
    return successors[state(a, b)].length;
  }

  /** {@code P(c | a, b)}: the probability that {@code c} follows {@code a, b} (0 if impossible). */
  public double probability(int a, int b, int c) {
    int s = state(a, b);
    int i = Arrays.binarySearch(successors[s], c);
    return i >= 0 ? probabilities[s][i] : 0.0;
  }

  /**
   * The stationary distribution {@code π} of the pair-chain, indexed {@code a·V + b} (a copy):
   * power iteration from the uniform distribution until the L1 change in one step is below
   * {@value #STATIONARY_TOLERANCE}. {@code π(a, b)} is also the stationary probability that two
   * consecutive symbols are {@code a, b}.
   */
  public double[] stationaryDistribution() {
    return stationary.clone();
  }

  /**
   * The exact entropy rate {@code H = Σ π(a,b) · H(next | a,b)} in nats per token: the smallest
   * expected log-loss of any predictor that sees at least the two previous symbols.
   */
  public double entropyRateNats() {
    double[] pi = stationary;
    double h = 0;
    for (int s = 0; s < pi.length; s++) {
      double hs = 0;
      for (double p : probabilities[s]) {
        hs -= p * StrictMath.log(p);
      }
      h += pi[s] * hs;
    }
    return h;
  }

  /**
   * {@code H(X_{t+1} | X_t)} under stationarity, in nats: the best expected log-loss of a predictor
   * that sees only the previous symbol. A language model predicting the first target of a window
   * is in this position.
   */
  public double oneSymbolConditionalEntropyNats() {
    double[] pi = stationary;
    double h = 0;
    for (int a = 0; a < vocabSize; a++) {
      double mu = marginal(pi, a);
      for (int b = 0; b < vocabSize; b++) {
        double p = pi[a * vocabSize + b];
        if (p > 0) {
          h -= p * StrictMath.log(p / mu);
        }
      }
    }
    return h;
  }

  /**
   * The best expected loss of a model that predicts the {@code contextLength} targets of a window
   * drawn from a stationary stream, averaged over the window's positions: the first target can only
   * be predicted from one symbol, the others from two or more, so this is
   * {@code (H(X₁|X₀) + (T − 1) · H) / T} — a little above the entropy rate.
   *
   * @throws IllegalArgumentException unless {@code contextLength ≥ 1}
   */
  public double windowFloorNats(int contextLength) {
    if (!(contextLength >= 1)) {
      throw new IllegalArgumentException("`contextLength` must be >= 1; got " + contextLength);
    }
    return (oneSymbolConditionalEntropyNats() + (contextLength - 1) * entropyRateNats())
        / contextLength;
  }

  /**
   * The mean log-loss, in nats, of the true chain on the given batches: at position 0 of each row
   * the Bayes predictor given one symbol ({@code π(a, c) / Σ_x π(a, x)}), at later positions
   * {@code P(c | a, b)}. This is what a perfect model would score on exactly these batches; its
   * expectation is {@link #windowFloorNats(int)}.
   *
   * @throws IllegalArgumentException if a batch holds a transition the chain cannot make
   */
  public double bayesLossNats(List<Batches.Batch> batches) {
    double[] pi = stationary;
    double sum = 0;
    long count = 0;
    for (Batches.Batch batch : batches) {
      int[][] in = batch.inputs();
      int[][] tg = batch.targets();
      for (int r = 0; r < in.length; r++) {
        for (int t = 0; t < in[r].length; t++) {
          double p;
          if (t == 0) {
            int a = in[r][0];
            p = pi[state(a, tg[r][0])] / marginal(pi, a);
          } else {
            p = probability(in[r][t - 1], in[r][t], tg[r][t]);
          }
          if (!(p > 0)) {
            throw new IllegalArgumentException(
                "batch holds a transition of probability 0 at row " + r + ", position " + t);
          }
          sum -= StrictMath.log(p);
          count++;
        }
      }
    }
    return count == 0 ? Double.NaN : sum / count;
  }

  /**
   * {@code length} symbols of the chain, deterministic in {@code seed}: the first two are a
   * pair-state drawn from {@code π}, so the whole stream is stationary (no burn-in needed).
   *
   * @throws IllegalArgumentException if {@code length < 0}
   */
  public int[] sample(long seed, int length) {
    if (!(length >= 0)) {
      throw new IllegalArgumentException("`length` must be >= 0; got " + length);
    }
    Random rng = new Random(seed);
    int s = pick(stationaryCumulative, rng.nextDouble());
    int[] out = new int[length];
    int a = s / vocabSize;
    int b = s % vocabSize;
    if (length > 0) {
      out[0] = a;
    }
    if (length > 1) {
      out[1] = b;
    }
    for (int t = 2; t < length; t++) {
      int st = a * vocabSize + b;
      int c = successors[st][pick(cumulative[st], rng.nextDouble())];
      out[t] = c;
      a = b;
      b = c;
    }
    return out;
  }

  @Override
  public String toString() {
    int minK = Integer.MAX_VALUE;
    int maxK = 0;
    for (int[] c : successors) {
      minK = Math.min(minK, c.length);
      maxK = Math.max(maxK, c.length);
    }
    return "MarkovSource{order=2, vocabSize=" + vocabSize + ", successors=" + minK + ".." + maxK
        + ", entropyRateNats=" + entropyRateNats() + "}";
  }

  // ---------------------------------------------------------------------------------------------

  private int state(int a, int b) {
    if (!(a >= 0 && a < vocabSize && b >= 0 && b < vocabSize)) {
      throw new IndexOutOfBoundsException(
          "symbols must be in [0, " + vocabSize + "); got (" + a + ", " + b + ")");
    }
    return a * vocabSize + b;
  }

  private double marginal(double[] pi, int a) {
    double mu = 0;
    for (int x = 0; x < vocabSize; x++) {
      mu += pi[a * vocabSize + x];
    }
    return mu;
  }

  /** π by power iteration from the uniform distribution. */
  private double[] powerIteration() {
    int states = successors.length;
    double[] pi = new double[states];
    Arrays.fill(pi, 1.0 / states);
    double[] next = new double[states];
    for (int it = 0; it < MAX_POWER_ITERATIONS; it++) {
      step(pi, next);
      double diff = 0;
      for (int s = 0; s < states; s++) {
        diff += Math.abs(next[s] - pi[s]);
      }
      double[] tmp = pi;
      pi = next;
      next = tmp;
      if (diff < STATIONARY_TOLERANCE) {
        return pi;
      }
    }
    throw new IllegalStateException(
        "power iteration did not converge in " + MAX_POWER_ITERATIONS + " steps");
  }

  /** next = π P, renormalised to sum 1 (removes round-off drift of the total mass). */
  private void step(double[] pi, double[] next) {
    Arrays.fill(next, 0.0);
    for (int s = 0; s < pi.length; s++) {
      double mass = pi[s];
      int base = (s % vocabSize) * vocabSize; // (a, b) -> (b, c)
      int[] c = successors[s];
      double[] p = probabilities[s];
      for (int i = 0; i < c.length; i++) {
        next[base + c[i]] += mass * p[i];
      }
    }
    double total = 0;
    for (double x : next) {
      total += x;
    }
    for (int s = 0; s < next.length; s++) {
      next[s] /= total;
    }
  }

  /** The first index i with u < cumulative[i]; cumulative ends with 1 and u is in [0, 1). */
  private static int pick(double[] cumulative, double u) {
    int n = cumulative.length;
    if (n <= 16) {
      for (int i = 0; i < n - 1; i++) {
        if (u < cumulative[i]) {
          return i;
        }
      }
      return n - 1;
    }
    int lo = 0;
    int hi = n - 1;
    while (lo < hi) {
      int mid = (lo + hi) >>> 1;
      if (u < cumulative[mid]) {
        hi = mid;
      } else {
        lo = mid + 1;
      }
    }
    return lo;
  }

  private static int[] chooseSuccessors(int a, int b, int vocabSize, int k, Random rng) {
    int g0 = (a + b) % vocabSize;
    int g1 = (a + b + 1) % vocabSize;
    int[] chosen = new int[k];
    chosen[0] = g0;
    chosen[1] = g1;
    // The other symbols, shuffled partially (Fisher–Yates) to pick k − 2 distinct ones.
    int[] rest = new int[vocabSize - 2];
    int n = 0;
    for (int c = 0; c < vocabSize; c++) {
      if (c != g0 && c != g1) {
        rest[n++] = c;
      }
    }
    for (int i = 0; i < k - 2; i++) {
      int j = i + rng.nextInt(n - i);
      int tmp = rest[i];
      rest[i] = rest[j];
      rest[j] = tmp;
      chosen[2 + i] = rest[i];
    }
    return chosen;
  }

  private static void sortTogether(int[] keys, double[] values) {
    for (int i = 1; i < keys.length; i++) { // insertion sort: K is small
      int k = keys[i];
      double v = values[i];
      int j = i - 1;
      while (j >= 0 && keys[j] > k) {
        keys[j + 1] = keys[j];
        values[j + 1] = values[j];
        j--;
      }
      keys[j + 1] = k;
      values[j + 1] = v;
    }
  }

  private static void checkVocabSize(int vocabSize) {
    if (!(vocabSize >= 2 && vocabSize <= 46340)) { // V² must fit an int
      throw new IllegalArgumentException("`vocabSize` must be in [2, 46340]; got " + vocabSize);
    }
  }

  /** Strongly connected over all V² pair-states, and period 1; else IllegalArgumentException. */
  private void checkIrreducibleAndAperiodic() {
    int states = successors.length;
    // Forward BFS from state 0, recording levels.
    int[] level = new int[states];
    Arrays.fill(level, -1);
    int[] queue = new int[states];
    int head = 0;
    int tail = 0;
    level[0] = 0;
    queue[tail++] = 0;
    while (head < tail) {
      int s = queue[head++];
      int base = (s % vocabSize) * vocabSize;
      for (int c : successors[s]) {
        int t = base + c;
        if (level[t] < 0) {
          level[t] = level[s] + 1;
          queue[tail++] = t;
        }
      }
    }
    if (tail != states) {
      int s = firstNegative(level);
      throw new IllegalArgumentException("chain is not irreducible: pair-state (" + s / vocabSize
          + ", " + s % vocabSize + ") is not reachable from (0, 0)");
    }
    // Backward reachability: build reverse adjacency by counting.
    int[] inDegree = new int[states + 1];
    for (int s = 0; s < states; s++) {
      int base = (s % vocabSize) * vocabSize;
      for (int c : successors[s]) {
        inDegree[base + c + 1]++;
      }
    }
    for (int s = 0; s < states; s++) {
      inDegree[s + 1] += inDegree[s];
    }
    int[] preds = new int[inDegree[states]];
    int[] fill = Arrays.copyOf(inDegree, states);
    for (int s = 0; s < states; s++) {
      int base = (s % vocabSize) * vocabSize;
      for (int c : successors[s]) {
        preds[fill[base + c]++] = s;
      }
    }
    boolean[] seen = new boolean[states];
    head = 0;
    tail = 0;
    seen[0] = true;
    queue[tail++] = 0;
    while (head < tail) {
      int s = queue[head++];
      for (int i = inDegree[s]; i < inDegree[s + 1]; i++) {
        int p = preds[i];
        if (!seen[p]) {
          seen[p] = true;
          queue[tail++] = p;
        }
      }
    }
    if (tail != states) {
      int s = 0;
      while (seen[s]) {
        s++;
      }
      throw new IllegalArgumentException("chain is not irreducible: (0, 0) is not reachable from "
          + "pair-state (" + s / vocabSize + ", " + s % vocabSize + ")");
    }
    // Period = gcd over edges u -> v of level(u) + 1 - level(v).
    int period = 0;
    for (int s = 0; s < states && period != 1; s++) {
      int base = (s % vocabSize) * vocabSize;
      for (int c : successors[s]) {
        period = gcd(period, Math.abs(level[s] + 1 - level[base + c]));
      }
    }
    if (period != 1) {
      throw new IllegalArgumentException("chain is periodic with period " + period);
    }
  }

  private static int firstNegative(int[] a) {
    for (int i = 0; i < a.length; i++) {
      if (a[i] < 0) {
        return i;
      }
    }
    return -1;
  }

  private static int gcd(int x, int y) {
    while (y != 0) {
      int t = x % y;
      x = y;
      y = t;
    }
    return x;
  }
}
