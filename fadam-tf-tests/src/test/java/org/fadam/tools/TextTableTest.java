package org.fadam.tools;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * The one table formatter (its demo layouts are checked cell for cell by ResultsTableTest and
 * SweepTableTest, the bench's by BenchTest): what each layout gives, written out.
 */
class TextTableTest {

  private static final List<List<String>> CELLS = List.of(
      List.of("name", "kind", "value"),
      List.of("a", "x", "1.5"),
      List.of("longer name", "yy", "-12.25"));

  @Test
  void plainTextNamesLeftNumbersRightTwoSpacesApart() {
    assertEquals(""
        + "name         kind   value\n"
        + "a               x     1.5\n"
        + "longer name    yy  -12.25\n", TextTable.text(CELLS));
  }

  @Test
  void markdownHasTheAlignmentRow() {
    assertEquals(""
        + "| name        | kind |  value |\n"
        + "|:------------|-----:|-------:|\n"
        + "| a           |    x |    1.5 |\n"
        + "| longer name |   yy | -12.25 |\n", TextTable.markdown(CELLS));
  }

  @Test
  void leadingColumnsLeftMinimumWidthsAndACellLongerThanItsWidthWidensTheColumn() {
    assertEquals(""
        + "name        kind      value\n"
        + "a           x           1.5\n"
        + "longer name yy       -12.25\n", TextTable.text(CELLS, " ", 2, 6, 6, 8));
  }

  @Test
  void aRowOfAnotherLengthIsRefused() {
    assertThrows(IllegalArgumentException.class,
        () -> TextTable.text(List.of(List.of("a", "b"), List.of("1"))));
  }
}
