package org.fadam.demo;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

class MarkovSourceTest {

  private static final int V = MarkovSource.DEFAULT_VOCAB_SIZE;
  private static MarkovSource source;
  private static int[] longStream;

  @BeforeAll
  static void buildDefault() {
    source = MarkovSource.createDefault();
    longStream = source.sample(12345L, 2_000_000);
  }

  @Test
  void defaultEntropyRateIsInTheIntendedRange() {
    double h = source.entropyRateNats();
    assertTrue(h > 1.5 && h < 2.5, "entropy rate " + h);
    assertEquals(V, source.vocabSize());
    for (int a = 0; a < V; a++) {
      for (int b = 0; b < V; b++) {
        int k = source.successorCount(a, b);
        assertTrue(k >= MarkovSource.DEFAULT_MIN_SUCCESSORS
            && k <= MarkovSource.DEFAULT_MAX_SUCCESSORS, "K(" + a + "," + b + ") = " + k);
      }
    }
  }

  /**
   * The independent estimate: −mean ln P(x_t | x_{t−2}, x_{t−1}) along one long sampled stream,
   * with a standard error from 100 batch means (the batches are long enough to be independent).
   */
  @Test
  void entropyRateEqualsTheEmpiricalLogLossOfTheTrueModel() {
    int batches = 100;
    int perBatch = (longStream.length - 2) / batches;
    double[] means = new double[batches];
    for (int k = 0; k < batches; k++) {
      double sum = 0;
      for (int i = 0; i < perBatch; i++) {
        int t = 2 + k * perBatch + i;
        double p = source.probability(longStream[t - 2], longStream[t - 1], longStream[t]);
        assertTrue(p > 0, "sampled an impossible transition at " + t);
        sum -= Math.log(p);
      }
      means[k] = sum / perBatch;
    }
    double mean = Arrays.stream(means).average().orElseThrow();
    double var = Arrays.stream(means).map(m -> (m - mean) * (m - mean)).sum() / (batches - 1);
    double se = Math.sqrt(var / batches);
    assertTrue(se > 0 && se < 0.005, "standard error " + se + " (the test must be able to fail)");
    double h = source.entropyRateNats();
    assertTrue(Math.abs(mean - h) < 4 * se,
        "empirical " + mean + " vs exact " + h + " (SE " + se + ")");
  }

  /** With K equally likely successors everywhere, H(next | a, b) = ln K for every context. */
  @ParameterizedTest
  @CsvSource({"64, 2", "64, 3", "64, 4", "64, 7", "64, 64", "5, 5", "2, 2"})
  void uniformSuccessorsGiveExactlyLnK(int vocabSize, int k) {
    MarkovSource u = MarkovSource.uniform(vocabSize, k, 99L);
    assertEquals(Math.log(k), u.entropyRateNats(), 1e-12);
  }

  @Test
  void stationaryDistributionSumsToOneAndIsInvariant() {
    double[] pi = source.stationaryDistribution();
    assertEquals(V * V, pi.length);
    double sum = 0;
    for (double p : pi) {
      assertTrue(p > 0, "irreducible: every pair-state has positive mass");
      sum += p;
    }
    assertEquals(1.0, sum, 1e-12);
    // π P computed here from probability(a, b, c), independently of the class's own step.
    double[] next = new double[V * V];
    for (int a = 0; a < V; a++) {
      for (int b = 0; b < V; b++) {
        for (int c = 0; c < V; c++) {
          next[b * V + c] += pi[a * V + b] * source.probability(a, b, c);
        }
      }
    }
    double l1 = 0;
    for (int s = 0; s < pi.length; s++) {
      l1 += Math.abs(next[s] - pi[s]);
    }
    assertTrue(l1 < 1e-14, "||πP − π||₁ = " + l1);
  }

  @Test
  void stationaryDistributionMatchesPairFrequenciesOfALongStream() {
    double[] pi = source.stationaryDistribution();
    double[] freq = new double[V * V];
    for (int t = 1; t < longStream.length; t++) {
      freq[longStream[t - 1] * V + longStream[t]] += 1.0 / (longStream.length - 1);
    }
    double tv = 0;
    for (int s = 0; s < pi.length; s++) {
      tv += Math.abs(freq[s] - pi[s]) / 2;
    }
    assertTrue(tv < 0.03, "total variation " + tv);
  }

  @Test
  void iidSourceHasTheBinaryEntropyAndAProductStationaryDistribution() {
    double q = 0.3; // P(next = 1), whatever the context
    int[][] succ = new int[4][];
    double[][] prob = new double[4][];
    for (int s = 0; s < 4; s++) {
      succ[s] = new int[] {0, 1};
      prob[s] = new double[] {1 - q, q};
    }
    MarkovSource iid = MarkovSource.of(2, succ, prob);
    double h = -(q * Math.log(q) + (1 - q) * Math.log(1 - q));
    assertEquals(h, iid.entropyRateNats(), 1e-15);
    assertEquals(h, iid.oneSymbolConditionalEntropyNats(), 1e-15);
    assertEquals(h, iid.windowFloorNats(8), 1e-15);
    double[] pi = iid.stationaryDistribution();
    double[] p1 = {1 - q, q};
    for (int a = 0; a < 2; a++) {
      for (int b = 0; b < 2; b++) {
        assertEquals(p1[a] * p1[b], pi[a * 2 + b], 1e-15);
      }
    }
  }

  @Test
  void windowFloorLiesBetweenTheEntropyRateAndTheOneSymbolEntropy() {
    double h = source.entropyRateNats();
    double h1 = source.oneSymbolConditionalEntropyNats();
    assertTrue(h1 > h + 1, "one symbol of context says much less: " + h1 + " vs " + h);
    assertTrue(h1 <= Math.log(V) + 1e-12);
    assertEquals(h1, source.windowFloorNats(1), 1e-15);
    assertEquals((h1 + 63 * h) / 64, source.windowFloorNats(64), 1e-15);
    assertThrows(IllegalArgumentException.class, () -> source.windowFloorNats(0));
  }

  /** A perfect model's loss on held-out batches averages to the window floor. */
  @Test
  void bayesLossOnHeldOutBatchesMatchesTheWindowFloor() {
    int b = 16;
    int t = 32;
    int count = 200;
    List<Batches.Batch> heldOut =
        Batches.heldOut(source.sample(777L, count * b * t + 1), b, t, count);
    double[] perBatch = new double[count];
    for (int k = 0; k < count; k++) {
      perBatch[k] = source.bayesLossNats(List.of(heldOut.get(k)));
    }
    double mean = Arrays.stream(perBatch).average().orElseThrow();
    assertEquals(mean, source.bayesLossNats(heldOut), 1e-12);
    double var = Arrays.stream(perBatch).map(m -> (m - mean) * (m - mean)).sum() / (count - 1);
    double se = Math.sqrt(var / count);
    double floor = source.windowFloorNats(t);
    assertTrue(Math.abs(mean - floor) < 4 * se, mean + " vs " + floor + " (SE " + se + ")");
  }

  @Test
  void samplingIsDeterministicPerSeedAndDiffersAcrossSeeds() {
    assertArrayEquals(source.sample(7L, 10_000), source.sample(7L, 10_000));
    assertFalse(Arrays.equals(source.sample(7L, 10_000), source.sample(8L, 10_000)));
    assertArrayEquals(Arrays.copyOf(source.sample(7L, 10_000), 100), source.sample(7L, 100));
  }

  @Test
  void theChainIsDeterministicPerSeedAndDiffersAcrossSeeds() {
    MarkovSource again = MarkovSource.createDefault();
    MarkovSource other = MarkovSource.random(V, 4, 8, MarkovSource.DEFAULT_SEED + 1);
    assertEquals(source.entropyRateNats(), again.entropyRateNats(), 0.0);
    assertArrayEquals(source.stationaryDistribution(), again.stationaryDistribution(), 0.0);
    assertArrayEquals(source.sample(3L, 1000), again.sample(3L, 1000));
    assertNotEquals(source.entropyRateNats(), other.entropyRateNats());
    assertFalse(Arrays.equals(source.sample(3L, 1000), other.sample(3L, 1000)));
  }

  @Test
  void shortSamplesAndTheirValidation() {
    assertEquals(0, source.sample(1L, 0).length);
    assertEquals(1, source.sample(1L, 1).length);
    assertEquals(source.sample(1L, 2)[1], source.sample(1L, 5)[1]);
    assertThrows(IllegalArgumentException.class, () -> source.sample(1L, -1));
  }

  @Test
  void guaranteedSuccessorsAreAlwaysPossible() {
    for (int a = 0; a < V; a++) {
      for (int b = 0; b < V; b++) {
        assertTrue(source.probability(a, b, (a + b) % V) > 0);
        assertTrue(source.probability(a, b, (a + b + 1) % V) > 0);
        double sum = 0;
        for (int c = 0; c < V; c++) {
          sum += source.probability(a, b, c);
        }
        assertEquals(1.0, sum, 1e-12);
      }
    }
  }

  /** The structural argument in the class Javadoc, checked on many alphabet sizes and seeds. */
  @Test
  void randomChainsAreIrreducibleAndAperiodicForEveryAlphabetSize() {
    for (int v = 2; v <= 40; v++) {
      MarkovSource m = MarkovSource.random(v, 2, 2, v);
      assertTrue(m.entropyRateNats() > 0, "V=" + v);
    }
  }

  @Test
  void reducibleChainIsRejected() {
    int[][] succ = {{0}, {0}, {0}, {0}}; // everything falls into (0, 0)
    double[][] prob = {{1.0}, {1.0}, {1.0}, {1.0}};
    IllegalArgumentException e =
        assertThrows(IllegalArgumentException.class, () -> MarkovSource.of(2, succ, prob));
    assertTrue(e.getMessage().startsWith("chain is not irreducible"), e.getMessage());
  }

  @Test
  void periodicChainIsRejected() {
    // (0,0) → (0,1) → (1,1) → (1,0) → (0,0): one deterministic cycle through all four states.
    int[][] succ = {{1}, {1}, {0}, {0}};
    double[][] prob = {{1.0}, {1.0}, {1.0}, {1.0}};
    IllegalArgumentException e =
        assertThrows(IllegalArgumentException.class, () -> MarkovSource.of(2, succ, prob));
    assertEquals("chain is periodic with period 4", e.getMessage());
  }

  @Test
  void argumentsAreValidatedWithTheirIntervals() {
    assertEquals("`minSuccessors` must be in [2, vocabSize=64]; got 1",
        assertThrows(IllegalArgumentException.class, () -> MarkovSource.random(64, 1, 4, 0))
            .getMessage());
    assertEquals("`maxSuccessors` must be in [minSuccessors=4, vocabSize=64]; got 65",
        assertThrows(IllegalArgumentException.class, () -> MarkovSource.random(64, 4, 65, 0))
            .getMessage());
    assertEquals("`vocabSize` must be in [2, 46340]; got 1",
        assertThrows(IllegalArgumentException.class, () -> MarkovSource.uniform(1, 2, 0))
            .getMessage());
    assertThrows(IllegalArgumentException.class,
        () -> MarkovSource.of(2, new int[][] {{0, 1}, {0, 1}, {0, 1}, {0, 1}},
            new double[][] {{0.5, 0.5}, {0.5, 0.5}, {0.5, 0.5}, {0.5, Double.NaN}}));
    assertThrows(IllegalArgumentException.class,
        () -> MarkovSource.of(2, new int[][] {{0, 0}, {0, 1}, {0, 1}, {0, 1}},
            new double[][] {{0.5, 0.5}, {0.5, 0.5}, {0.5, 0.5}, {0.5, 0.5}}));
    assertThrows(IndexOutOfBoundsException.class, () -> source.probability(V, 0, 0));
  }
}
