package org.fadam;

import java.util.LinkedHashMap;
import java.util.Map;
import org.tensorflow.ndarray.Shape;
import org.tensorflow.types.TInt64;
import org.tensorflow.types.family.TType;

/**
 * The slots and step counter of one variable, created the same way for the drop-in optimizers'
 * ref variables and the fused step's resource variables: each of the algorithm's slots ({@link
 * Algorithm#slotNames}) named {@code <variable>-<slot>} in the working dtype (m in {@link
 * FisherOptions#momentumDtype} where set), then the int64
 * counter {@code <variable>-step}.
 */
final class OptimizerSlots {

  private OptimizerSlots() {}

  /**
   * Makes one state variable filled with a value.
   *
   * @param <V> the kind of variable made
   */
  @FunctionalInterface
  interface Maker<V> {
    /**
     * @param name the variable's name
     * @param type its dtype
     * @param shape its shape
     * @param init the value every element starts at
     * @return the variable
     */
    V make(String name, Class<? extends TType> type, Shape shape, double init);
  }

  /**
   * The state of {@code variable}: slot name → variable, the step counter under {@link
   * Algorithm#STEP} last.
   *
   * @throws IllegalArgumentException if the variable is not of a float dtype the optimizers update
   */
  static <V> Map<String, V> create(
      Algorithm algorithm, FisherOptions options, String variable, Shape shape,
      Class<? extends TType> paramType, Maker<V> maker) {
    Kernels.checkFloat(variable, paramType);
    Class<? extends TType> working = Kernels.workingType(paramType);
    Map<String, V> out = new LinkedHashMap<>();
    for (Algorithm.SlotSpec spec : algorithm.slots(shape, options)) {
      Class<? extends TType> type = spec.type() == null ? working : spec.type();
      out.put(spec.name(), maker.make(variable + "-" + spec.name(), type, spec.shape(), spec.init()));
    }
    out.put(Algorithm.STEP, maker.make(variable + "-" + Algorithm.STEP, TInt64.class, Shape.scalar(), 0));
    return out;
  }
}
