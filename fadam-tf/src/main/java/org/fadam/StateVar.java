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

  /**
   * A variable's value passed into a function as an argument: readable, and written only through
   * the function's outputs (the plan's values), never by an op.
   *
   * @param value the value
   */
  record Value(Operand<? extends TType> value) implements StateVar {
    @Override
    public Operand<? extends TType> read(Ops tf) {
      return value;
    }

    @Override
    public Op write(Ops tf, Operand<? extends TType> v) {
      throw new IllegalStateException("a function argument is written through an output");
    }

    /** Identity: two arguments with equal values are still two variables. */
    @Override
    public boolean equals(Object o) {
      return this == o;
    }

    @Override
    public int hashCode() {
      return System.identityHashCode(this);
    }
  }
}
