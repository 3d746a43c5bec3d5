package org.fadam;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.util.List;
import java.util.function.BiFunction;
import org.junit.jupiter.api.Test;
import org.tensorflow.Graph;
import org.tensorflow.Operand;
import org.tensorflow.ndarray.Shape;
import org.tensorflow.op.Ops;
import org.tensorflow.types.TFloat32;
import org.tensorflow.types.TFloat64;
import org.tensorflow.types.TInt32;
import org.tensorflow.types.family.TFloating;

/**
 * Typed access in model functions: an input or variable read with another dtype than its own, or a
 * name that is not there, fails when the step is built, naming it and both dtypes.
 */
class OperandsTest {

  /** Builds a step over float32 {@code w} [2, 2] and inputs x (float32) and tokens (int32). */
  private static IllegalArgumentException failure(
      BiFunction<Operands, Operands, Operand<? extends TFloating>> model) {
    try (Graph g = new Graph()) {
      Ops tf = Ops.create(g);
      var w = ResourceVariable.create(tf, "w", tf.withInitScope().constant(new float[2][2]));
      var builder = FisherTrainStep.builder(g)
          .input("x", TFloat32.class, Shape.of(-1, 2))
          .input("tokens", TInt32.class, Shape.of(-1))
          .variables(List.of(w))
          .loss((ops, in, v) -> model.apply(in, v))
          .jit(false);
      return assertThrows(IllegalArgumentException.class, builder::build);
    }
  }

  @Test
  void anInputOfAnotherDtypeIsNamedWithBothDtypes() {
    assertEquals("input 'tokens' has dtype DT_INT32; the model reads it as TFloat32 (DT_FLOAT)",
        failure((in, v) -> in.float32("tokens")).getMessage());
  }

  @Test
  void aVariableOfAnotherDtypeIsNamedWithBothDtypes() {
    assertEquals("variable 'w' has dtype DT_FLOAT; the model reads it as TFloat64 (DT_DOUBLE)",
        failure((in, v) -> v.get("w", TFloat64.class)).getMessage());
  }

  @Test
  void aMissingNameListsTheNamesThereAre() {
    assertEquals("no variable 'b'; the variables are [w]",
        failure((in, v) -> v.float32("b")).getMessage());
    assertEquals("no input 'y'; the inputs are [x, tokens]",
        failure((in, v) -> in.float32("y")).getMessage());
  }

  @Test
  void theTypedOperandIsTheOperandItself() {
    try (Graph g = new Graph()) {
      Ops tf = Ops.create(g);
      Operand<TFloat32> c = tf.constant(1f);
      Operands ops = new Operands("input", java.util.Map.of("c", c));
      assertSame(c, ops.float32("c"));
      assertSame(c, ops.get("c", TFloat32.class));
      assertSame(c, ops.get("c"));
      assertEquals(java.util.Set.of("c"), ops.names());
    }
  }
}
