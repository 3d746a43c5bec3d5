package org.fadam;

import java.util.Objects;
import org.tensorflow.Operand;
import org.tensorflow.Output;
import org.tensorflow.ndarray.Shape;
import org.tensorflow.op.Op;
import org.tensorflow.op.Ops;
import org.tensorflow.op.core.VarHandleOp;
import org.tensorflow.types.family.TType;

/**
 * A resource variable ({@code VarHandleOp}) in a graph: what XLA can compile, and what the fused
 * train step and its SavedModel carry. Its handle's {@code shared_name} is its unique op name
 * (several handles without one fail in one XLA call: "Duplicate variable passed to XLA cluster").
 * Its ops: {@code <name>/handle}, the initializer {@code <name>/init} and the snapshot read
 * {@code <name>/Read/ReadVariableOp} that a SavedModel's {@code VariableDef} names.
 *
 * @param name the variable's name: its op scope and its checkpoint key
 * @param handle the DT_RESOURCE handle
 * @param type the value dtype
 * @param shape the value shape (fully defined)
 * @param <T> the value dtype
 */
public record ResourceVariable<T extends TType>(
    String name, Output<? extends TType> handle, Class<T> type, Shape shape) {

  /** The initializer's op name under the variable's scope. */
  static final String INIT = "init";
  /** The op name, under the variable's scope, of the read a SavedModel names as its snapshot. */
  static final String SNAPSHOT = "Read/ReadVariableOp";

  /**
   * Checks the parts.
   *
   * @param name the variable's name, not null
   * @param handle the DT_RESOURCE handle, not null
   * @param type the value dtype
   * @param shape the value shape, fully defined
   * @throws NullPointerException if {@code name} or {@code handle} is null
   * @throws IllegalArgumentException if {@code shape} has an unknown dimension or rank
   */
  public ResourceVariable {
    Objects.requireNonNull(name, "name");
    Objects.requireNonNull(handle, "handle");
    if (shape.isUnknown() || shape.hasUnknownDimension()) {
      throw new IllegalArgumentException(
          "resource variable '" + name + "' needs a fully defined shape; got " + shape);
    }
  }

  /**
   * A variable {@code name} initialized to {@code initialValue} by the graph's initializers
   * ({@code Session.initialize()}, or the first run of an auto-initializing session). A name may
   * hold scopes ({@code "layer/w"}); so may the slots the train step names after it.
   *
   * @param <T> the value dtype
   * @param tf ops of the graph, under the scope the variable's ops go in
   * @param name the variable's sub-scope; {@link #name()} is its full scope under {@code tf}'s
   * @param initialValue the initial value, of a fully defined shape (usually built with {@code
   *     tf.withInitScope()}, as in {@link FisherTrainStep}'s example)
   * @return the variable, of {@code initialValue}'s dtype and shape
   */
  public static <T extends TType> ResourceVariable<T> create(
      Ops tf, String name, Operand<T> initialValue) {
    Class<T> type = initialValue.type();
    Shape shape = initialValue.shape();
    Ops scope = tf;
    for (String part : name.split("/", -1)) { // "layer/w": a variable w in the scope layer
      scope = scope.withSubScope(part);
    }
    String handleName = scope.scope().makeOpName("handle");
    VarHandleOp handle =
        new VarHandleOp(
            scope.scope().env()
                .opBuilder(VarHandleOp.OP_NAME, handleName, scope.scope())
                .setAttr("dtype", initialValue.asOutput().dataType())
                .setAttr("shape", shape)
                .setAttr("container", "")
                .setAttr("shared_name", handleName)
                .build());
    scope.withInitScope().withName(INIT).assignVariableOp(handle, initialValue);
    // The variable's snapshot in a SavedModel's VariableDef (Python's loader needs a ReadVariableOp).
    scope.withSubScope("Read").withName("ReadVariableOp").readVariableOp(handle, type);
    return new ResourceVariable<>(handleName.substring(0, handleName.length() - "/handle".length()),
        handle.resource(), type, shape);
  }

  /**
   * The current value.
   *
   * @param tf ops of the variable's graph
   * @return a {@code ReadVariableOp} of the value, read when it runs
   */
  public Operand<T> read(Ops tf) {
    return tf.readVariableOp(handle, type);
  }

  /**
   * Stores {@code value}.
   *
   * @param tf ops of the variable's graph
   * @param value the new value, of the variable's dtype and shape
   * @return the {@code AssignVariableOp}, which stores the value when it runs
   */
  public Op assign(Ops tf, Operand<? extends TType> value) {
    return tf.assignVariableOp(handle, value);
  }
}
