package org.fadam;

import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;
import org.tensorflow.Operand;
import org.tensorflow.internal.types.registry.TensorTypeRegistry;
import org.tensorflow.proto.DataType;
import org.tensorflow.types.TFloat32;
import org.tensorflow.types.TFloat64;
import org.tensorflow.types.TInt32;
import org.tensorflow.types.TInt64;
import org.tensorflow.types.family.TType;

/**
 * The named operands a model function of {@link FisherTrainStep} receives — its inputs, or its
 * variables' values — read with their tensor type, so model code needs no casts:
 *
 * <pre>{@code
 * .loss((tf, in, vars) -> tf.math.mean(
 *     tf.math.square(tf.math.sub(tf.linalg.matMul(in.float32("x"), vars.float32("w")),
 *         in.float32("y"))), tf.constant(new int[] {0, 1})))
 * }</pre>
 *
 * <p>A name that is not there, or an operand of another dtype than the one asked for, fails with an
 * {@link IllegalArgumentException} naming the input or variable and both dtypes, when the step is
 * built.
 */
public final class Operands {

  private final String kind;
  private final Map<String, Operand<?>> byName;

  /**
   * @param kind what the operands are, for error messages ({@code "input"}, {@code "variable"})
   * @param byName the operands by name, in order
   */
  Operands(String kind, Map<String, ? extends Operand<?>> byName) {
    this.kind = kind;
    this.byName = Collections.unmodifiableMap(new LinkedHashMap<>(byName));
  }

  /**
   * The operand called {@code name}, whatever its dtype.
   *
   * @param name an input's name, or a variable's {@link ResourceVariable#name()}
   * @return the operand
   * @throws IllegalArgumentException if there is none of that name
   */
  public Operand<?> get(String name) {
    Operand<?> o = byName.get(name);
    if (o == null) {
      throw new IllegalArgumentException("no " + kind + " '" + name + "'; the " + kind + "s are "
          + byName.keySet());
    }
    return o;
  }

  /**
   * The operand called {@code name}, as an operand of {@code type}.
   *
   * @param <T> the tensor type
   * @param name an input's name, or a variable's {@link ResourceVariable#name()}
   * @param type the tensor type the model reads it as, for example {@code TFloat32.class}
   * @return the operand
   * @throws IllegalArgumentException if there is none of that name, or its dtype is another one
   *     ("input 'tokens' has dtype DT_INT32; the model reads it as TFloat32 (DT_FLOAT)")
   */
  public <T extends TType> Operand<T> get(String name, Class<T> type) {
    Operand<?> o = get(name);
    DataType want = TensorTypeRegistry.find(type).dataType();
    DataType have = o.asOutput().dataType();
    if (have != want) {
      throw new IllegalArgumentException(kind + " '" + name + "' has dtype " + have
          + "; the model reads it as " + type.getSimpleName() + " (" + want + ")");
    }
    @SuppressWarnings("unchecked") // the dtype, which fixes the tensor type, was checked above
    Operand<T> typed = (Operand<T>) o;
    return typed;
  }

  /**
   * {@link #get(String, Class) get(name, TFloat32.class)}.
   *
   * @param name the input's or variable's name
   * @return the float32 operand
   */
  public Operand<TFloat32> float32(String name) {
    return get(name, TFloat32.class);
  }

  /**
   * {@link #get(String, Class) get(name, TFloat64.class)}.
   *
   * @param name the input's or variable's name
   * @return the float64 operand
   */
  public Operand<TFloat64> float64(String name) {
    return get(name, TFloat64.class);
  }

  /**
   * {@link #get(String, Class) get(name, TInt32.class)}.
   *
   * @param name the input's or variable's name
   * @return the int32 operand
   */
  public Operand<TInt32> int32(String name) {
    return get(name, TInt32.class);
  }

  /**
   * {@link #get(String, Class) get(name, TInt64.class)}.
   *
   * @param name the input's or variable's name
   * @return the int64 operand
   */
  public Operand<TInt64> int64(String name) {
    return get(name, TInt64.class);
  }

  /**
   * The names, in the order the inputs were declared or the variables given.
   *
   * @return the names
   */
  public Set<String> names() {
    return byName.keySet();
  }

  /**
   * The operands by name (unmodifiable).
   *
   * @return the map
   */
  public Map<String, Operand<?>> asMap() {
    return byName;
  }

  @Override
  public String toString() {
    return kind + "s " + byName.keySet();
  }
}
