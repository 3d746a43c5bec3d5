package org.fadam;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Random;
import java.util.function.Function;
import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;
import org.tensorflow.Graph;
import org.tensorflow.Session;
import org.tensorflow.framework.optimizers.Adam;
import org.tensorflow.framework.optimizers.Optimizer;
import org.tensorflow.ndarray.Shape;
import org.tensorflow.ndarray.buffer.DataBuffers;
import org.tensorflow.op.Op;
import org.tensorflow.op.Ops;
import org.tensorflow.op.core.Placeholder;
import org.tensorflow.op.core.Variable;
import org.tensorflow.types.TFloat32;

/**
 * The migration promise: a softmax classifier written exactly as a TF Java user writes it with the
 * framework's {@code new Adam(graph, lr)} and {@code minimize(loss, "train")} trains when only the
 * constructor changes.
 */
class DropInTest {

  static Stream<Arguments> optimizers() {
    return Stream.of(
        Arguments.of("Adam", (Function<Graph, Optimizer>) g -> new Adam(g, 0.05f)),
        Arguments.of("FAdam", (Function<Graph, Optimizer>) g -> new FAdam(g, 0.05f)),
        Arguments.of("FAdafactor", (Function<Graph, Optimizer>) g -> new FAdafactor(g, 0.05f)));
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("optimizers")
  void sameUserCodeTrains(String label, Function<Graph, Optimizer> construct) {
    int n = 256, features = 8, classes = 4;
    float[] xs = new float[n * features];
    float[] ys = new float[n * classes];
    Random rnd = new Random(7);
    for (int i = 0; i < n; i++) {
      int c = rnd.nextInt(classes);
      ys[i * classes + c] = 1;
      for (int j = 0; j < features; j++) {
        xs[i * features + j] = (float) (rnd.nextGaussian() + (j % classes == c ? 2.0 : 0.0));
      }
    }
    try (Graph graph = new Graph()) {
      // --- user code, as written for the framework Adam ---
      Ops tf = Ops.create(graph);
      Placeholder<TFloat32> x = tf.placeholder(TFloat32.class);
      Placeholder<TFloat32> y = tf.placeholder(TFloat32.class);
      Variable<TFloat32> w = tf.variable(tf.zeros(tf.constant(new int[] {features, classes}), TFloat32.class));
      Variable<TFloat32> b = tf.variable(tf.zeros(tf.constant(new int[] {classes}), TFloat32.class));
      var logits = tf.math.add(tf.linalg.matMul(x, w), b);
      var loss = tf.math.mean(tf.nn.softmaxCrossEntropyWithLogits(logits, y).loss(), tf.constant(0));
      Optimizer optimizer = construct.apply(graph); // the one changed line
      Op train = optimizer.minimize(loss, "train");
      // --- end of user code ---
      assertEquals("train", train.op().name());
      try (Session s = new Session(graph);
          TFloat32 xt = TFloat32.tensorOf(Shape.of(n, features), DataBuffers.of(xs, true, false));
          TFloat32 yt = TFloat32.tensorOf(Shape.of(n, classes), DataBuffers.of(ys, true, false))) {
        s.initialize();
        float first = lossOf(s, loss, x, y, xt, yt);
        for (int step = 0; step < 100; step++) {
          s.runner().feed(x, xt).feed(y, yt).addTarget(train).run().close();
        }
        float last = lossOf(s, loss, x, y, xt, yt);
        assertEquals(Math.log(classes), first, 1e-5, "initial loss of a zero model is ln(classes)");
        assertTrue(last < 0.5 * first, label + ": loss " + first + " -> " + last);
      }
    }
  }

  private static float lossOf(
      Session s, org.tensorflow.Operand<TFloat32> loss, Placeholder<TFloat32> x,
      Placeholder<TFloat32> y, TFloat32 xt, TFloat32 yt) {
    try (var r = s.runner().feed(x, xt).feed(y, yt).fetch(loss).run()) {
      return ((TFloat32) r.get(0)).getFloat();
    }
  }
}
