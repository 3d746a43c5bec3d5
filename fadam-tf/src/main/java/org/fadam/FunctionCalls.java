package org.fadam;

import java.util.List;
import org.tensorflow.ConcreteFunction;
import org.tensorflow.Operation;
import org.tensorflow.Output;
import org.tensorflow.ndarray.Shape;
import org.tensorflow.op.Ops;
import org.tensorflow.op.Scope;
import org.tensorflow.proto.DataType;
import org.tensorflow.proto.OpDef;
import org.tensorflow.types.family.TType;

/**
 * Calls of graph functions, the way XLA compiles them: a {@code StatefulPartitionedCall} with
 * {@code _XlaMustCompile} ({@code Ops.call} always makes a stateless call), and resource handles
 * entering a function as DT_RESOURCE arguments (docs/design.md, "TF Java 1.1.0 facts").
 */
final class FunctionCalls {

  private FunctionCalls() {}

  /**
   * A StatefulPartitionedCall of {@code fn}, XLA-compiled when {@code jit} (the {@code
   * _XlaMustCompile} attribute).
   */
  static Operation call(Scope scope, String name, ConcreteFunction fn, List<Output<?>> args, boolean jit) {
    OpDef sig = fn.getFunctionDef().getSignature();
    DataType[] tin = args.stream().map(Output::dataType).toArray(DataType[]::new);
    DataType[] tout = sig.getOutputArgList().stream().map(OpDef.ArgDef::getType).toArray(DataType[]::new);
    var builder = scope.env().opBuilder("StatefulPartitionedCall", scope.makeOpName(name), scope)
        .addInputList(args.toArray(new Output<?>[0]))
        .setAttr("Tin", tin)
        .setAttr("Tout", tout)
        .setAttr("f", fn);
    if (jit) {
      builder.setAttr("_XlaMustCompile", true);
    }
    return builder.build();
  }

  /** A scalar DT_RESOURCE placeholder: a variable's handle as a function argument. */
  static Output<TType> resourcePlaceholder(Ops fn, String name) {
    return fn.scope().opBuilder("Placeholder", name)
        .setAttr("dtype", DataType.DT_RESOURCE)
        .setAttr("shape", Shape.scalar())
        .build()
        .output(0);
  }
}
