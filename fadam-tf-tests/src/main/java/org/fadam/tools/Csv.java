package org.fadam.tools;

import java.io.IOException;
import java.io.Reader;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Function;
import org.apache.commons.csv.CSVFormat;
import org.apache.commons.csv.CSVParser;
import org.apache.commons.csv.CSVRecord;

/**
 * The one CSV dialect of the tools' results (the demo's loss log, the sweep's, the bench's rows),
 * written and read by Apache Commons CSV: comma-separated, a header line, {@code \n} line ends,
 * fields quoted only where they must be (the names and numbers written here never need it), UTF-8
 * (the callers' files). The reader tolerates blank lines, {@code \r\n} and spaces around fields.
 */
public final class Csv {

  /** The dialect: RFC 4180 with {@code \n} line ends, blank lines skipped, fields trimmed. */
  public static final CSVFormat FORMAT = CSVFormat.DEFAULT.builder()
      .setRecordSeparator('\n')
      .setIgnoreEmptyLines(true)
      .setIgnoreSurroundingSpaces(true)
      .get();

  private Csv() {}

  /**
   * Writes one record (the header or a row) and its line end to {@code out}. (Through {@link
   * CSVFormat#printRecord}: Commons CSV's {@code CSVPrinter} carries SpotBugs annotations whose
   * classes are not on the class path, which javac's lint would report.)
   *
   * @param out where the text goes
   * @param fields the fields, in order
   * @throws IOException when {@code out} fails
   */
  public static void printRecord(Appendable out, List<String> fields) throws IOException {
    FORMAT.printRecord(out, fields.toArray());
  }

  /**
   * Reads CSV text whose first line is exactly {@code header}, each further record through
   * {@code parse} (its fields, as many as the header has).
   *
   * @param in the text
   * @param header the expected column names
   * @param parse a row from its fields; an {@link IllegalArgumentException} (such as a {@link
   *     NumberFormatException}) marks a malformed line
   * @return the rows, in order
   * @throws IOException on a missing or other header, or a malformed line (named by its number,
   *     the header being line 1)
   */
  public static <R> List<R> read(Reader in, List<String> header, Function<List<String>, R> parse)
      throws IOException {
    String text = readAll(in);
    List<R> rows = new ArrayList<>();
    Lines lines = new Lines(text);
    try (CSVParser parser = CSVParser.parse(text, FORMAT)) {
      boolean first = true;
      for (CSVRecord r : parser) {
        List<String> fields = r.toList();
        if (first) {
          first = false;
          if (!fields.equals(header)) {
            throw new IOException("expected header \"" + String.join(",", header) + "\"; got \""
                + String.join(",", fields) + "\"");
          }
          continue;
        }
        if (fields.size() == 1 && fields.get(0).isEmpty()) {
          continue; // a line of spaces only
        }
        int line = lines.of(r.getCharacterPosition());
        if (fields.size() != header.size()) {
          throw new IOException("line " + line + ": expected " + header.size() + " fields; got "
              + fields.size());
        }
        try {
          rows.add(parse.apply(fields));
        } catch (IllegalArgumentException e) { // includes NumberFormatException
          throw new IOException("line " + line + ": " + e.getMessage(), e);
        }
      }
      if (first) {
        throw new IOException("expected header \"" + String.join(",", header) + "\"; got nothing");
      }
    } catch (UncheckedIOException e) { // the parser's own errors (an unclosed quote)
      throw new IOException(e.getCause().getMessage(), e.getCause());
    }
    return rows;
  }

  private static String readAll(Reader in) throws IOException {
    StringBuilder sb = new StringBuilder();
    char[] buf = new char[8192];
    for (int n; (n = in.read(buf)) >= 0; ) {
      sb.append(buf, 0, n);
    }
    return sb.toString();
  }

  /**
   * Line numbers of positions in a text, for records read in order: a record's position may be
   * that of the blank lines skipped before it, so the first character that is not a line end
   * counts (a line ends at {@code \n}, {@code \r\n} or {@code \r}).
   */
  private static final class Lines {
    private final String text;
    private int position;
    private int line = 1;

    Lines(String text) {
      this.text = text;
    }

    int of(long recordPosition) {
      int target = (int) Math.min(recordPosition, text.length());
      while (target < text.length() && (text.charAt(target) == '\n' || text.charAt(target) == '\r')) {
        target++;
      }
      for (; position < target; position++) {
        char c = text.charAt(position);
        if (c == '\n' || (c == '\r' && (position + 1 >= text.length() || text.charAt(position + 1) != '\n'))) {
          line++;
        }
      }
      return line;
    }
  }
}
