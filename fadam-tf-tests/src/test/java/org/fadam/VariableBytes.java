package org.fadam;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.tensorflow.Session;
import org.tensorflow.Tensor;
import org.tensorflow.ndarray.buffer.ByteDataBuffer;
import org.tensorflow.op.Ops;
import org.tensorflow.types.TInt64;

/** Every variable of a train step (parameters, slots, counters) as raw bytes, for bit-for-bit checks. */
final class VariableBytes {

  private VariableBytes() {}

  /** Every variable's value by name. */
  static Map<String, byte[]> of(FisherTrainStep step, Session session) {
    List<ResourceVariable<?>> all = step.variables();
    Ops tf = Ops.create(session.graph());
    Session.Runner r = session.runner();
    all.forEach(v -> r.fetch(v.read(tf)));
    Map<String, byte[]> out = new LinkedHashMap<>();
    try (var result = r.run()) {
      for (int i = 0; i < all.size(); i++) {
        Tensor t = result.get(i);
        ByteDataBuffer data = t.asRawTensor().data();
        byte[] bytes = new byte[(int) data.size()];
        data.read(bytes);
        out.put(all.get(i).name(), bytes);
      }
    }
    return out;
  }

  /** An int64 scalar variable's value. */
  static long longValue(ResourceVariable<TInt64> v, Session session) {
    try (var r = session.runner().fetch(v.read(Ops.create(session.graph()))).run()) {
      return ((TInt64) r.get(0)).getLong();
    }
  }
}
