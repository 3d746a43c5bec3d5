package org.fadam.tools;

import java.util.List;

/**
 * Aligned tables, the one formatter of every table the tools print or write: the demo's results
 * and the sweep's summary and grid (plain text and GitHub Markdown), and the bench's rows (plain
 * text). Cells are padded to their column's width, the leading columns (names) left-aligned, the
 * others (numbers) right-aligned; no line ends in spaces.
 */
public final class TextTable {

  private TextTable() {}

  /**
   * Plain text, columns separated by two spaces, the first column left-aligned, the others
   * right-aligned.
   *
   * @param cells the rows of cells, header row first, every row as long as the header
   * @return the table, each line ended by {@code \n}
   */
  public static String text(List<List<String>> cells) {
    return render(cells, false, "  ", 1, new int[0]);
  }

  /**
   * Plain text with {@code leftColumns} left-aligned columns first, each column at least as wide
   * as {@code minWidths} says (a printf-style layout that widens where a cell is longer).
   *
   * @param cells the rows of cells, header row first
   * @param separator what goes between two columns
   * @param leftColumns how many leading columns are left-aligned
   * @param minWidths the least width of each column (missing ones: 0)
   * @return the table, each line ended by {@code \n}
   */
  public static String text(List<List<String>> cells, String separator, int leftColumns, int... minWidths) {
    return render(cells, false, separator, leftColumns, minWidths);
  }

  /**
   * A GitHub-flavoured Markdown table, padded so its source reads as a table too: the first
   * column left-aligned, the others right-aligned (the alignment row says so).
   *
   * @param cells the rows of cells, header row first
   * @return the table, each line ended by {@code \n}
   */
  public static String markdown(List<List<String>> cells) {
    return render(cells, true, " ", 1, new int[0]);
  }

  private static String render(List<List<String>> cells, boolean markdown, String separator,
      int leftColumns, int[] minWidths) {
    int columns = cells.get(0).size();
    int[] width = new int[columns];
    for (int c = 0; c < columns && c < minWidths.length; c++) {
      width[c] = minWidths[c];
    }
    for (List<String> line : cells) {
      if (line.size() != columns) {
        throw new IllegalArgumentException("a row of " + line.size() + " cells in a table of "
            + columns + " columns: " + line);
      }
      for (int c = 0; c < columns; c++) {
        width[c] = Math.max(width[c], line.get(c).length());
      }
    }
    StringBuilder sb = new StringBuilder();
    for (int i = 0; i < cells.size(); i++) {
      List<String> line = cells.get(i);
      StringBuilder l = new StringBuilder(markdown ? "|" : "");
      for (int c = 0; c < columns; c++) {
        String s = line.get(c);
        String fill = " ".repeat(width[c] - s.length());
        String cell = c < leftColumns ? s + fill : fill + s;
        l.append(markdown ? " " + cell + " |" : (c > 0 ? separator : "") + cell);
      }
      sb.append(l.toString().stripTrailing()).append('\n');
      if (markdown && i == 0) {
        sb.append('|');
        for (int c = 0; c < columns; c++) {
          sb.append(c < leftColumns ? ":" + "-".repeat(width[c] + 1) : "-".repeat(width[c] + 1) + ":")
              .append('|');
        }
        sb.append('\n');
      }
    }
    return sb.toString();
  }
}
