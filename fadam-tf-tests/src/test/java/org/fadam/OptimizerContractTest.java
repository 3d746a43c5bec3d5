package org.fadam;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Set;
import java.util.function.BiFunction;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;
import org.tensorflow.Graph;
import org.tensorflow.GraphOperation;
import org.tensorflow.Operand;
import org.tensorflow.Session;
import org.tensorflow.framework.optimizers.Adam;
import org.tensorflow.framework.optimizers.Optimizer.GradAndVar;
import org.tensorflow.ndarray.Shape;
import org.tensorflow.op.Op;
import org.tensorflow.op.Ops;
import org.tensorflow.op.core.Placeholder;
import org.tensorflow.op.core.Variable;
import org.tensorflow.types.TBfloat16;
import org.tensorflow.types.TFloat16;
import org.tensorflow.types.TFloat32;
import org.tensorflow.types.TFloat64;
import org.tensorflow.types.TInt32;
import org.tensorflow.types.TInt64;
import org.tensorflow.types.family.TType;

/** What every optimizer of the library promises, checked over a table of all four. */
class OptimizerContractTest {

  /** (label, constructor from graph and options). */
  static Stream<Arguments> optimizers() {
    return Stream.of(
        Arguments.of("FAdam", (BiFunction<Graph, FisherOptions, FisherOptimizer>)
            (g, o) -> new FAdam(g, "FAdam", 0.01, o)),
        Arguments.of("FAdafactor", (BiFunction<Graph, FisherOptions, FisherOptimizer>)
            (g, o) -> new FAdafactor(g, "FAdafactor", 0.01, o.toBuilder().factoredMinDim(4).build())),
        Arguments.of("PaperAdam", (BiFunction<Graph, FisherOptions, FisherOptimizer>)
            (g, o) -> new PaperAdam(g, "Adam", 0.01, o)),
        Arguments.of("PaperAdafactor", (BiFunction<Graph, FisherOptions, FisherOptimizer>)
            (g, o) -> new PaperAdafactor(g, "Adafactor", 0.01, o.toBuilder().factoredMinDim(4).build())));
  }

  private static final List<Class<? extends TType>> FLOATS =
      List.of(TFloat32.class, TFloat64.class, TFloat16.class, TBfloat16.class);

  @ParameterizedTest(name = "{0}")
  @MethodSource("optimizers")
  void slotShapesAndDtypes(String label, BiFunction<Graph, FisherOptions, FisherOptimizer> make) {
    for (Class<? extends TType> type : FLOATS) {
      try (Graph g = new Graph()) {
        Ops tf = Ops.create(g);
        List<Shape> shapes = List.of(Shape.scalar(), Shape.of(3), Shape.of(2, 3), Shape.of(5, 4), Shape.of(2, 6, 4));
        List<Variable<?>> vars = new ArrayList<>();
        Operand<TFloat32> loss = tf.constant(0f);
        for (Shape s : shapes) {
          Variable<?> v = tf.variable(tf.dtypes.cast(tf.ones(tf.constant(s), TFloat32.class), type));
          vars.add(v);
          loss = tf.math.add(loss, tf.reduceSum(tf.dtypes.cast(tf.identity(v), TFloat32.class), allAxes(tf, s)));
        }
        FisherOptimizer opt = make.apply(g, FisherOptions.defaults());
        opt.minimize(loss, "train");
        Class<?> slotType = type == TFloat64.class ? TFloat64.class : TFloat32.class;
        for (int i = 0; i < vars.size(); i++) {
          Variable<?> v = vars.get(i);
          Shape s = shapes.get(i);
          boolean factored = label.endsWith("Adafactor") && s.numDimensions() >= 2 && s.get(-1) >= 4 && s.get(-2) >= 4;
          var m = opt.getSlot(v.asOutput(), FisherOptimizer.FIRST_MOMENT).orElseThrow();
          assertEquals(s, m.shape(), label + " m of " + s);
          assertEquals(slotType, m.type(), label + " m dtype for " + type.getSimpleName());
          assertEquals(TInt64.class, opt.getSlot(v.asOutput(), FisherOptimizer.STEP).orElseThrow().type());
          if (factored) {
            assertFalse(opt.getSlot(v.asOutput(), FisherOptimizer.FIM).isPresent(), "no full-size f when factored");
            long[] d = s.asArray();
            assertEquals(Shape.of(java.util.Arrays.copyOf(d, d.length - 1)),
                opt.getSlot(v.asOutput(), FisherOptimizer.FIM_ROW).orElseThrow().shape());
            long[] col = java.util.Arrays.copyOf(d, d.length - 1);
            col[col.length - 1] = d[d.length - 1];
            assertEquals(Shape.of(col), opt.getSlot(v.asOutput(), FisherOptimizer.FIM_COL).orElseThrow().shape());
          } else {
            var f = opt.getSlot(v.asOutput(), FisherOptimizer.FIM).orElseThrow();
            assertEquals(s, f.shape());
            assertEquals(slotType, f.type());
            assertFalse(opt.getSlot(v.asOutput(), FisherOptimizer.FIM_ROW).isPresent());
          }
          assertEquals(type, v.type(), "the variable keeps its dtype");
        }
      }
    }
  }

  private static Operand<TInt32> allAxes(Ops tf, Shape s) {
    int[] axes = new int[s.numDimensions()];
    for (int i = 0; i < axes.length; i++) {
      axes[i] = i;
    }
    return tf.constant(axes);
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("optimizers")
  void stepCountsOncePerRunAndPerVariable(String label, BiFunction<Graph, FisherOptions, FisherOptimizer> make) {
    try (Graph g = new Graph()) {
      Ops tf = Ops.create(g);
      Variable<TFloat32> a = tf.variable(tf.constant(new float[] {1, 2}));
      Variable<TFloat32> b = tf.variable(tf.constant(new float[] {3, 4}));
      var lossAb = tf.math.add(tf.reduceSum(tf.math.mul(a, a), tf.constant(0)), tf.reduceSum(b, tf.constant(0)));
      var lossA = tf.reduceSum(tf.math.mul(a, a), tf.constant(0));
      FisherOptimizer opt = make.apply(g, FisherOptions.defaults());
      Op both = opt.minimize(lossAb, "both");
      Op onlyA = opt.minimize(lossA, "onlyA");
      try (Session s = new Session(g)) {
        s.initialize();
        for (int i = 0; i < 3; i++) {
          s.run(both);
        }
        s.run(onlyA);
        s.run(onlyA);
        assertEquals(5L, longOf(s, opt.getSlot(a.asOutput(), FisherOptimizer.STEP).orElseThrow()));
        assertEquals(3L, longOf(s, opt.getSlot(b.asOutput(), FisherOptimizer.STEP).orElseThrow()));
      }
    }
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("optimizers")
  void zeroGradientsStayFiniteAndLeaveTheVariable(String label, BiFunction<Graph, FisherOptions, FisherOptimizer> make) {
    for (Class<? extends TType> type : FLOATS) {
      try (Graph g = new Graph()) {
        Ops tf = Ops.create(g);
        Variable<? extends TType> v = tf.variable(tf.dtypes.cast(tf.constant(new float[][] {{1, -2, 3, 4}, {5, 6, 7, 8}, {1, 1, 1, 1}, {2, 2, 2, 2}}), type));
        Operand<? extends TType> zero = tf.dtypes.cast(tf.zeros(tf.constant(new int[] {4, 4}), TFloat32.class), type);
        FisherOptimizer opt = make.apply(g, FisherOptions.defaults());
        Op train = opt.applyGradients(List.of(gv(zero, v)), "train");
        try (Session s = new Session(g)) {
          s.initialize();
          double[] before = values(s, tf, v);
          for (int i = 0; i < 3; i++) {
            s.run(train);
          }
          double[] after = values(s, tf, v);
          for (String slot : List.of(FisherOptimizer.FIRST_MOMENT, FisherOptimizer.FIM, FisherOptimizer.FIM_ROW, FisherOptimizer.FIM_COL)) {
            var sv = opt.getSlot(v.asOutput(), slot);
            if (sv.isPresent()) {
              for (double x : values(s, tf, sv.get())) {
                assertTrue(Double.isFinite(x), label + " " + slot + " finite for " + type.getSimpleName());
              }
            }
          }
          if (label.equals("PaperAdafactor")) {
            // Alg. 4: f = ε, ḡ = 0, m = 0, so only the weight decay moves θ: θ ← θ − λθ (l.13).
            double tol = type == TFloat16.class ? 3 * 0x1p-11 : type == TBfloat16.class ? 3 * 0x1p-8 : 1e-6;
            for (int i = 0; i < before.length; i++) {
              assertEquals(before[i] * Math.pow(1 - 0.001, 3), after[i], tol * Math.abs(before[i]),
                  label + " " + type.getSimpleName() + " [" + i + "]");
            }
          } else if (!label.equals("PaperAdam")) {
            // FAdam/FAdafactor: ḡ = 0 and ḡw = 0 where f^ρ + ε̂^(2ρ) = 0
            // (docs/design.md, "Zero denominators").
            assertArrayEquals(before, after, label + " " + type.getSimpleName());
          } else {
            for (double x : after) {
              assertTrue(Double.isFinite(x));
            }
          }
        }
      }
    }
  }

  @Test
  void twoOptimizersInOneGraphDifferentiateOnlyModelVariables() {
    try (Graph g = new Graph()) {
      Ops tf = Ops.create(g);
      Variable<TFloat32> gen = tf.variable(tf.constant(new float[] {1, 2}));
      Variable<TFloat32> disc = tf.variable(tf.constant(new float[] {3, 4}));
      var lossGen = tf.reduceSum(tf.math.mul(gen, disc), tf.constant(0));
      var lossDisc = tf.reduceSum(tf.math.mul(disc, disc), tf.constant(0));
      FAdam first = new FAdam(g, "G", 0.01f);
      Op trainDisc = new FAdafactor(g, "D", 0.01f).minimize(lossDisc, "train_d");
      Op trainGen = first.minimize(lossGen, "train_g", List.of(gen)); // after D's slots exist
      try (Session s = new Session(g)) {
        s.initialize();
        double[] discBefore = values(s, tf, disc);
        s.run(trainGen);
        assertArrayEquals(discBefore, values(s, tf, disc), "explicit list: only gen moves");
        assertNotEquals(1.0, values(s, tf, gen)[0]);
        s.run(trainDisc);
        assertNotEquals(discBefore[0], values(s, tf, disc)[0]);
      }
      assertTrue(first.getSlot(disc.asOutput(), FisherOptimizer.FIRST_MOMENT).isEmpty());
    }
  }

  @Test
  void worksBesideTheFrameworkAdamsSlots() {
    try (Graph g = new Graph()) {
      Ops tf = Ops.create(g);
      Variable<TFloat32> w = tf.variable(tf.constant(new float[] {1, 2}));
      var loss = tf.reduceSum(tf.math.mul(w, w), tf.constant(0));
      // The framework Adam first: its slots and beta powers are VariableV2 too, and a second
      // framework optimizer would try to differentiate through them (tensorflow/java#307).
      Op adam = new Adam(g, 0.01f).minimize(loss, "adam_train");
      FAdam fadam = new FAdam(g, 0.01f);
      Op train = fadam.minimize(loss, "fadam_train");
      assertEquals(1, fadam.computeGradients(loss).size(), "only w, not Adam's 4 state variables");
      try (Session s = new Session(g)) {
        s.initialize();
        s.run(adam);
        double[] afterAdam = values(s, tf, w);
        s.run(train);
        double[] v = values(s, tf, w);
        assertTrue(afterAdam[0] < 1 && v[0] < afterAdam[0] && v[1] < afterAdam[1], java.util.Arrays.toString(v));
      }
    }
  }

  @Test
  void gradientsAreTakenOnlyWithRespectToAncestorsOfTheLoss() {
    try (Graph g = new Graph()) {
      Ops tf = Ops.create(g);
      Variable<TFloat32> used = tf.variable(tf.constant(new float[] {1, 2}));
      tf.variable(tf.constant(new float[] {3, 4})); // not in the loss
      var loss = tf.reduceSum(tf.math.mul(used, used), tf.constant(0));
      FAdam opt = new FAdam(g);
      var grads = opt.computeGradients(loss);
      assertEquals(1, grads.size());
      assertEquals(used.op().name(), grads.get(0).getVariable().op().name());
    }
  }

  @Test
  void aLossNoVariableReachesIsAClearError() {
    try (Graph g = new Graph()) {
      Ops tf = Ops.create(g);
      tf.variable(tf.constant(new float[] {3, 4}));
      var loss = tf.withName("constant_loss").constant(1f);
      var e = assertThrows(IllegalArgumentException.class, () -> new FAdam(g).minimize(loss));
      assertEquals("no trainable variable (VariableV2) reaches the loss 'constant_loss'", e.getMessage());
    }
  }

  @Test
  void aNonFloatVariableIsNamed() {
    try (Graph g = new Graph()) {
      Ops tf = Ops.create(g);
      Variable<TInt32> counts = tf.withName("counts").variable(tf.constant(new int[] {1, 2}));
      var e = assertThrows(IllegalArgumentException.class,
          () -> new FAdam(g).applyGradients(List.of(gv(tf.constant(new int[] {1, 1}), counts)), "train"));
      assertTrue(e.getMessage().startsWith("variable 'counts' has dtype DT_INT32"), e.getMessage());
    }
  }

  @Test
  void aGradientOfTheWrongShapeIsNamed() {
    try (Graph g = new Graph()) {
      Ops tf = Ops.create(g);
      Variable<TFloat32> w = tf.withName("w").variable(tf.constant(new float[] {1, 2}));
      var e = assertThrows(IllegalArgumentException.class,
          () -> new FAdam(g).applyGradients(List.of(gv(tf.constant(new float[] {1, 1, 1}), w)), "train"));
      assertEquals("gradient of variable 'w' has shape [3], the variable [2]", e.getMessage());
    }
  }

  @Test
  void learningRateOperandIsReadEveryStep() {
    double[] fixed;
    try (Graph g = new Graph()) {
      Ops tf = Ops.create(g);
      Variable<TFloat32> w = tf.variable(tf.constant(new float[] {1, 2}));
      Op train = new FAdam(g, 0.05f).minimize(tf.reduceSum(tf.math.mul(w, w), tf.constant(0)), "train");
      try (Session s = new Session(g)) {
        s.initialize();
        s.run(train);
        fixed = values(s, tf, w);
      }
    }
    try (Graph g = new Graph()) {
      Ops tf = Ops.create(g);
      Placeholder<TFloat32> lr = tf.placeholder(TFloat32.class, Placeholder.shape(Shape.scalar()));
      Variable<TFloat32> w = tf.variable(tf.constant(new float[] {1, 2}));
      Op train = new FAdam(g, lr).minimize(tf.reduceSum(tf.math.mul(w, w), tf.constant(0)), "train");
      try (Session s = new Session(g); TFloat32 zero = TFloat32.scalarOf(0f); TFloat32 rate = TFloat32.scalarOf(0.05f)) {
        s.initialize();
        s.runner().feed(lr, zero).addTarget(train).run().close();
        assertArrayEquals(new double[] {1, 2}, values(s, tf, w), "η = 0 leaves θ");
        s.runner().feed(lr, rate).addTarget(train).run().close();
        double[] second = values(s, tf, w);
        assertNotEquals(fixed[0], second[0], "second step (t = 2) differs from a first step");
        assertTrue(second[0] < 1 && second[1] < 2);
      }
    }
  }

  @Test
  void invalidLearningRatesFailAtConstruction() {
    try (Graph g = new Graph()) {
      var e = assertThrows(IllegalArgumentException.class, () -> new FAdam(g, -0.1f));
      assertEquals("`learningRate` must be in [0, ∞); got -0.1", e.getMessage());
      e = assertThrows(IllegalArgumentException.class, () -> new FAdafactor(g, Float.NaN));
      assertEquals("`learningRate` must be in [0, ∞); got NaN", e.getMessage());
      e = assertThrows(IllegalArgumentException.class, () -> new FAdam(g, 0.1f, 0.9f, 1.5f, 1e-8f));
      assertEquals("`beta2` must be in [0, 1); got 1.5", e.getMessage());
    }
  }

  @Test
  void toStringListsTheHyperparameters() {
    try (Graph g = new Graph()) {
      assertEquals(
          "FAdam{name=FAdam, learningRate=0.001, beta1=0.9, beta2=0.999, epsilon=1.0E-8,"
              + " epsilon2=1.0E-4, clipThreshold=1.0, weightDecay=0.001, rho=0.5, nonFinite=SKIP}",
          new FAdam(g).toString());
      assertTrue(new FAdafactor(g).toString().contains("factoredMinDim=128"));
      assertEquals(
          "PaperAdafactor{name=Adafactor, learningRate=0.001, beta1=0.9, beta2=0.999,"
              + " adafactorEpsilon=1.0E-30, clipThreshold=1.0, weightDecay=0.001,"
              + " factoredMinDim=128, nonFinite=SKIP}",
          new PaperAdafactor(g).toString());
      assertEquals(1e-8, new PaperAdafactor(g, 0.1f, 0.8f, 0.99f, 1e-8f).getOptions().adafactorEpsilon(),
          "the Adam-shaped constructor's epsilon is Algorithm 4's ε");
      assertEquals("FAdam", new FAdam(g).getOptimizerName());
    }
  }

  /**
   * Square or Pow fed directly by a ref variable crashes TF Java 1.1.0
   * (docs/design.md, "TF Java 1.1.0 facts").
   */
  @ParameterizedTest(name = "{0}")
  @MethodSource("optimizers")
  void refVariablesOnlyFeedIdentityAndAssign(String label, BiFunction<Graph, FisherOptions, FisherOptimizer> make) {
    try (Graph g = new Graph()) {
      Ops tf = Ops.create(g);
      Variable<TFloat32> w = tf.variable(tf.constant(new float[][] {{1, 2, 3, 4}, {1, 2, 3, 4}, {1, 2, 3, 4}, {1, 2, 3, 4}}));
      Op train = make.apply(g, FisherOptions.defaults()).minimize(tf.reduceSum(tf.identity(w), tf.constant(new int[] {0, 1})), "train");
      Set<String> allowed = Set.of("Identity", "Assign");
      int checked = 0;
      for (Iterator<GraphOperation> it = g.operations(); it.hasNext(); ) {
        GraphOperation op = it.next();
        if (!op.type().equals("VariableV2")) {
          continue;
        }
        for (GraphOperation consumer : op.consumers()) {
          assertTrue(allowed.contains(consumer.type()),
              label + ": " + op.name() + " feeds " + consumer.type() + " " + consumer.name());
          checked++;
        }
      }
      assertTrue(checked > 5, "every variable and slot was inspected");
      try (Session s = new Session(g)) {
        s.initialize();
        s.run(train);
      }
    }
  }

  @SuppressWarnings("unchecked")
  static <T extends TType> GradAndVar<? extends TType> gv(Operand<? extends TType> grad, Operand<? extends TType> var) {
    return new GradAndVar<>(((Operand<T>) grad).asOutput(), ((Operand<T>) var).asOutput());
  }

  static double[] values(Session s, Ops tf, Operand<? extends TType> v) {
    try (var r = s.runner().fetch(tf.dtypes.cast(tf.identity(v), TFloat64.class)).run()) {
      TFloat64 t = (TFloat64) r.get(0);
      double[] out = new double[(int) t.shape().size()];
      t.copyTo(org.tensorflow.ndarray.buffer.DataBuffers.of(out, false, false));
      return out;
    }
  }

  static long longOf(Session s, Operand<?> v) {
    try (var r = s.runner().fetch(v).run()) {
      return ((TInt64) r.get(0)).getLong();
    }
  }
}
