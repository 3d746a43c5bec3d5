package org.fadam.demo;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;

class BatchesTest {

  /** stream[i] = i, so every token says where it came from. */
  private static int[] positions(int n) {
    int[] s = new int[n];
    Arrays.setAll(s, i -> i);
    return s;
  }

  @Test
  void rowsAreWindowsAndTargetsAreTheNextTokens() {
    int[] stream = positions(10_000);
    Batches batches = new Batches(stream, 8, 16, 42L);
    assertEquals(128, batches.tokensPerBatch());
    for (int n = 0; n < 50; n++) {
      Batches.Batch b = batches.next();
      assertEquals(8, b.batchSize());
      assertEquals(16, b.contextLength());
      for (int r = 0; r < 8; r++) {
        int start = b.inputs()[r][0];
        for (int t = 0; t < 16; t++) {
          assertEquals(start + t, b.inputs()[r][t]);
          assertEquals(start + t + 1, b.targets()[r][t]);
        }
        assertTrue(start + 16 < stream.length);
      }
    }
  }

  @Test
  void batchesAreDeterministicPerSeedAndDifferAcrossSeeds() {
    int[] stream = MarkovSource.createDefault().sample(1L, 50_000);
    Batches a = new Batches(stream, 4, 32, 5L);
    Batches b = new Batches(stream, 4, 32, 5L);
    Batches c = new Batches(stream, 4, 32, 6L);
    boolean differs = false;
    for (int n = 0; n < 20; n++) {
      Batches.Batch x = a.next();
      Batches.Batch y = b.next();
      Batches.Batch z = c.next();
      assertArrayEquals(x.inputsFlat(), y.inputsFlat());
      assertArrayEquals(x.targetsFlat(), y.targetsFlat());
      differs |= !Arrays.equals(x.inputsFlat(), z.inputsFlat());
    }
    assertTrue(differs);
  }

  @Test
  void everyStartIncludingTheLastIsDrawn() {
    int t = 4;
    Batches batches = new Batches(positions(t + 3), 1, t, 0L); // starts 0, 1, 2
    boolean[] seen = new boolean[3];
    for (int n = 0; n < 200; n++) {
      seen[batches.next().inputs()[0][0]] = true;
    }
    assertArrayEquals(new boolean[] {true, true, true}, seen);
    assertEquals(0, new Batches(positions(t + 1), 2, t, 0L).next().inputs()[1][0]);
  }

  @Test
  void flatArraysAreRowMajor() {
    Batches.Batch b = new Batches(positions(1000), 3, 5, 9L).next();
    int[] in = b.inputsFlat();
    int[] tg = b.targetsFlat();
    assertEquals(15, in.length);
    for (int r = 0; r < 3; r++) {
      for (int t = 0; t < 5; t++) {
        assertEquals(b.inputs()[r][t], in[r * 5 + t]);
        assertEquals(b.targets()[r][t], tg[r * 5 + t]);
      }
    }
  }

  @Test
  void heldOutSetTilesTheStreamAndScoresEachTargetOnce() {
    int b = 4;
    int t = 8;
    int count = 5;
    List<Batches.Batch> heldOut = Batches.heldOut(positions(count * b * t + 1), b, t, count);
    assertEquals(count, heldOut.size());
    boolean[] scored = new boolean[count * b * t + 1];
    int row = 0;
    for (Batches.Batch batch : heldOut) {
      for (int r = 0; r < b; r++, row++) {
        assertEquals(row * t, batch.inputs()[r][0]);
        for (int x : batch.targets()[r]) {
          assertFalse(scored[x], "target " + x + " twice");
          scored[x] = true;
        }
      }
    }
    for (int i = 1; i < scored.length; i++) {
      assertTrue(scored[i], "target " + i + " never scored");
    }
    assertThrows(UnsupportedOperationException.class, () -> heldOut.remove(0));
  }

  @Test
  void shapesAndLengthsAreValidated() {
    assertEquals("`batchSize` must be >= 1; got 0", assertThrows(IllegalArgumentException.class,
        () -> new Batches(positions(100), 0, 4, 0L)).getMessage());
    assertEquals("`contextLength` must be >= 1; got 0", assertThrows(
        IllegalArgumentException.class, () -> new Batches(positions(100), 1, 0, 0L)).getMessage());
    assertThrows(IllegalArgumentException.class, () -> new Batches(positions(4), 1, 4, 0L));
    assertEquals("stream must hold at least count·B·T + 1 = 33 tokens; got 32",
        assertThrows(IllegalArgumentException.class,
            () -> Batches.heldOut(positions(32), 2, 4, 4)).getMessage());
    assertThrows(IllegalArgumentException.class,
        () -> new Batches.Batch(new int[][] {{1, 2}}, new int[][] {{1}}));
  }
}
