package org.fadam.demo;

import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.UUID;

/**
 * Writes a file so that no one ever sees it half-written, whatever stops the process: the content
 * goes to a hidden sibling ({@code .NAME.tmp-…}), is synced, and is renamed over the target
 * (org.fadam.AtomicDirectory does the same for directories). The target holds the old content or
 * the new, whole.
 */
final class AtomicFile {

  /** Writes the new content into {@code file} (a fresh path beside the target). */
  @FunctionalInterface
  interface Writer {
    void write(Path file) throws IOException;
  }

  private AtomicFile() {}

  /** Writes {@code target} through {@code writer}, replacing it only once the new one is whole. */
  static void write(Path target, Writer writer) throws IOException {
    Path abs = target.toAbsolutePath();
    Path tmp = abs.resolveSibling("." + abs.getFileName() + ".tmp-" + UUID.randomUUID());
    try {
      writer.write(tmp);
      try (FileChannel c = FileChannel.open(tmp, StandardOpenOption.WRITE)) {
        c.force(true);
      }
      Files.move(tmp, abs, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
    } catch (AtomicMoveNotSupportedException e) {
      throw new IOException("cannot rename " + tmp + " to " + abs + " atomically", e);
    } finally {
      Files.deleteIfExists(tmp);
    }
  }
}
