package example;

import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import java.util.Map;
import org.fadam.FAdafactor;
import org.fadam.FisherOptions;
import org.fadam.FisherTrainStep;
import org.fadam.ResourceVariable;
import org.junit.jupiter.api.Test;
import org.tensorflow.Graph;
import org.tensorflow.Session;
import org.tensorflow.framework.optimizers.Optimizer;
import org.tensorflow.ndarray.Shape;
import org.tensorflow.ndarray.buffer.DataBuffers;
import org.tensorflow.op.Op;
import org.tensorflow.op.Ops;
import org.tensorflow.op.core.Variable;
import org.tensorflow.types.TFloat32;

/** Trains with the installed fadam-tf, both ways a user would, and sees the loss fall. */
class ConsumerTest {

  /** Linear regression targets: y = x · [1, -2, 0.5]. */
  private static final float[] X = {1, 0, 2, 0, 1, 1, 3, 2, 0, 1, 1, 1, -1, 0, 2, 2, -1, 1};
  private static final float[] Y = {2, -1.5f, -1, -0.5f, 0, 4.5f};

  @Test
  void theDropInOptimizerTrains() {
    try (Graph g = new Graph(); Session s = new Session(g)) {
      Ops tf = Ops.create(g);
      Variable<TFloat32> w = tf.variable(tf.zeros(tf.constant(new int[] {3, 1}), TFloat32.class));
      var x = tf.constant(Shape.of(6, 3), DataBuffers.of(X));
      var y = tf.constant(Shape.of(6, 1), DataBuffers.of(Y));
      var loss = tf.math.mean(tf.math.square(tf.math.sub(tf.linalg.matMul(x, tf.identity(w)), y)),
          tf.constant(new int[] {0, 1}));
      Optimizer optimizer = new FAdafactor(g, 0.1f);
      Op train = optimizer.minimize(loss, "train");
      s.initialize();
      float first = value(s, loss);
      for (int k = 0; k < 50; k++) {
        s.run(train);
      }
      float last = value(s, loss);
      assertTrue(last < 0.05f * first, "loss " + first + " -> " + last);
    }
  }

  @Test
  void theFusedXlaStepTrains() {
    try (Graph g = new Graph();
        TFloat32 x = TFloat32.tensorOf(Shape.of(6, 3), DataBuffers.of(X));
        TFloat32 y = TFloat32.tensorOf(Shape.of(6, 1), DataBuffers.of(Y))) {
      Ops tf = Ops.create(g);
      var w = ResourceVariable.create(tf, "w", tf.withInitScope().constant(new float[3][1]));
      FisherTrainStep step = FisherTrainStep.builder(g)
          .fadam(0.1, FisherOptions.defaults())
          .input("x", TFloat32.class, Shape.of(-1, 3))
          .input("y", TFloat32.class, Shape.of(-1, 1))
          .variables(List.of(w))
          .loss((ops, in, v) -> ops.math.mean(ops.math.square(ops.math.sub(
              ops.linalg.matMul(in.float32("x"), v.float32("w")), in.float32("y"))),
              ops.constant(new int[] {0, 1})))
          .build();
      try (Session s = new Session(g)) {
        s.initialize();
        float first = step.train(s, Map.of("x", x, "y", y)).loss();
        float last = first;
        for (int k = 0; k < 50; k++) {
          last = step.train(s, Map.of("x", x, "y", y)).loss();
        }
        assertTrue(last < 0.05f * first, "loss " + first + " -> " + last);
      }
    }
  }

  private static float value(Session s, org.tensorflow.Operand<TFloat32> t) {
    try (var r = s.runner().fetch(t).run()) {
      return ((TFloat32) r.get(0)).getFloat();
    }
  }
}
