package org.fadam.demo;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;

class ProgressTest {

  private final ByteArrayOutputStream bytes = new ByteArrayOutputStream();
  private final PrintStream out = new PrintStream(bytes, true, StandardCharsets.UTF_8);
  private final AtomicLong nanos = new AtomicLong(1_000_000_000L);

  private String printed() {
    return bytes.toString(StandardCharsets.UTF_8);
  }

  private void advanceMillis(long ms) {
    nanos.addAndGet(ms * 1_000_000L);
  }

  @Test
  void disabledProgressPrintsNothing() {
    Progress p = new Progress(out, false, nanos::get);
    p.begin("FAdam", 100, 1000);
    p.update(1, 2.0);
    p.end();
    assertFalse(p.enabled());
    assertEquals("", printed());
  }

  @Test
  void updatesAreThrottledAndShowRateAndEta() {
    Progress p = new Progress(out, true, nanos::get);
    p.begin("FAdam", 100, 1000);
    p.update(0, 4.15888);
    assertEquals("\rFAdam  step 0/100  loss 4.1589  - tok/s  ETA -", printed());
    bytes.reset();
    advanceMillis(50);
    p.update(1, 4.0);
    assertEquals("", printed()); // within 200 ms of the last print
    advanceMillis(950);
    p.update(10, 1.23456);
    // 10 steps × 1000 tokens in 1 s; 90 steps left at 0.1 s each.
    assertEquals("\rFAdam  step 10/100  loss 1.2346  10.0k tok/s  ETA 9s", printed());
    bytes.reset();
    advanceMillis(10);
    p.update(11, 1.2);
    p.end(); // always prints the last state, then ends the line
    assertEquals("\rFAdam  step 11/100  loss 1.2000  10.9k tok/s  ETA 8s\n", printed());
  }

  @Test
  void aShorterLineBlanksOutTheRestOfTheLongerOne() {
    Progress p = new Progress(out, true, nanos::get);
    p.begin("Adam", 10, 1);
    p.update(0, 123456.0);
    String first = "\rAdam  step 0/10  loss 123456.0000  - tok/s  ETA -";
    assertEquals(first, printed());
    bytes.reset();
    advanceMillis(1000);
    p.update(1, 1.0);
    String second = "\rAdam  step 1/10  loss 1.0000  1 tok/s  ETA 9s";
    assertEquals(second + " ".repeat(first.length() - second.length()), printed());
  }

  @Test
  void durationsAndRatesAreHuman() {
    assertEquals("0s", Progress.duration(0.2));
    assertEquals("59s", Progress.duration(59.4));
    assertEquals("1m00s", Progress.duration(59.6));
    assertEquals("3m05s", Progress.duration(185));
    assertEquals("2h07m", Progress.duration(2 * 3600 + 7 * 60 + 30));
    assertEquals("950", Progress.humanRate(950));
    assertEquals("12.3k", Progress.humanRate(12_345));
    assertEquals("4.57M", Progress.humanRate(4_567_000));
  }
}
