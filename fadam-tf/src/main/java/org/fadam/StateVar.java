package org.fadam;

import org.tensorflow.Operand;
import org.tensorflow.op.Op;
import org.tensorflow.op.Ops;
import org.tensorflow.types.family.TType;

/**
 * How an update reads and writes one variable: a ref variable ({@code VariableV2}, through
 * {@code Identity} and {@code Assign}) or a resource variable ({@code ReadVariableOp} and
 * {@code AssignVariableOp}). The update math never sees the difference.
 */
interface StateVar {

  /** The variable's current value. */
  Operand<? extends TType> read(Ops tf);

  /** An op that stores {@code value} into the variable. */
  Op write(Ops tf, Operand<? extends TType> value);
}
