package org.fadam;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.tensorflow.Graph;
import org.tensorflow.SavedModelBundle;
import org.tensorflow.Session;
import org.tensorflow.Signature;

/**
 * Writing and reading a {@link FisherTrainStep}'s SavedModels and checkpoints: the export (its
 * signatures, every variable, the {@code variables} collections Python needs), restoring a
 * checkpoint into a session, and loading an export with errors that name the file and the cause.
 */
final class SavedModels {

  private SavedModels() {}

  /**
   * Exports a SavedModel of the session's variables and the signatures to {@code dir}, written
   * beside and renamed into place: as a new directory ({@link AtomicDirectory#create}), or
   * replacing what {@code dir} holds once the export is complete ({@link AtomicDirectory#replace}).
   *
   * @param replacing whether {@code dir} may exist (else it must not)
   * @param extra writes more files into the new export before it is put in place, or null
   * @throws IllegalArgumentException if {@code dir} exists and {@code replacing} is false
   */
  static void export(Session session, Path dir, boolean replacing, AtomicDirectory.Writer extra,
      Graph graph, List<Signature> signatures, TrainState state) throws IOException {
    AtomicDirectory.Writer writer = tmp -> {
      var exporter = SavedModelBundle.exporter(tmp.toString()).withSession(session);
      signatures.forEach(exporter::withSignature);
      exporter.export();
      VariableCollections.addTo(tmp, graph, state.all(), state.parameters());
      if (extra != null) {
        extra.write(tmp);
      }
    };
    if (replacing) {
      AtomicDirectory.replace(dir, writer);
    } else if (Files.exists(dir)) {
      throw new IllegalArgumentException("export directory " + dir + " already exists");
    } else {
      AtomicDirectory.create(dir, writer);
    }
  }

  /**
   * Restores every variable from a SavedModel directory or a checkpoint prefix.
   *
   * @throws IllegalArgumentException naming the missing checkpoint or the mismatched variable
   */
  static void restore(Session session, Path dirOrPrefix) {
    Path prefix = Files.isDirectory(dirOrPrefix) ? dirOrPrefix.resolve("variables").resolve("variables") : dirOrPrefix;
    if (!Files.exists(Path.of(prefix + ".index"))) {
      throw new IllegalArgumentException("no checkpoint at " + dirOrPrefix + " (expected " + prefix + ".index)");
    }
    try {
      session.restore(prefix.toString());
    } catch (RuntimeException e) { // TF's NotFound, InvalidArgument, … errors
      throw new IllegalArgumentException("checkpoint " + prefix + " does not match this train step: "
          + firstLine(e.getMessage()), e);
    }
  }

  /**
   * Loads a SavedModel directory with the serve tag.
   *
   * @throws IllegalArgumentException if the directory or its files are missing, or TensorFlow
   *     cannot read them, naming the directory and the reason
   */
  static SavedModelBundle load(Path dir) {
    if (!Files.isDirectory(dir)) {
      throw new IllegalArgumentException("no SavedModel at " + dir + ": the directory does not exist"
          + leftAsideHint(dir));
    }
    for (String f : List.of("saved_model.pb", "variables/variables.index")) {
      if (!Files.exists(dir.resolve(f))) {
        throw new IllegalArgumentException("no SavedModel at " + dir + ": " + f + " is missing");
      }
    }
    try {
      return SavedModelBundle.load(dir.toString(), SavedModelBundle.DEFAULT_TAG);
    } catch (RuntimeException e) {
      throw new IllegalArgumentException(
          "cannot load the SavedModel at " + dir + ": " + firstLine(e.getMessage()), e);
    }
  }

  private static String leftAsideHint(Path dir) {
    try {
      List<Path> aside = AtomicDirectory.leftAside(dir);
      return aside.isEmpty() ? "" : "; a crash while replacing it left the previous export at "
          + aside.get(0) + " (AtomicDirectory.recover(dir) or the next export puts it back)";
    } catch (IOException e) {
      return "";
    }
  }

  /** The first line of a (TensorFlow) message. */
  static String firstLine(String s) {
    if (s == null) {
      return "";
    }
    int nl = s.indexOf('\n');
    return nl < 0 ? s : s.substring(0, nl);
  }
}
