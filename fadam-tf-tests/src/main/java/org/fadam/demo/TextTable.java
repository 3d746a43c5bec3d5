package org.fadam.demo;

import java.util.List;

/** Aligned tables for the demo's results: plain text or GitHub Markdown, one format for both. */
final class TextTable {

  private TextTable() {}

  /**
   * The cells (header row first) as plain text (columns separated by two spaces) or as a Markdown
   * table padded so its source reads as a table too; the first column left-aligned, the others
   * right-aligned.
   */
  static String render(List<List<String>> cells, boolean markdown) {
    int[] width = new int[cells.get(0).size()];
    for (List<String> line : cells) {
      for (int c = 0; c < line.size(); c++) {
        width[c] = Math.max(width[c], line.get(c).length());
      }
    }
    StringBuilder sb = new StringBuilder();
    for (int i = 0; i < cells.size(); i++) {
      List<String> line = cells.get(i);
      StringBuilder l = new StringBuilder(markdown ? "|" : "");
      for (int c = 0; c < line.size(); c++) {
        String s = line.get(c);
        String fill = " ".repeat(width[c] - s.length());
        String cell = c == 0 ? s + fill : fill + s;
        l.append(markdown ? " " + cell + " |" : (c > 0 ? "  " : "") + cell);
      }
      sb.append(l.toString().stripTrailing()).append('\n');
      if (markdown && i == 0) {
        sb.append('|');
        for (int c = 0; c < line.size(); c++) {
          sb.append(c == 0 ? ":" + "-".repeat(width[c] + 1) : "-".repeat(width[c] + 1) + ":")
              .append('|');
        }
        sb.append('\n');
      }
    }
    return sb.toString();
  }
}
