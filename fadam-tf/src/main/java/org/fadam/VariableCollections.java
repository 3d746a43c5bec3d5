package org.fadam;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.List;
import org.tensorflow.Graph;
import org.tensorflow.GraphOperation;
import org.tensorflow.Output;
import org.tensorflow.proto.CollectionDef;
import org.tensorflow.proto.MetaGraphDef;
import org.tensorflow.proto.SavedModel;
import org.tensorflow.proto.VariableDef;

/**
 * The {@code variables} and {@code trainable_variables} collections of an exported MetaGraphDef:
 * one {@code VariableDef} per resource variable. TF Java's exporter writes none, and without them
 * Python TensorFlow's loader ({@code tf.saved_model.load}) leaves every {@code VarHandleOp} inside
 * the signature functions: it sees no variables, {@code tf.train.Checkpoint} and
 * {@code tf.saved_model.save} of the loaded model silently save nothing, and
 * {@code tf.function(jit_compile=True)} around a signature fails on the {@code VarHandleOp}. With
 * them the loader lifts each handle out as a variable of its own.
 */
final class VariableCollections {

  /** Python's {@code tf.compat.v1.GraphKeys.GLOBAL_VARIABLES}. */
  static final String VARIABLES = "variables";
  /** Python's {@code tf.compat.v1.GraphKeys.TRAINABLE_VARIABLES}. */
  static final String TRAINABLE_VARIABLES = "trainable_variables";

  private VariableCollections() {}

  /**
   * The {@code VariableDef} of a variable made by {@link ResourceVariable#create}: its handle, its
   * initializer ({@code <name>/init}) and that op's value, its snapshot ({@code
   * <name>/Read/ReadVariableOp}).
   */
  static VariableDef variableDef(Graph graph, ResourceVariable<?> v, boolean trainable) {
    GraphOperation init = op(graph, v, ResourceVariable.INIT);
    GraphOperation snapshot = op(graph, v, ResourceVariable.SNAPSHOT);
    return VariableDef.newBuilder()
        .setVariableName(tensorName(v.handle()))
        .setInitializerName(init.name())
        .setInitialValueName(tensorName(init.input(1)))
        .setSnapshotName(tensorName(snapshot.output(0)))
        .setIsResource(true)
        .setTrainable(trainable)
        .build();
  }

  /**
   * Adds the collections to the (single) MetaGraphDef of the SavedModel in {@code dir}: every
   * variable of {@code all}, the {@code trainable} ones also in {@code trainable_variables}.
   */
  static void addTo(Path dir, Graph graph, List<ResourceVariable<?>> all, List<ResourceVariable<?>> trainable)
      throws IOException {
    CollectionDef.BytesList.Builder every = CollectionDef.BytesList.newBuilder();
    CollectionDef.BytesList.Builder train = CollectionDef.BytesList.newBuilder();
    for (ResourceVariable<?> v : all) {
      VariableDef def = variableDef(graph, v, trainable.contains(v));
      every.addValue(def.toByteString());
      if (def.getTrainable()) {
        train.addValue(def.toByteString());
      }
    }
    Path pb = dir.resolve("saved_model.pb");
    SavedModel model;
    try (InputStream in = Files.newInputStream(pb)) {
      model = SavedModel.parseFrom(in);
    }
    SavedModel.Builder b = model.toBuilder();
    for (MetaGraphDef.Builder meta : b.getMetaGraphsBuilderList()) {
      meta.putCollectionDef(VARIABLES, CollectionDef.newBuilder().setBytesList(every).build());
      meta.putCollectionDef(TRAINABLE_VARIABLES, CollectionDef.newBuilder().setBytesList(train).build());
    }
    Path tmp = dir.resolve("saved_model.pb.tmp");
    try (OutputStream out = Files.newOutputStream(tmp)) {
      b.build().writeTo(out);
    }
    Files.move(tmp, pb, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
  }

  private static GraphOperation op(Graph graph, ResourceVariable<?> v, String suffix) {
    GraphOperation op = graph.operation(v.name() + "/" + suffix);
    if (op == null) {
      throw new IllegalStateException("variable '" + v.name() + "' has no op " + v.name() + "/" + suffix
          + ": make it with ResourceVariable.create");
    }
    return op;
  }

  private static String tensorName(Output<?> o) {
    return o.op().name() + ":" + o.index();
  }
}
