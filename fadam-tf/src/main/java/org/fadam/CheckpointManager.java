package org.fadam;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Optional;
import java.util.OptionalLong;
import java.util.UUID;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.tensorflow.Operand;
import org.tensorflow.Session;
import org.tensorflow.op.Ops;
import org.tensorflow.types.TInt64;

/**
 * Numbered checkpoints of a {@link FisherTrainStep} in one directory, as
 * {@code tf.train.CheckpointManager} keeps them for Python: {@link #save} writes
 * {@code ckpt-<step>/} (step = the train step's {@code iterations}) atomically — beside, synced,
 * then renamed into place, so a crash leaves either the whole checkpoint or none — and then deletes
 * all but the newest {@code keep}; {@link #restoreLatest} restores the newest one. Each checkpoint
 * holds every variable (parameters, slots, counters) under {@code variables/variables}, the layout
 * of a SavedModel's checkpoint, so {@link FisherTrainStep#restore} reads it too.
 *
 * <pre>{@code
 * CheckpointManager checkpoints = step.checkpoints(Path.of("ckpt"), 3);
 * checkpoints.restoreLatest(session);          // resumes a killed job, if it saved anything
 * for (...) {
 *   step.train(session, batch);
 *   if (k % 100 == 0) checkpoints.save(session);
 * }
 * }</pre>
 *
 * <p>One writer per directory. Hidden entries ({@code .ckpt-…}) are unfinished writes or deletions
 * and are cleaned up by the next {@link #save}.
 */
public final class CheckpointManager {

  /** The name of checkpoint {@code n} is this prefix followed by {@code n}. */
  public static final String PREFIX = "ckpt-";
  private static final Pattern NAME = Pattern.compile(Pattern.quote(PREFIX) + "(\\d{1,18})");

  private final Path dir;
  private final int keep;
  private final Operand<TInt64> iterations;

  /**
   * @param graph the graph of the train step
   * @param iterations its {@code iterations} counter (the number of each checkpoint)
   */
  CheckpointManager(org.tensorflow.Graph graph, ResourceVariable<TInt64> iterations, Path dir, int keep) {
    if (!(keep >= 1)) {
      throw new IllegalArgumentException("`keep` must be >= 1; got " + keep);
    }
    if (Files.exists(dir) && !Files.isDirectory(dir)) {
      throw new IllegalArgumentException("checkpoint directory " + dir + " is a file");
    }
    this.dir = dir;
    this.keep = keep;
    this.iterations = iterations.read(Ops.create(graph));
  }

  /** {@return the directory that holds the checkpoints} */
  public Path directory() {
    return dir;
  }

  /** {@return how many checkpoints {@link #save} keeps, the newest (≥ 1)} */
  public int keep() {
    return keep;
  }

  /**
   * Saves every variable as checkpoint {@code ckpt-<iterations>} (replacing one of that number
   * only once the new one is complete), then deletes all but the newest {@link #keep} checkpoints.
   *
   * @param session a session of the train step's graph, whose variables are saved
   * @return the checkpoint's directory
   * @throws IOException if writing, renaming or deleting a checkpoint fails (a failed write leaves
   *     the previous checkpoints as they were)
   */
  public Path save(Session session) throws IOException {
    long n = iterations(session);
    Path target = dir.resolve(PREFIX + n);
    Files.createDirectories(dir);
    cleanHidden();
    AtomicDirectory.replace(target, tmp -> {
      Files.createDirectories(tmp.resolve("variables"));
      session.save(tmp.resolve("variables").resolve("variables").toString());
    });
    List<Path> all = checkpoints();
    for (Path old : all.subList(0, Math.max(0, all.size() - keep))) {
      // Renamed aside first, so that a crash in the middle never leaves half of one under its name.
      Path aside = dir.resolve("." + old.getFileName() + ".del-" + UUID.randomUUID());
      Files.move(old, aside, java.nio.file.StandardCopyOption.ATOMIC_MOVE);
      AtomicDirectory.deleteRecursively(aside);
    }
    return target;
  }

  /**
   * Every complete checkpoint, oldest first.
   *
   * @return the {@code ckpt-N} directories that hold a {@code variables/variables.index}, by N
   * @throws IOException if the directory cannot be listed
   */
  public List<Path> checkpoints() throws IOException {
    if (!Files.isDirectory(dir)) {
      return List.of();
    }
    List<Path> found = new ArrayList<>();
    try (Stream<Path> s = Files.list(dir)) {
      s.filter(p -> NAME.matcher(p.getFileName().toString()).matches())
          .filter(p -> Files.isRegularFile(p.resolve("variables").resolve("variables.index")))
          .forEach(found::add);
    }
    found.sort(Comparator.comparingLong(CheckpointManager::number));
    return found;
  }

  /**
   * The newest complete checkpoint, if any.
   *
   * @return the last of {@link #checkpoints()}, or empty when there is none
   * @throws IOException if the directory cannot be listed
   */
  public Optional<Path> latest() throws IOException {
    List<Path> all = checkpoints();
    return all.isEmpty() ? Optional.empty() : Optional.of(all.get(all.size() - 1));
  }

  /**
   * Restores every variable from the newest checkpoint; with none, changes nothing.
   *
   * @param session a session of the train step's graph
   * @return the restored {@code iterations}, or empty when there was no checkpoint
   * @throws IOException if the directory cannot be listed
   * @throws IllegalArgumentException if the checkpoint does not match the train step (naming the
   *     variable)
   */
  public OptionalLong restoreLatest(Session session) throws IOException {
    Optional<Path> latest = latest();
    if (latest.isEmpty()) {
      return OptionalLong.empty();
    }
    SavedModels.restore(session, latest.get());
    return OptionalLong.of(iterations(session));
  }

  /**
   * The number of a checkpoint directory {@code ckpt-N}.
   *
   * @param checkpoint a path whose file name is {@code ckpt-N}
   * @return N, the train step's {@code iterations} when it was saved
   * @throws IllegalArgumentException if the file name is not {@code ckpt-N}
   */
  public static long number(Path checkpoint) {
    Matcher m = NAME.matcher(checkpoint.getFileName().toString());
    if (!m.matches()) {
      throw new IllegalArgumentException(checkpoint + " is not a checkpoint (" + PREFIX + "N)");
    }
    return Long.parseLong(m.group(1));
  }

  private long iterations(Session session) {
    try (var r = session.runner().fetch(iterations).run()) {
      return ((TInt64) r.get(0)).getLong();
    }
  }

  /** Deletes what crashed writes and deletions left (hidden {@code .ckpt-…} entries). */
  private void cleanHidden() throws IOException {
    List<Path> hidden;
    try (Stream<Path> s = Files.list(dir)) {
      hidden = s.filter(p -> p.getFileName().toString().startsWith("." + PREFIX)).toList();
    }
    for (Path p : hidden) {
      String name = p.getFileName().toString();
      int old = name.indexOf(".old-");
      if (old > 0) { // a checkpoint a crash left aside while replacing it: back into place
        AtomicDirectory.recover(dir.resolve(name.substring(1, old)));
      } else if (Files.exists(p)) {
        AtomicDirectory.deleteRecursively(p);
      }
    }
  }
}
