package org.fadam.tools;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.ByteString;
import com.google.protobuf.CodedOutputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * The HLO reader on modules written here field by field (xla/service/hlo.proto numbering), as
 * XLA writes them: proto3 leaves zero fields out (parameter 0 has no parameter_number), the
 * parameters are in no particular order, other computations have parameters of their own.
 */
class HloModuleInfoTest {

  private static final int PRED = 1;
  private static final int S64 = 5;
  private static final int F32 = 11;
  private static final int BF16 = 16;
  private static final int TUPLE = 13;

  @Test
  void readsTheEntryComputationsParametersOutputsAndAliases() throws IOException {
    byte[] module = module(List.of(
        // a reduction computation: its parameters are not the module's
        computation(3, "add", 9, instruction(8, "x", "parameter", shape(F32), -1),
            instruction(9, "sum", "add", shape(F32), -1)),
        computation(7, "train_step", 30,
            instruction(21, "arg1.2", "parameter", shape(BF16, 4, 5), 1),
            instruction(22, "arg2.3", "parameter", shape(S64), 2),
            instruction(20, "arg0.1", "parameter", shape(F32, 4, 5), 0),
            instruction(30, "tuple", "tuple",
                tuple(shape(F32), shape(PRED, 1), shape(BF16, 4, 5), shape(S64)), -1))),
        7, aliases(new int[][] {{2, 1}, {3, 2}}));
    HloModuleInfo info = HloModuleInfo.fromHloProto(hloProto(module));
    assertEquals("m", info.name());
    assertEquals(List.of("arg0.1", "arg1.2", "arg2.3"), info.parameters().stream().map(HloModuleInfo.Value::name).toList());
    assertEquals(List.of("float32", "bfloat16", "int64"), info.parameters().stream().map(HloModuleInfo.Value::dtype).toList());
    assertArrayEquals(new long[] {4, 5}, info.parameters().get(1).shape());
    assertArrayEquals(new long[0], info.parameters().get(2).shape());
    assertEquals(List.of("float32", "bool", "bfloat16", "int64"), info.outputs().stream().map(HloModuleInfo.Value::dtype).toList());
    assertEquals(Map.of(2, 1, 3, 2), info.aliases());
    assertArrayEquals(module, info.moduleProto());
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

  private static byte[] aliases(int[][] outputToParameter) throws IOException {
    return message(o -> {
      for (int[] a : outputToParameter) {
        byte[] entry = message(e -> {
          e.writeBytes(1, ByteString.copyFrom(message(p -> p.writeInt64NoTag(a[0]))));
          if (a[1] != 0) {
            e.writeInt64(2, a[1]);
          }
          e.writeEnum(4, 1);
        });
        o.writeBytes(1, ByteString.copyFrom(entry));
      }
    });
  }
}
