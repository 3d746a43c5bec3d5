package org.fadam;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.tensorflow.Graph;
import org.tensorflow.Operand;
import org.tensorflow.ndarray.Shape;
import org.tensorflow.ndarray.StdArrays;
import org.tensorflow.op.Op;
import org.tensorflow.op.Ops;
import org.tensorflow.op.core.AssignVariableOp;
import org.tensorflow.op.core.Placeholder;
import org.tensorflow.op.train.Restore;
import org.tensorflow.op.train.Save;
import org.tensorflow.types.TString;
import org.tensorflow.types.family.TType;

/**
 * Save and restore ops for resource variables. TF Java 1.1.0's saver covers {@code VariableV2}
 * only, unless the graph already has {@code save/restore_all}: then {@code Graph.saverDef()} uses
 * {@code save/filename}, {@code save/control_dependency} and {@code save/restore_all}, and so do
 * {@code Session.save/restore}, the SavedModel exporter and the loader (Java's and Python's).
 * Must be built before the graph's first save, restore or export. Checkpoint keys are variable
 * names; a restored value of another shape fails naming its variable.
 */
final class ResourceSaver {

  static final String RESTORE_ALL = "save/restore_all";

  private ResourceSaver() {}

  static void build(Graph graph, List<ResourceVariable<?>> variables) {
    if (graph.operation(RESTORE_ALL) != null) {
      throw new IllegalStateException(
          "this graph already has a saver (" + RESTORE_ALL + "): build one FisherTrainStep per graph");
    }
    Ops save = Ops.create(graph).withSubScope("save");
    String[] keys = variables.stream().map(ResourceVariable::name).toArray(String[]::new);
    String[] slices = new String[keys.length];
    Arrays.fill(slices, "");
    Placeholder<TString> filename =
        save.withName("filename").placeholder(TString.class, Placeholder.shape(Shape.scalar()));
    Operand<TString> names = save.withName("tensor_names").constant(StdArrays.ndCopyOf(keys));
    Operand<TString> shapes = save.withName("shape_and_slices").constant(StdArrays.ndCopyOf(slices));
    List<Operand<?>> values = new ArrayList<>();
    List<Class<? extends TType>> types = new ArrayList<>();
    for (ResourceVariable<?> v : variables) {
      values.add(v.read(save));
      types.add(v.type());
    }
    Save saveOp = save.withName("SaveV2").train.save(filename, names, shapes, values);
    save.withControlDependencies(List.of(saveOp)).withName("control_dependency").identity(filename);
    Restore restored = save.withName("RestoreV2").train.restore(filename, names, shapes, types);
    List<Op> assigns = new ArrayList<>();
    for (int i = 0; i < variables.size(); i++) {
      assigns.add(
          save.withName("assign_" + keys[i].replace('/', '.'))
              .assignVariableOp(
                  variables.get(i).handle(),
                  restored.tensors().get(i),
                  AssignVariableOp.validateShape(true)));
    }
    save.withControlDependencies(assigns).withName("restore_all").noOp();
    if (graph.operation("save/filename") == null
        || graph.operation("save/control_dependency") == null
        || graph.operation(RESTORE_ALL) == null) {
      throw new IllegalStateException("the saver ops did not get their names (a 'save' scope existed)");
    }
  }
}
