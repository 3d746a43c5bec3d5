package org.fadam.tools;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.fadam.FisherOptimizer;
import org.fadam.FisherTrainStep;
import org.fadam.ResourceVariable;
import org.tensorflow.Graph;
import org.tensorflow.SavedModelBundle;
import org.tensorflow.Session;
import org.tensorflow.Tensor;
import org.tensorflow.op.Ops;
import org.tensorflow.proto.CollectionDef;
import org.tensorflow.proto.MetaGraphDef;
import org.tensorflow.proto.NodeDef;
import org.tensorflow.proto.SavedModel;
import org.tensorflow.proto.VariableDef;
import org.tensorflow.types.TBfloat16;
import org.tensorflow.types.TFloat32;
import org.tensorflow.types.TInt64;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The export as Python TensorFlow reads it (its {@code variables} collections), and bfloat16
 * parameters through the fused step; the Python suite (src/test/python) runs the same exports.
 */
class PythonInteropTest {

  /** Trains the bf16 model {@code steps} steps from batch {@code first}; the losses. */
  private static List<Float> train(FisherTrainStep step, Session s, int first, int steps) {
    List<Float> losses = new ArrayList<>();
    for (int k = first; k < first + steps; k++) {
      Map<String, Tensor> in = PythonInterop.Bf16Model.batch(k);
      losses.add(step.train(s, in).loss());
      in.values().forEach(Tensor::close);
    }
    return losses;
  }

  @Test
  void exportListsEveryVariableAsAResourceVariableDefAndOnlyParametersAsTrainable(@TempDir Path tmp)
      throws Exception {
    Path dir = tmp.resolve("model");
    List<String> names = new ArrayList<>();
    List<String> parameters = new ArrayList<>();
    try (Graph g = new Graph()) {
      FisherTrainStep step = PythonInterop.Bf16Model.build(g);
      step.variables().forEach(v -> names.add(v.name()));
      step.parameters().forEach(v -> parameters.add(v.name()));
      try (Session s = new Session(g)) {
        s.initialize();
        step.export(s, dir);
      }
    }
    MetaGraphDef meta;
    try (InputStream in = Files.newInputStream(dir.resolve("saved_model.pb"))) {
      meta = SavedModel.parseFrom(in).getMetaGraphs(0);
    }
    Map<String, NodeDef> nodes = new HashMap<>();
    meta.getGraphDef().getNodeList().forEach(n -> nodes.put(n.getName(), n));
    List<VariableDef> all = defs(meta.getCollectionDefOrThrow("variables"));
    List<VariableDef> trainable = defs(meta.getCollectionDefOrThrow("trainable_variables"));
    // 4 parameters; w1 (8×16, factored) has m, fim_row, fim_col, step, the others m, fim, step;
    // iterations and skipped_steps.
    assertEquals(4 + 4 + 3 * 3 + 2 + 2, all.size()); // … iterations, skipped_steps; the two hparams
    assertEquals(names.size(), all.size());
    for (int i = 0; i < all.size(); i++) {
      VariableDef d = all.get(i);
      String name = names.get(i);
      assertTrue(d.getIsResource(), name);
      assertEquals(name + "/handle:0", d.getVariableName());
      assertEquals("VarHandleOp", op(nodes, d.getVariableName()).getOp());
      NodeDef init = op(nodes, d.getInitializerName());
      assertEquals("AssignVariableOp", init.getOp());
      assertEquals(name + "/handle", init.getInput(0));
      assertEquals(d.getInitialValueName().replace(":0", ""), init.getInput(1));
      NodeDef snapshot = op(nodes, d.getSnapshotName());
      assertEquals("ReadVariableOp", snapshot.getOp());
      assertEquals(name + "/handle", snapshot.getInput(0));
      assertEquals(parameters.contains(name), d.getTrainable(), name);
    }
    assertEquals(parameters, trainable.stream().map(d -> d.getVariableName().replace("/handle:0", "")).toList());
  }

  @Test
  void bfloat16ParametersTrainThroughTheXlaStepWithFloat32SlotsAndResumeFromTheExport(@TempDir Path tmp)
      throws Exception {
    Path dir = tmp.resolve("model");
    List<Float> uninterrupted;
    try (Graph g = new Graph()) {
      FisherTrainStep step = PythonInterop.Bf16Model.build(g);
      assertTrue(step.jit());
      ResourceVariable<?> w1 = step.parameters().get(0);
      assertEquals(TBfloat16.class, w1.type());
      assertEquals(TFloat32.class, step.slot(w1, FisherOptimizer.FIRST_MOMENT).orElseThrow().type());
      assertEquals(TFloat32.class, step.slot(w1, FisherOptimizer.FIM_ROW).orElseThrow().type());
      assertEquals(TFloat32.class, step.slot(w1, FisherOptimizer.FIM_COL).orElseThrow().type());
      assertEquals(TInt64.class, step.slot(w1, FisherOptimizer.STEP).orElseThrow().type());
      try (Session s = new Session(g)) {
        s.initialize();
        uninterrupted = train(step, s, 0, 40);
        assertTrue(uninterrupted.get(39) < 0.8f * uninterrupted.get(0),
            "the loss falls: " + uninterrupted.get(0) + " → " + uninterrupted.get(39));
        // The bfloat16 parameter changed, in bfloat16.
        Ops tf = Ops.create(g);
        try (var out = s.runner().fetch(w1.read(tf)).run()) {
          assertEquals(org.tensorflow.proto.DataType.DT_BFLOAT16, out.get(0).dataType());
        }
      }
    }
    // 20 steps, export, 20 more from the SavedModel alone: the same 40 losses bit for bit.
    try (Graph g = new Graph()) {
      FisherTrainStep step = PythonInterop.Bf16Model.build(g);
      try (Session s = new Session(g)) {
        s.initialize();
        assertEquals(uninterrupted.subList(0, 20), train(step, s, 0, 20));
        step.export(s, dir);
      }
    }
    try (SavedModelBundle b = FisherTrainStep.loadSavedModel(dir)) {
      var fn = b.function(FisherTrainStep.TRAIN);
      for (int k = 20; k < 40; k++) {
        Map<String, Tensor> in = PythonInterop.Bf16Model.batch(k);
        try (var out = fn.call(in)) {
          float loss = ((TFloat32) out.get(FisherTrainStep.LOSS).orElseThrow()).getFloat();
          assertEquals(Float.floatToRawIntBits(uninterrupted.get(k)), Float.floatToRawIntBits(loss), "step " + k);
        }
        in.values().forEach(Tensor::close);
      }
    }
  }

  private static List<VariableDef> defs(CollectionDef c) throws Exception {
    List<VariableDef> out = new ArrayList<>();
    for (var bytes : c.getBytesList().getValueList()) {
      out.add(VariableDef.parseFrom(bytes));
    }
    return out;
  }

  private static NodeDef op(Map<String, NodeDef> nodes, String tensorOrOp) {
    String name = tensorOrOp.contains(":") ? tensorOrOp.substring(0, tensorOrOp.indexOf(':')) : tensorOrOp;
    NodeDef n = nodes.get(name);
    assertTrue(n != null, "no node " + name + " in the exported graph");
    return n;
  }
}
