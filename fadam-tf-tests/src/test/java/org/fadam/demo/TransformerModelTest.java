package org.fadam.demo;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.fadam.Algorithm;
import org.fadam.FisherTrainStep;
import org.fadam.ResourceVariable;
import org.fadam.StepGradients;
import org.junit.jupiter.api.Test;
import org.tensorflow.Tensor;
import org.tensorflow.ndarray.Shape;
import org.tensorflow.ndarray.buffer.DataBuffers;
import org.tensorflow.Operand;
import org.tensorflow.op.Op;
import org.tensorflow.op.Ops;
import org.tensorflow.op.core.Placeholder;
import org.tensorflow.types.TBfloat16;
import org.tensorflow.types.TFloat32;
import org.tensorflow.types.TInt32;

/**
 * The transformer: its gradients against central finite differences (every parameter, so each op's
 * registered gradient is exercised), causality, the parameter count, bfloat16 storage, bad shapes.
 */
class TransformerModelTest {

  private static final int VOCAB = 7;
  private static final TransformerModel.Architecture TINY =
      new TransformerModel.Architecture(2, 8, 2, 5, false);

  private static TransformerModel model(TransformerModel.Architecture a, int scoredFrom) {
    return TransformerModel.create(Algorithm.FADAM, new TransformerModel.Config(a, VOCAB, scoredFrom,
        1e-3, 11, false, DemoModel.Training.DEFAULT));
  }

  private static Batches.Batch batch(int rows, int context, long seed) {
    Random r = new Random(seed);
    int[] stream = new int[rows * context + 50];
    for (int i = 0; i < stream.length; i++) {
      stream[i] = r.nextInt(VOCAB);
    }
    return new Batches(stream, rows, context, seed).next();
  }

  /**
   * Reads and writes every parameter as float32 through ops built once, before any other run (a
   * session re-optimizes its whole graph when the graph grows between runs).
   */
  private static final class Access {
    final TransformerModel m;
    final Map<String, Operand<TFloat32>> reads = new HashMap<>();
    final Map<String, Placeholder<TFloat32>> feeds = new HashMap<>();
    final Map<String, Op> assigns = new HashMap<>();

    Access(TransformerModel m) {
      this.m = m;
      Ops tf = Ops.create(m.graph());
      for (ResourceVariable<?> v : m.step().parameters()) {
        reads.put(v.name(), tf.dtypes.cast(v.read(tf), TFloat32.class));
        Placeholder<TFloat32> p = tf.placeholder(TFloat32.class);
        feeds.put(v.name(), p);
        assigns.put(v.name(), v.assign(tf, tf.dtypes.cast(p, v.type())));
      }
    }

    /**
     * Assigns every parameter in one run (one executor, built once: a session builds one per set
     * of fetches and targets), {@code values} by name.
     */
    void writeAll(Map<String, float[]> values) {
      var runner = m.session().runner();
      List<TFloat32> tensors = new java.util.ArrayList<>();
      try {
        for (ResourceVariable<?> v : m.step().parameters()) {
          TFloat32 t = TFloat32.tensorOf(v.shape(), DataBuffers.of(values.get(v.name()), false, false));
          tensors.add(t);
          runner.feed(feeds.get(v.name()), t).addTarget(assigns.get(v.name()));
        }
        runner.run();
      } finally {
        tensors.forEach(TFloat32::close);
      }
    }

    /** Every parameter's value by name, in one run. */
    Map<String, float[]> readAll() {
      var runner = m.session().runner();
      List<ResourceVariable<?>> params = m.step().parameters();
      params.forEach(v -> runner.fetch(reads.get(v.name())));
      Map<String, float[]> out = new HashMap<>();
      try (var result = runner.run()) {
        for (int i = 0; i < params.size(); i++) {
          TFloat32 t = (TFloat32) result.get(i);
          float[] values = new float[(int) t.shape().size()];
          t.copyTo(DataBuffers.of(values, false, false));
          out.put(params.get(i).name(), values);
        }
      }
      return out;
    }
  }

  /**
   * For every parameter θ_i, the directional derivative of the loss along a random direction u in
   * that tensor alone: the step's gradient g_i·u against (L(θ + εu) − L(θ − εu)) / 2ε. In float32
   * the loss carries about 1e-6 of noise, so the difference quotient is good to about 1e-5.
   */
  @Test
  void gradientsOfEveryParameterMatchFiniteDifferences() {
    try (TransformerModel m = model(TINY, 1)) {
      Access access = new Access(m);
      Batches.Batch b = batch(3, TINY.context(), 5);
      Map<String, float[]> grads = new HashMap<>();
      FisherTrainStep step = m.step();
      try (TInt32 tokens = TransformerModel.tokens(b); TInt32 labels = TransformerModel.labels(b);
          StepGradients g = step.gradients(m.session(), Map.of(TransformerModel.TOKENS, tokens,
              TransformerModel.LABELS, labels))) {
        for (ResourceVariable<?> v : step.parameters()) {
          Tensor t = g.byKey().get(step.gradientKeys().get(v.name()));
          float[] values = new float[(int) t.shape().size()];
          ((TFloat32) t).copyTo(DataBuffers.of(values, false, false));
          grads.put(v.name(), values);
        }
      }
      assertEquals(2 + 2 * 15 + 2, grads.size());
      Random r = new Random(3);
      double eps = 0.05;
      int checked = 0;
      Map<String, float[]> all = access.readAll();
      for (ResourceVariable<?> v : step.parameters()) {
        float[] theta = all.get(v.name());
        // u at the tensor's own scale (its RMS, or the init's 0.02 for the zero biases), so that
        // θ ± εu moves each tensor by 5 %: the quotient's truncation error stays below its noise
        double ss = 0;
        for (float x : theta) {
          ss += (double) x * x;
        }
        double scale = Math.max(Math.sqrt(ss / theta.length), TransformerModel.INIT_STD);
        float[] u = new float[theta.length];
        double analytic = 0;
        for (int i = 0; i < u.length; i++) {
          u[i] = (float) (r.nextGaussian() * scale);
          analytic += grads.get(v.name())[i] * (double) u[i];
        }
        double[] losses = new double[2];
        for (int s = 0; s < 2; s++) {
          float[] moved = new float[theta.length];
          for (int i = 0; i < moved.length; i++) {
            moved[i] = (float) (theta[i] + (s == 0 ? eps : -eps) * u[i]);
          }
          all.put(v.name(), moved);
          access.writeAll(all);
          losses[s] = m.loss(b);
        }
        all.put(v.name(), theta);
        access.writeAll(all);
        double numeric = (losses[0] - losses[1]) / (2 * eps);
        double tolerance = 2e-2 * Math.abs(analytic) + 2e-5;
        assertEquals(analytic, numeric, tolerance, v.name() + ": g·u " + analytic
            + " against the difference quotient " + numeric);
        if (Math.abs(analytic) > 1e-4) {
          checked++;
        }
      }
      assertTrue(checked >= 18, "only " + checked + " parameters had a gradient to check");
    }
  }

  /** Changing the token at position j changes no prediction before j. */
  @Test
  void attentionIsCausal() {
    try (TransformerModel m = model(TINY, 1)) {
      Batches.Batch b = batch(2, TINY.context(), 9);
      int[][] changed = new int[2][];
      for (int r = 0; r < 2; r++) {
        changed[r] = b.inputs()[r].clone();
        changed[r][3] = (changed[r][3] + 1) % VOCAB;
      }
      float[] before = predictions(m, b);
      float[] after = predictions(m, new Batches.Batch(changed, b.targets()));
      int t = TINY.context();
      for (int r = 0; r < 2; r++) {
        for (int p = 0; p < t; p++) {
          for (int v = 0; v < VOCAB; v++) {
            int i = (r * t + p) * VOCAB + v;
            if (p < 3) {
              assertEquals(before[i], after[i], 0f, "row " + r + " position " + p);
            }
          }
        }
        int at3 = (r * t + 3) * VOCAB;
        assertTrue(Math.abs(before[at3] - after[at3]) > 0, "position 3 sees its own token");
      }
    }
  }

  private static float[] predictions(TransformerModel m, Batches.Batch b) {
    try (TInt32 tokens = TransformerModel.tokens(b);
        var out = m.session().runner().feed(m.step().input(TransformerModel.TOKENS), tokens)
            .fetch(m.step().predictions().orElseThrow()).run()) {
      TFloat32 p = (TFloat32) out.get(0);
      assertEquals(Shape.of(2, TINY.context(), VOCAB), p.shape());
      float[] values = new float[(int) p.shape().size()];
      p.copyTo(DataBuffers.of(values, false, false));
      return values;
    }
  }

  @Test
  void parameterCountIsTheStepsAndTheStateIsCountedPerAlgorithm() {
    try (TransformerModel m = model(TINY, 0)) {
      // E 7×8 + P 5×8 + 2 blocks × (2 norms 32 + 4 × 64 + 3 biases 24 + 8×32 + 32 + 32×8 + 8)
      // + final norm 16
      assertEquals(56 + 40 + 2 * (32 + 256 + 24 + 288 + 264) + 16, TINY.parameterCount(VOCAB));
      assertEquals(TINY.parameterCount(VOCAB), m.step().parameterCount());
      assertEquals(34, m.step().parameters().size());
    }
  }

  /**
   * Bfloat16 parameters: stored in bfloat16, the loss computed in float32 from them (so it equals a
   * float32 model's loss at the bfloat16-rounded values), and a step trains.
   */
  @Test
  void bfloat16ParametersTrain() {
    TransformerModel.Architecture bf = new TransformerModel.Architecture(2, 8, 2, 5, true);
    try (TransformerModel m = model(bf, 1); TransformerModel f = model(TINY, 1)) {
      Access bfloat = new Access(m);
      Access single = new Access(f);
      for (ResourceVariable<?> v : m.step().parameters()) {
        assertEquals(TBfloat16.class, v.type(), v.name());
      }
      single.writeAll(bfloat.readAll()); // the same names in both models
      Batches.Batch b = batch(4, 5, 2);
      assertEquals(f.loss(b), m.loss(b), 1e-5);
      double before = m.loss(b);
      for (int k = 0; k < 20; k++) {
        FisherTrainStep.Result r = m.train(b);
        assertTrue(r.applied() && r.finite());
      }
      assertTrue(m.loss(b) < before - 0.05, "20 steps on one batch: " + before + " -> " + m.loss(b));
    }
  }

  @Test
  void badShapesFailWithOneLine() {
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
        () -> new TransformerModel.Architecture(2, 128, 3, 32, false));
    assertEquals("--heads 3 does not divide --width 128: each head takes width/heads features",
        e.getMessage());
    assertEquals("--context must be >= 1; got 0", assertThrows(IllegalArgumentException.class,
        () -> new TransformerModel.Architecture(2, 128, 4, 0, false)).getMessage());
    try (TransformerModel m = model(TINY, 1)) {
      assertEquals("the transformer reads windows of 5 tokens; got 4", assertThrows(
          IllegalArgumentException.class, () -> m.train(batch(2, 4, 1))).getMessage());
    }
  }
}
