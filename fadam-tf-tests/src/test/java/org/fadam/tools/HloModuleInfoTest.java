package org.fadam.tools;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.ByteString;
import com.google.protobuf.CodedOutputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The HLO reader on a real dump: a child JVM trains the small softmax model of {@link ResumeProbe}
 * with the fused FAdam step under XLA, with {@code XLA_FLAGS=--xla_dump_to=DIR
 * --xla_dump_hlo_as_text --xla_dump_hlo_as_proto}, and the reader's view of the binary module is
 * compared with what XLA printed of the same module in its text dump (its name, the entry
 * computation's layout and its input/output aliasing) and with what the model is: inputs x and y
 * of a 16-row batch, two variables with three slots each (m, f, step), two counters. The error
 * cases, which no real dump shows, are written by hand below (xla/service/hlo.proto numbering).
 */
class HloModuleInfoTest {

  private static final int F32 = 11;
  private static final int TUPLE = 13;

  /** One line of the text dump's header: "HloModule NAME, input_output_alias={...}, ..." */
  private static final Pattern MODULE = Pattern.compile("^HloModule ([^,\\s]+)");
  private static final Pattern ALIAS = Pattern.compile("\\{(\\d+)\\}: \\((\\d+), \\{\\}, (?:may|must)-alias\\)");
  private static final Pattern ARRAY = Pattern.compile("(\\w+)\\[([\\d,]*)\\](?:\\{[\\d,]*\\})?");
  private static final Pattern ENTRY_PARAMETER = Pattern.compile("^\\s*(\\S+) = \\S+ parameter\\((\\d+)\\)");

  @Test
  void readsTheEntryComputationsParametersOutputsAndAliases(@TempDir Path tmp) throws Exception {
    Path dump = tmp.resolve("dump");
    List<String> cmd = List.of(ProcessHandle.current().info().command().orElse("java"), "-cp",
        System.getProperty("java.class.path"), ResumeProbe.class.getName(), "run", "fadam", "true", "2",
        "0", tmp.resolve("unused").toString());
    ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true);
    pb.environment().put("XLA_FLAGS", "--xla_dump_to=" + dump + " --xla_dump_hlo_as_text --xla_dump_hlo_as_proto");
    pb.environment().put("TF_CPP_MIN_LOG_LEVEL", "2");
    Process p = pb.start();
    String output = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertEquals(0, p.waitFor(), output);
    List<Path> modules;
    try (var files = Files.list(dump)) {
      modules = files.filter(f -> f.getFileName().toString()
          .matches("module_\\d+\\.train_step_.*\\.before_optimizations\\.hlo\\.pb")).toList();
    }
    assertEquals(1, modules.size(), "one module of the train step: " + modules);
    HloModuleInfo info = HloModuleInfo.fromHloProto(Files.readAllBytes(modules.get(0)));
    String proto = modules.get(0).getFileName().toString();
    List<String> text = Files.readAllLines(
        modules.get(0).resolveSibling(proto.substring(0, proto.length() - ".hlo.pb".length()) + ".txt"));

    // XLA's text of the same module: its name, the layout of the entry computation, the aliasing.
    String header = text.get(0);
    Matcher name = MODULE.matcher(header);
    assertTrue(name.find(), header);
    assertEquals(name.group(1), info.name());
    assertTrue(info.name().startsWith("train_step_"), "the step's function (FisherTrainStep's default name): " + info.name());
    String layout = header.substring(header.indexOf("entry_computation_layout={(") + "entry_computation_layout={(".length());
    int arrow = layout.indexOf(")->(");
    List<String> params = arrays(layout.substring(0, arrow));
    List<String> results = arrays(layout.substring(arrow + 4));
    assertEquals(params, info.parameters().stream().map(HloModuleInfoTest::describe).toList(), "parameters");
    assertEquals(results, info.outputs().stream().map(HloModuleInfoTest::describe).toList(), "outputs");
    Map<Integer, Integer> aliases = new TreeMap<>();
    String aliasText = header.substring(0, header.indexOf("entry_computation_layout"));
    for (Matcher m = ALIAS.matcher(aliasText); m.find(); ) {
      aliases.put(Integer.parseInt(m.group(1)), Integer.parseInt(m.group(2)));
    }
    assertEquals(aliases, new TreeMap<>(info.aliases()), "output -> parameter aliases");
    Map<Integer, String> names = new TreeMap<>();
    boolean entry = false;
    for (String line : text) {
      if (line.startsWith("ENTRY ")) {
        entry = true;
      } else if (entry && line.equals("}")) {
        break;
      }
      Matcher m = ENTRY_PARAMETER.matcher(line);
      if (entry && m.find()) {
        names.put(Integer.parseInt(m.group(2)), m.group(1));
      }
    }
    assertEquals(info.parameters().size(), names.size(), "the ENTRY computation's parameter lines");
    assertEquals(List.copyOf(names.values()), info.parameters().stream().map(HloModuleInfo.Value::name).toList());

    // What the model is: the step's arguments are the data inputs, then every variable's value.
    // w and b; m, fim and step of each (FAdam); iterations, skipped_steps; then the two run-time
    // hyperparameters, read but never written
    int variables = 2 + 2 * 3 + 2;
    assertEquals(2 + variables + 2, info.parameters().size());
    assertEquals("float32[16, 6]", describe(info.parameters().get(0)), "x: a batch of 16 rows of 6 features");
    assertEquals("float32[16, 5]", describe(info.parameters().get(1)), "y: 16 one-hot rows of 5 classes");
    List<String> variableShapes = new ArrayList<>();
    for (HloModuleInfo.Value v : info.parameters().subList(2, info.parameters().size())) {
      variableShapes.add(describe(v));
    }
    variableShapes.sort(null);
    assertEquals(List.of("float32[5]", "float32[5]", "float32[5]", "float32[6, 5]", "float32[6, 5]",
        "float32[6, 5]", "float32[]", "float32[]", "int64[]", "int64[]", "int64[]", "int64[]"), variableShapes);
    // Java's train runs the step over values (docs/design.md, "The in-session XLA step"): no output
    // is written back into a parameter's buffer; the new values come after the step's ten results
    // (loss, step, finite, applied, six telemetry scalars) and the session assigns them.
    assertEquals(Map.of(), info.aliases(), "no output aliases a parameter");
    int stepResults = 4 + org.fadam.StepTelemetry.NAMES.size();
    assertEquals(stepResults + variables, info.outputs().size());
    List<String> written = new ArrayList<>();
    for (HloModuleInfo.Value v : info.outputs().subList(stepResults, info.outputs().size())) {
      written.add(describe(v));
    }
    written.sort(null);
    assertEquals(List.of("float32[5]", "float32[5]", "float32[5]", "float32[6, 5]", "float32[6, 5]",
        "float32[6, 5]", "int64[]", "int64[]", "int64[]", "int64[]"), written, "every variable but the two hyperparameters");
    assertEquals("float32[]", describe(info.outputs().get(0)), "the loss comes first");
  }

  /** "float32[6, 5]": a value as the text dump's layout names it, in numpy's words. */
  private static String describe(HloModuleInfo.Value v) {
    return v.dtype() + java.util.Arrays.toString(v.shape());
  }

  /** The arrays of a layout list such as "f32[16,6]{1,0}, s64[], pred[2]{0}" (index comments dropped), described. */
  private static List<String> arrays(String list) {
    List<String> out = new ArrayList<>();
    String rest = list.replaceAll("/\\*[^*]*\\*/", "");
    int end = rest.indexOf(")}");
    if (end >= 0) {
      rest = rest.substring(0, end);
    }
    for (Matcher m = ARRAY.matcher(rest); m.find(); ) {
      String dtype = switch (m.group(1)) {
        case "f32" -> "float32";
        case "f64" -> "float64";
        case "f16" -> "float16";
        case "bf16" -> "bfloat16";
        case "s32" -> "int32";
        case "s64" -> "int64";
        case "pred" -> "bool";
        default -> "xla_" + m.group(1);
      };
      List<Long> dims = new ArrayList<>();
      for (String d : m.group(2).split(",")) {
        if (!d.isEmpty()) {
          dims.add(Long.parseLong(d));
        }
      }
      out.add(dtype + dims);
    }
    return out;
  }

  @Test
  void aMissingParameterNumberOrEntryFailsNamingIt() throws IOException {
    byte[] gap = module(List.of(computation(7, "e", 30,
        instruction(20, "arg0", "parameter", shape(F32), 0),
        instruction(21, "arg2", "parameter", shape(F32), 2),
        instruction(30, "t", "tuple", tuple(shape(F32)), -1))), 7, new byte[0]);
    IOException e = assertThrows(IOException.class, () -> HloModuleInfo.fromModuleProto(gap));
    assertEquals("HLO module 'm' has no parameter 1 of 2", e.getMessage());
    byte[] noEntry = module(List.of(computation(7, "e", 30, instruction(30, "t", "tuple", tuple(), -1))), 8, new byte[0]);
    e = assertThrows(IOException.class, () -> HloModuleInfo.fromModuleProto(noEntry));
    assertEquals("HLO module 'm' has no entry computation (id 8)", e.getMessage());
    e = assertThrows(IOException.class, () -> HloModuleInfo.fromHloProto(new byte[] {0x10, 0x01}));
    assertTrue(e.getMessage().startsWith("not an HloProto"), e.getMessage());
  }

  // ---- writing the protos

  private interface Body {
    void write(CodedOutputStream out) throws IOException;
  }

  private static byte[] message(Body body) throws IOException {
    ByteArrayOutputStream bytes = new ByteArrayOutputStream();
    CodedOutputStream out = CodedOutputStream.newInstance(bytes);
    body.write(out);
    out.flush();
    return bytes.toByteArray();
  }

  private static byte[] hloProto(byte[] module) throws IOException {
    return message(o -> o.writeBytes(1, ByteString.copyFrom(module)));
  }

  private static byte[] module(List<byte[]> computations, long entryId, byte[] alias) throws IOException {
    return message(o -> {
      o.writeString(1, "m");
      o.writeString(2, "entry");
      for (byte[] c : computations) {
        o.writeBytes(3, ByteString.copyFrom(c));
      }
      o.writeInt64(5, 1);
      o.writeInt64(6, entryId);
      if (alias.length > 0) {
        o.writeBytes(8, ByteString.copyFrom(alias));
      }
    });
  }

  private static byte[] computation(long id, String name, long rootId, byte[]... instructions) throws IOException {
    return message(o -> {
      o.writeString(1, name);
      for (byte[] i : instructions) {
        o.writeBytes(2, ByteString.copyFrom(i));
      }
      o.writeInt64(5, id);
      o.writeInt64(6, rootId);
    });
  }

  private static byte[] instruction(long id, String name, String opcode, byte[] shape, long parameterNumber)
      throws IOException {
    return message(o -> {
      o.writeString(1, name);
      o.writeString(2, opcode);
      o.writeBytes(3, ByteString.copyFrom(shape));
      if (parameterNumber > 0) { // proto3: 0 is not written
        o.writeInt64(9, parameterNumber);
      }
      o.writeInt64(35, id);
    });
  }

  private static byte[] shape(int type, long... dims) throws IOException {
    return message(o -> {
      o.writeEnum(2, type);
      if (dims.length > 0) {
        byte[] packed = message(p -> {
          for (long d : dims) {
            p.writeInt64NoTag(d);
          }
        });
        o.writeBytes(3, ByteString.copyFrom(packed));
      }
    });
  }

  private static byte[] tuple(byte[]... elements) throws IOException {
    return message(o -> {
      o.writeEnum(2, TUPLE);
      for (byte[] e : elements) {
        o.writeBytes(4, ByteString.copyFrom(e));
      }
    });
  }
}
