package org.fadam.demo;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.StringReader;
import java.io.StringWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class ResultsCsvTest {

  /** Values that a lossy format would change: float32 losses, doubles, specials, extremes. */
  private static final List<ResultsCsv.Row> ROWS = List.of(
      new ResultsCsv.Row("FAdam", 0, 4.1588830833596715, 4.158883f),
      new ResultsCsv.Row("FAdam", 100, 1.7234567f, Double.NaN),
      new ResultsCsv.Row("FAdafactor", 100, 0.1, 0.1f),
      new ResultsCsv.Row("FAdafactor", 200, Math.PI, Math.nextUp(1.0)),
      new ResultsCsv.Row("Adam", 200, Double.MIN_VALUE, 1e-300),
      new ResultsCsv.Row("Adam", Long.MAX_VALUE, Double.POSITIVE_INFINITY, -0.0));

  @Test
  void roundTripKeepsEveryBit(@TempDir Path dir) throws IOException {
    Path csv = dir.resolve("losses.csv");
    ResultsCsv.write(csv, ROWS);
    List<ResultsCsv.Row> back = ResultsCsv.read(csv);
    // Records compare double components with Double.compare: bit-exact, NaN equal to NaN.
    assertEquals(ROWS, back);
    for (int i = 0; i < ROWS.size(); i++) {
      assertEquals(Double.doubleToRawLongBits(ROWS.get(i).trainLoss()),
          Double.doubleToRawLongBits(back.get(i).trainLoss()));
    }
  }

  @Test
  void fileHasTheHeaderAndOneLinePerRow(@TempDir Path dir) throws IOException {
    Path csv = dir.resolve("losses.csv");
    ResultsCsv.write(csv, ROWS.subList(0, 2));
    assertEquals("optimizer,step,train_loss,heldout_loss\n"
        + "FAdam,0,4.1588830833596715,4.158883094787598\n"
        + "FAdam,100,1.7234567403793335,NaN\n", Files.readString(csv, StandardCharsets.UTF_8));
  }

  @Test
  void appenderWritesWhatWriteWrites(@TempDir Path dir) throws IOException {
    Path a = dir.resolve("a.csv");
    Path b = dir.resolve("b.csv");
    ResultsCsv.write(a, ROWS);
    try (ResultsCsv.Appender out = ResultsCsv.open(b)) {
      assertEquals(ResultsCsv.HEADER + "\n", Files.readString(b)); // header flushed at once
      ROWS.forEach(out::append);
    }
    assertEquals(Files.readString(a), Files.readString(b));
  }

  @Test
  void readerToleratesEmptyFieldsBlankLinesAndCrLf() throws IOException {
    String text = "optimizer,step,train_loss,heldout_loss\r\nAdam,3,1.5,\r\n\r\nAdam,4,,2.0\r\n";
    List<ResultsCsv.Row> rows = ResultsCsv.read(new StringReader(text));
    assertEquals(List.of(new ResultsCsv.Row("Adam", 3, 1.5, Double.NaN),
        new ResultsCsv.Row("Adam", 4, Double.NaN, 2.0)), rows);
  }

  @Test
  void malformedInputIsReportedWithItsLine() {
    IOException header = assertThrows(IOException.class,
        () -> ResultsCsv.read(new StringReader("opt,step,loss\nAdam,1,2\n")));
    assertTrue(header.getMessage().startsWith("expected header"), header.getMessage());
    IOException fields = assertThrows(IOException.class, () -> ResultsCsv.read(
        new StringReader(ResultsCsv.HEADER + "\nAdam,1,2.0,3.0\nAdam,2,2.0\n")));
    assertEquals("line 3: expected 4 fields; got 3", fields.getMessage());
    IOException number = assertThrows(IOException.class, () -> ResultsCsv.read(
        new StringReader(ResultsCsv.HEADER + "\nAdam,x,2.0,3.0\n")));
    assertTrue(number.getMessage().startsWith("line 2: "), number.getMessage());
  }

  @Test
  void namesThatWouldBreakTheCsvAreRejected() throws IOException {
    assertThrows(IllegalArgumentException.class, () -> new ResultsCsv.Row("a,b", 0, 1, 1));
    assertThrows(IllegalArgumentException.class, () -> new ResultsCsv.Row("a\nb", 0, 1, 1));
    assertThrows(IllegalArgumentException.class, () -> new ResultsCsv.Row("", 0, 1, 1));
    assertThrows(IllegalArgumentException.class, () -> new ResultsCsv.Row("Adam", -1, 1, 1));
    StringWriter w = new StringWriter();
    ResultsCsv.write(w, List.of());
    assertEquals(ResultsCsv.HEADER + "\n", w.toString());
  }

  /**
   * The committed results (demo-results/, written by the hand-made writer before Commons CSV)
   * parse and are written back byte for byte.
   */
  @Test
  void committedResultsParseAndRewriteByteForByte(@TempDir Path dir) throws IOException {
    Path committed = Path.of("demo-results", "results.csv");
    List<ResultsCsv.Row> rows = ResultsCsv.read(committed);
    assertTrue(rows.size() > 10, "rows: " + rows.size());
    Path again = dir.resolve("results.csv");
    ResultsCsv.write(again, rows);
    assertEquals(Files.readString(committed), Files.readString(again));
    Path sweep = Path.of("demo-results", "sweep.csv");
    List<SweepCsv.Row> sweepRows = SweepCsv.read(sweep);
    assertTrue(sweepRows.size() > 10, "rows: " + sweepRows.size());
    Path sweepAgain = dir.resolve("sweep.csv");
    SweepCsv.write(sweepAgain, sweepRows);
    assertEquals(Files.readString(sweep), Files.readString(sweepAgain));
  }

  @Test
  void malformedLinesAreNamedByTheirLineEvenAfterBlankLinesAndAtTheEnd() {
    IOException e = assertThrows(IOException.class, () -> ResultsCsv.read(new StringReader(
        ResultsCsv.HEADER + "\r\n\r\nAdam,1,2.0,3.0\r\n\nAdam,2,2.0")));
    assertEquals("line 5: expected 4 fields; got 3", e.getMessage());
    IOException empty = assertThrows(IOException.class, () -> ResultsCsv.read(new StringReader("")));
    assertTrue(empty.getMessage().startsWith("expected header"), empty.getMessage());
  }
}
