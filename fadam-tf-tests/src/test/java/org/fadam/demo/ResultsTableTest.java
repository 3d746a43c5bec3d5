package org.fadam.demo;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.util.List;
import java.util.Locale;
import org.junit.jupiter.api.Test;

class ResultsTableTest {

  private static final ResultsTable TABLE = new ResultsTable(1.5729, List.of(
      new ResultsTable.Row("FAdam", 1.63214, 1.64023, 123.44, 8.0),
      new ResultsTable.Row("FAdafactor", 1.65, 1.56, 98.76, 4.0625),
      new ResultsTable.Row("Adam", 1.64, 1.65, 140.2, 8)));

  @Test
  void textIsAlignedWithNamesLeftAndNumbersRight() {
    assertEquals(""
        + "optimizer   final train loss  held-out loss  gap to entropy floor  steps/s"
        + "  optimizer state bytes/param\n"
        + "FAdam                 1.6321         1.6402               +0.0673    123.4"
        + "                         8.00\n"
        + "FAdafactor            1.6500         1.5600               -0.0129     98.8"
        + "                         4.06\n"
        + "Adam                  1.6400         1.6500               +0.0771    140.2"
        + "                         8.00\n", TABLE.toText());
  }

  @Test
  void markdownHasAnAlignmentRowAndPaddedCells() {
    assertEquals(""
        + "| optimizer  | final train loss | held-out loss | gap to entropy floor | steps/s"
        + " | optimizer state bytes/param |\n"
        + "|:-----------|-----------------:|--------------:|---------------------:|--------:"
        + "|----------------------------:|\n"
        + "| FAdam      |           1.6321 |        1.6402 |              +0.0673 |   123.4"
        + " |                        8.00 |\n"
        + "| FAdafactor |           1.6500 |        1.5600 |              -0.0129 |    98.8"
        + " |                        4.06 |\n"
        + "| Adam       |           1.6400 |        1.6500 |              +0.0771 |   140.2"
        + " |                        8.00 |\n", TABLE.toMarkdown());
  }

  @Test
  void numbersDoNotDependOnTheDefaultLocale() {
    Locale saved = Locale.getDefault();
    try {
      Locale.setDefault(Locale.GERMANY);
      assertEquals(TABLE.toText(), new ResultsTable(1.5729, TABLE.rows()).toText());
      assertEquals(-1, TABLE.toText().indexOf(','));
    } finally {
      Locale.setDefault(saved);
    }
  }

  @Test
  void throughputColumnKeepsThreeDigitsForTheSlowest() {
    ResultsTable slow = new ResultsTable(0, List.of(new ResultsTable.Row("A", 1, 1, 0.5, 8),
        new ResultsTable.Row("B", 1, 1, 12.25, 8)));
    String text = slow.toText();
    assertEquals(3, text.lines().count());
    assertEquals(true, text.contains("  0.500  "));
    assertEquals(true, text.contains(" 12.250  "));
    assertThrows(IllegalArgumentException.class, () -> new ResultsTable(Double.POSITIVE_INFINITY, List.of()));
    // no floor known (a --text run): the gap column says so
    assertEquals(true, new ResultsTable(Double.NaN, List.of(new ResultsTable.Row("FAdam", 2, 2.5, 10, 8)))
        .toText().contains("  n/a  "));
  }
}
