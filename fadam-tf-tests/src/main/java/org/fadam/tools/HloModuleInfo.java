package org.fadam.tools;

import com.google.protobuf.ByteString;
import com.google.protobuf.CodedInputStream;
import com.google.protobuf.WireFormat;
import java.io.IOException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * What a replay needs to know of an XLA module: the entry computation's parameters (number, name,
 * type, shape), its result tuple's elements, and which result element is written back as which
 * parameter (the module's input/output aliasing: TF's resource-variable updates). Read from the
 * serialized {@code HloProto} that {@code --xla_dump_hlo_as_proto} writes ({@code
 * *.before_optimizations.hlo.pb}) with protobuf's wire format, since TF Java ships no XLA protos.
 *
 * <p>Field numbers (xla/service/hlo.proto, xla/xla_data.proto): HloProto.hlo_module 1;
 * HloModuleProto name 1, computations 3, entry_computation_id 6, input_output_alias 8;
 * HloComputationProto instructions 2, id 5, root_id 6; HloInstructionProto name 1, opcode 2,
 * shape 3, parameter_number 9, id 35; ShapeProto element_type 2, dimensions 3, tuple_shapes 4;
 * HloInputOutputAliasProto entries 1; AliasEntryProto output_shape_index 1, parameter_number 2.
 */
public record HloModuleInfo(
    String name, byte[] moduleProto, List<Value> parameters, List<Value> outputs, Map<Integer, Integer> aliases) {

  /** A parameter (index = its parameter number) or an element of the result tuple. */
  public record Value(int index, String name, String dtype, long[] shape) {
    @Override
    public String toString() {
      return name + ": " + dtype + Arrays.toString(shape);
    }
  }

  /** Reads a serialized {@code HloProto} (what the dump writes). */
  public static HloModuleInfo fromHloProto(byte[] hloProto) throws IOException {
    for (Field f : fields(ByteString.copyFrom(hloProto))) {
      if (f.number == 1) {
        return fromModuleProto(f.bytes.toByteArray());
      }
    }
    throw new IOException("not an HloProto: it has no hlo_module (field 1)");
  }

  /** Reads a serialized {@code HloModuleProto}. */
  public static HloModuleInfo fromModuleProto(byte[] module) throws IOException {
    String name = "";
    long entryId = -1;
    List<ByteString> computations = new ArrayList<>();
    ByteString alias = ByteString.EMPTY;
    for (Field f : fields(ByteString.copyFrom(module))) {
      switch (f.number) {
        case 1 -> name = f.bytes.toStringUtf8();
        case 3 -> computations.add(f.bytes);
        case 6 -> entryId = f.varint;
        case 8 -> alias = f.bytes;
        default -> { }
      }
    }
    ByteString entry = null;
    for (ByteString c : computations) {
      for (Field f : fields(c)) {
        if (f.number == 5 && f.varint == entryId) {
          entry = c;
        }
      }
    }
    if (entry == null) {
      throw new IOException("HLO module '" + name + "' has no entry computation (id " + entryId + ")");
    }
    long rootId = -1;
    List<ByteString> instructions = new ArrayList<>();
    for (Field f : fields(entry)) {
      if (f.number == 2) {
        instructions.add(f.bytes);
      } else if (f.number == 6) {
        rootId = f.varint;
      }
    }
    TreeMap<Integer, Value> params = new TreeMap<>();
    ByteString rootShape = null;
    for (ByteString ins : instructions) {
      String insName = "";
      String opcode = "";
      ByteString shape = ByteString.EMPTY;
      long number = 0; // proto3 leaves a zero field out
      long id = 0;
      for (Field f : fields(ins)) {
        switch (f.number) {
          case 1 -> insName = f.bytes.toStringUtf8();
          case 2 -> opcode = f.bytes.toStringUtf8();
          case 3 -> shape = f.bytes;
          case 9 -> number = f.varint;
          case 35 -> id = f.varint;
          default -> { }
        }
      }
      if (opcode.equals("parameter")) {
        Value v = value((int) number, insName, shape);
        if (params.put((int) number, v) != null) {
          throw new IOException("HLO module '" + name + "' has two parameters numbered " + number);
        }
      }
      if (id == rootId) {
        rootShape = shape;
      }
    }
    for (int i = 0; i < params.size(); i++) {
      if (!params.containsKey(i)) {
        throw new IOException("HLO module '" + name + "' has no parameter " + i + " of " + params.size());
      }
    }
    if (rootShape == null) {
      throw new IOException("HLO module '" + name + "' has no root instruction " + rootId);
    }
    List<Value> outputs = new ArrayList<>();
    List<ByteString> tuple = new ArrayList<>();
    for (Field f : fields(rootShape)) {
      if (f.number == 4) {
        tuple.add(f.bytes);
      }
    }
    if (tuple.isEmpty()) {
      outputs.add(value(0, "output0", rootShape));
    } else {
      for (int i = 0; i < tuple.size(); i++) {
        outputs.add(value(i, "output" + i, tuple.get(i)));
      }
    }
    Map<Integer, Integer> aliases = new TreeMap<>();
    for (Field e : fields(alias)) {
      if (e.number != 1) {
        continue;
      }
      List<Long> outputIndex = new ArrayList<>();
      long param = 0;
      for (Field f : fields(e.bytes)) {
        if (f.number == 1) {
          outputIndex.addAll(f.packed != null ? f.packed : List.of(f.varint));
        } else if (f.number == 2) {
          param = f.varint;
        }
      }
      if (outputIndex.size() != 1) {
        throw new IOException("HLO module '" + name + "': unsupported alias of output " + outputIndex
            + " to parameter " + param + " (expected one tuple element to one whole parameter)");
      }
      aliases.put(outputIndex.get(0).intValue(), (int) param);
    }
    return new HloModuleInfo(name, module, List.copyOf(params.values()), List.copyOf(outputs), Map.copyOf(aliases));
  }

  /** XLA's PrimitiveType as numpy's dtype name. */
  static String dtype(long primitiveType) {
    return switch ((int) primitiveType) {
      case 1 -> "bool";
      case 4 -> "int32";
      case 5 -> "int64";
      case 10 -> "float16";
      case 11 -> "float32";
      case 12 -> "float64";
      case 16 -> "bfloat16";
      case 13 -> "tuple";
      default -> "xla_type_" + primitiveType;
    };
  }

  private static Value value(int index, String name, ByteString shape) throws IOException {
    long type = 0;
    List<Long> dims = new ArrayList<>();
    for (Field f : fields(shape)) {
      if (f.number == 2) {
        type = f.varint;
      } else if (f.number == 3) {
        dims.addAll(f.packed != null ? f.packed : List.of(f.varint));
      }
    }
    return new Value(index, name, dtype(type), dims.stream().mapToLong(Long::longValue).toArray());
  }

  /** One field of a message: a varint, or length-delimited bytes (also read as packed varints). */
  private record Field(int number, long varint, ByteString bytes, List<Long> packed) {}

  private static List<Field> fields(ByteString message) throws IOException {
    List<Field> out = new ArrayList<>();
    CodedInputStream in = message.newCodedInput();
    while (!in.isAtEnd()) {
      int tag = in.readTag();
      int number = WireFormat.getTagFieldNumber(tag);
      switch (WireFormat.getTagWireType(tag)) {
        case WireFormat.WIRETYPE_VARINT -> out.add(new Field(number, in.readInt64(), ByteString.EMPTY, null));
        case WireFormat.WIRETYPE_LENGTH_DELIMITED -> {
          ByteString b = in.readBytes();
          out.add(new Field(number, 0, b, packedVarints(b)));
        }
        default -> in.skipField(tag);
      }
    }
    return out;
  }

  /** The bytes as packed varints, or null when they are not (then they are a message or string). */
  private static List<Long> packedVarints(ByteString b) {
    try {
      CodedInputStream in = b.newCodedInput();
      List<Long> values = new ArrayList<>();
      while (!in.isAtEnd()) {
        values.add(in.readInt64());
      }
      return values;
    } catch (IOException e) {
      return null;
    }
  }
}
