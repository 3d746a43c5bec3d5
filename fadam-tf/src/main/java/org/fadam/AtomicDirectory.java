package org.fadam;

import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.Comparator;
import java.util.List;
import java.util.UUID;
import java.util.function.Consumer;
import java.util.stream.Stream;

/**
 * Writes a directory so that a crash (a killed process, a lost machine) never leaves a partial one
 * under its name, and never removes the previous one before the new one is complete: the new
 * directory is written beside the target (a hidden sibling {@code .NAME.tmp-…}), synced to disk,
 * and renamed into place; a directory it replaces is first renamed aside ({@code .NAME.old-…}) and
 * deleted only after the new one is in place. {@link #recover} puts a directory back that a crash
 * between those two renames left aside.
 *
 * <p>One writer per target at a time. Renames are atomic on one POSIX file system (a target and its
 * siblings always share one).
 */
public final class AtomicDirectory {

  /** Writes the new directory's content into {@code dir} (which does not exist yet). */
  @FunctionalInterface
  public interface Writer {
    /**
     * Creates {@code dir} and writes into it.
     *
     * @param dir the directory to create: a hidden sibling of the target, renamed into place later
     * @throws IOException if writing fails (the partial directory is then deleted)
     */
    void write(Path dir) throws IOException;
  }

  /**
   * Called at each stage of a write ("written": the new directory is complete beside the target;
   * "moved-aside": the old one is aside, the new one not yet in place). For crash tests only.
   */
  static volatile Consumer<String> stageHook = stage -> {};

  private static final String TMP = ".tmp-";
  private static final String OLD = ".old-";

  private AtomicDirectory() {}

  /**
   * Writes a new directory {@code target}.
   *
   * @param target the directory to write (its parent is created if missing)
   * @param writer writes the content into a directory beside {@code target}
   * @throws IOException if writing, syncing or renaming fails; the unfinished directory is deleted
   * @throws IllegalArgumentException if {@code target} exists
   * @throws IllegalStateException if the writer did not create the directory it was given
   */
  public static void create(Path target, Writer writer) throws IOException {
    if (Files.exists(target)) {
      throw new IllegalArgumentException("directory " + target + " already exists");
    }
    Path tmp = writeBeside(target, writer);
    move(tmp, target);
    sync(parent(target));
  }

  /**
   * Writes {@code target}, replacing what is there only once the new content is complete. A
   * directory left aside by a crash of an earlier call is first put back ({@link #recover}).
   *
   * @param target the directory to write or replace (its parent is created if missing)
   * @param writer writes the content into a directory beside {@code target}
   * @throws IOException if writing, syncing, renaming or deleting the old directory fails; an
   *     unfinished new directory is deleted and the old one is never lost
   * @throws IllegalStateException if the writer did not create the directory it was given
   */
  public static void replace(Path target, Writer writer) throws IOException {
    recover(target);
    Path tmp = writeBeside(target, writer);
    Path old = null;
    if (Files.exists(target)) {
      old = sibling(target, OLD);
      move(target, old);
      stageHook.accept("moved-aside");
    }
    move(tmp, target);
    sync(parent(target));
    if (old != null) {
      deleteRecursively(old);
    }
  }

  /**
   * If {@code target} is missing but a previous version of it was left aside by a crash in the
   * middle of {@link #replace}, renames that back; also deletes unfinished new versions.
   *
   * @param target the directory a {@link #replace} was writing
   * @return whether a directory was put back
   * @throws IOException if listing the parent, renaming or deleting fails
   */
  public static boolean recover(Path target) throws IOException {
    Path parent = parent(target);
    if (!Files.isDirectory(parent)) {
      return false;
    }
    String hidden = "." + target.getFileName();
    List<Path> aside;
    List<Path> unfinished;
    try (Stream<Path> s = Files.list(parent)) {
      List<Path> all = s.toList();
      aside = all.stream().filter(p -> p.getFileName().toString().startsWith(hidden + OLD)).toList();
      unfinished = all.stream().filter(p -> p.getFileName().toString().startsWith(hidden + TMP)).toList();
    }
    for (Path p : unfinished) {
      deleteRecursively(p);
    }
    boolean restored = false;
    for (Path p : aside) {
      if (!restored && !Files.exists(target)) {
        move(p, target);
        sync(parent);
        restored = true;
      } else {
        deleteRecursively(p); // the new version got into place: the old one is no longer needed
      }
    }
    return restored;
  }

  /** A previous version of {@code target} that a crash left aside, if any (for error messages). */
  static List<Path> leftAside(Path target) throws IOException {
    Path parent = parent(target);
    if (!Files.isDirectory(parent)) {
      return List.of();
    }
    String prefix = "." + target.getFileName() + OLD;
    try (Stream<Path> s = Files.list(parent)) {
      return s.filter(p -> p.getFileName().toString().startsWith(prefix)).toList();
    }
  }

  private static Path writeBeside(Path target, Writer writer) throws IOException {
    Files.createDirectories(parent(target));
    Path tmp = sibling(target, TMP);
    try {
      writer.write(tmp);
      if (!Files.isDirectory(tmp)) {
        throw new IllegalStateException("the writer did not create " + tmp);
      }
      syncTree(tmp);
    } catch (IOException | RuntimeException e) {
      deleteRecursively(tmp);
      throw e;
    }
    stageHook.accept("written");
    return tmp;
  }

  private static Path sibling(Path target, String kind) {
    return parent(target).resolve("." + target.getFileName() + kind + UUID.randomUUID());
  }

  private static Path parent(Path target) {
    Path p = target.toAbsolutePath().getParent();
    if (p == null) {
      throw new IllegalArgumentException("cannot write the root directory " + target);
    }
    return p;
  }

  private static void move(Path from, Path to) throws IOException {
    try {
      Files.move(from, to, StandardCopyOption.ATOMIC_MOVE);
    } catch (AtomicMoveNotSupportedException e) {
      throw new IOException("cannot rename " + from + " to " + to + " atomically: " + e.getMessage(), e);
    }
  }

  /** Flushes every file under {@code dir}, and the directories themselves, to disk. */
  private static void syncTree(Path dir) throws IOException {
    try (Stream<Path> walk = Files.walk(dir)) {
      for (Path p : walk.sorted(Comparator.reverseOrder()).toList()) {
        sync(p);
      }
    }
  }

  private static void sync(Path p) throws IOException {
    try (FileChannel c = FileChannel.open(p, StandardOpenOption.READ)) {
      c.force(true);
    } catch (IOException e) {
      if (!Files.isDirectory(p)) { // some file systems refuse to sync a directory: not fatal
        throw e;
      }
    }
  }

  /** Deletes a directory tree (nothing if it does not exist). */
  static void deleteRecursively(Path dir) throws IOException {
    if (!Files.exists(dir)) {
      return;
    }
    try (Stream<Path> walk = Files.walk(dir)) {
      for (Path p : walk.sorted(Comparator.reverseOrder()).toList()) {
        Files.delete(p);
      }
    }
  }
}
