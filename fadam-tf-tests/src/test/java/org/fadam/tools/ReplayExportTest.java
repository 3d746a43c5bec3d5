package org.fadam.tools;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.Writer;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.zip.ZipEntry;
import java.util.zip.ZipInputStream;
import org.fadam.Algorithm;
import org.fadam.reference.PaperReference;
import org.fadam.reference.PaperReference.Hyper;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * {@code scripts/xla-dump --replay}'s export of the optimizer-alone steps, one per algorithm (the
 * float32 128×256 configurations of the {@code gpu} set, exported once in child JVMs as the tool
 * does): each exported step keeps exactly its algorithm's slots, its manifest entry names its
 * algorithm and its minimum bytes, and its outputs after steps 1 and 3 are its algorithm's, as the
 * float64 reference of the paper computes them from the same exported inputs. An Adafactor
 * configuration built with FAdam's step (as the export once did) fails all three.
 */
class ReplayExportTest {

  /** The configuration of each algorithm: 128×256, both dimensions ≥ 128, so 2 and 4 factor. */
  private static final Map<Algorithm, String> CONFIGS = Map.of(
      Algorithm.FADAM, "fadam_f32_128x256",
      Algorithm.FADAFACTOR, "fadafactor_f32_128x256",
      Algorithm.ADAM, "adam_f32_128x256",
      Algorithm.ADAFACTOR, "adafactor_f32_128x256");

  private static final String SLOT_PREFIX = "train_step/theta-";

  @TempDir static Path out;
  private static Map<String, JsonObject> entries;

  @BeforeAll
  static void export() throws Exception {
    List<String> names = new ArrayList<>();
    for (Algorithm a : Algorithm.values()) {
      names.add(CONFIGS.get(a));
    }
    ReplayExport.export(ReplayExport.select(ReplayExport.set("gpu"), names), out,
        new PrintWriter(Writer.nullWriter()));
    JsonObject manifest = JsonParser.parseString(
        Files.readString(out.resolve(ReplayExport.MANIFEST), StandardCharsets.UTF_8)).getAsJsonObject();
    entries = new LinkedHashMap<>();
    for (JsonElement e : manifest.getAsJsonArray("configs")) {
      entries.put(e.getAsJsonObject().get("name").getAsString(), e.getAsJsonObject());
    }
    assertEquals(new TreeSet<>(names), new TreeSet<>(entries.keySet()));
  }

  /**
   * The slots of the paper's algorithms (each line 2), written out here: m and the full f for
   * Algorithms 1 and 3; m, R and C for Algorithms 2 and 4 on a 128×256 matrix; the step counter.
   */
  private static Map<String, List<Long>> expectedSlots(Algorithm a) {
    Map<String, List<Long>> m = new HashMap<>(switch (a) {
      case FADAM, ADAM -> Map.of("fim", List.of(128L, 256L));
      // R: the last axis summed; C: the second-last axis summed
      case FADAFACTOR, ADAFACTOR -> Map.of("fim_row", List.of(128L), "fim_col", List.of(256L));
    });
    m.put("m", List.of(128L, 256L));
    m.put("step", List.of());
    return m;
  }

  /**
   * Bytes per parameter of the minimum passes, counted by hand for float32 (p = s = 4): FAdam
   * Σg² (4), the clip sums over g, f, θ (12), g, f, m, θ → f, m, θ (28); FAdafactor the same
   * without a full-size f (4 + 8 + 20); Adam g, f, m → f, m (20), f, m, θ → θ (16); Adafactor R
   * and C over g (4), the clip over g (4), g, m, θ → m, θ (20).
   */
  private static int expectedBytes(Algorithm a) {
    return switch (a) {
      case FADAM -> 4 + 12 + 28;
      case FADAFACTOR -> 4 + 8 + 20;
      case ADAM -> 20 + 16;
      case ADAFACTOR -> 4 + 4 + 20;
    };
  }

  @ParameterizedTest(name = "{0}")
  @EnumSource(Algorithm.class)
  void theManifestNamesTheAlgorithmAndItsBytes(Algorithm a) {
    JsonObject e = entries.get(CONFIGS.get(a));
    String literal = switch (a) {
      case FADAM -> "fadam";
      case FADAFACTOR -> "fadafactor";
      case ADAM -> "adam";
      case ADAFACTOR -> "adafactor";
    };
    assertEquals(literal, e.get("algorithm").getAsString());
    assertEquals("optimizer", e.get("model").getAsString());
    assertEquals(128 * 256, e.get("parameters").getAsLong());
    assertEquals(expectedBytes(a), e.get("min_bytes_per_param").getAsInt());
  }

  @ParameterizedTest(name = "{0}")
  @EnumSource(Algorithm.class)
  void theExportedStepKeepsExactlyItsAlgorithmsSlots(Algorithm a) {
    JsonObject e = entries.get(CONFIGS.get(a));
    Map<String, List<Long>> slots = new HashMap<>();
    Set<String> updated = new TreeSet<>();
    for (JsonElement p : e.getAsJsonArray("params")) {
      JsonObject o = p.getAsJsonObject();
      String name = o.get("name").getAsString();
      if (o.get("role").getAsString().equals("variable") && name.startsWith(SLOT_PREFIX)) {
        slots.put(name.substring(SLOT_PREFIX.length()), shape(o));
      }
    }
    for (JsonElement p : e.getAsJsonArray("outputs")) {
      JsonObject o = p.getAsJsonObject();
      String name = o.get("name").getAsString();
      if (o.get("role").getAsString().equals("update") && name.startsWith(SLOT_PREFIX)) {
        updated.add(name.substring(SLOT_PREFIX.length()));
      }
    }
    assertEquals(expectedSlots(a), slots, "slots of " + e.get("name"));
    assertEquals(new TreeSet<>(expectedSlots(a).keySet()), updated, "every slot is written back");
  }

  /**
   * Steps 1 to 3 of the float64 reference from the exported initial θ and gradients: θ and every
   * slot after steps 1 and 3 agree with what the exported step computed (float32, XLA) within
   * 1e-5 relative (a tenth of the tensor's largest value for elements that are a cancellation),
   * and so does the initial f (1 for Algorithms 1 and 2, 0 for 3 and 4).
   */
  @ParameterizedTest(name = "{0}")
  @EnumSource(Algorithm.class)
  void theExportedStepComputesItsAlgorithm(Algorithm a) throws IOException {
    JsonObject e = entries.get(CONFIGS.get(a));
    Map<String, double[]> npz = readNpz(out.resolve(e.get("data").getAsString()));
    Map<String, Integer> index = new HashMap<>();
    for (JsonElement p : e.getAsJsonArray("params")) {
      index.put(p.getAsJsonObject().get("name").getAsString(), p.getAsJsonObject().get("index").getAsInt());
    }
    int theta = index.get("theta");
    int grad = index.get("grad_theta");
    Hyper h = switch (a) { // each algorithm's line 1 (Algorithm 4's ε is 1e-30)
      case FADAM, FADAFACTOR, ADAM -> Hyper.paperDefaults();
      case ADAFACTOR -> Hyper.paperDefaults().withEps(1e-30);
    };
    int[] shape = {128, 256};
    PaperReference.State ref = PaperReference.init(a, shape, npz.get("init_p" + theta), h);
    for (var slot : ref.slots.entrySet()) {
      compare(a + " initial " + slot.getKey(), slot.getValue(),
          npz.get("init_p" + index.get(SLOT_PREFIX + slot.getKey())));
    }
    for (int step = 1; step <= 3; step++) {
      PaperReference.step(a, ref, npz.get("feed" + step + "_p" + grad), h);
      if (step == 2) {
        continue; // outputs are kept after steps 1 and 3
      }
      compare(a + " step " + step + " theta", ref.theta, npz.get("out" + step + "_p" + theta));
      for (var slot : ref.slots.entrySet()) {
        compare(a + " step " + step + " " + slot.getKey(), slot.getValue(),
            npz.get("out" + step + "_p" + index.get(SLOT_PREFIX + slot.getKey())));
      }
    }
  }

  /** The same inputs (θ and gradients, bit for bit) give four different θ after step 1. */
  @Test
  void theFourStepsDifferOnTheSameInputs() throws IOException {
    Map<Algorithm, double[]> after = new LinkedHashMap<>();
    double[] theta0 = null;
    double[] grad1 = null;
    for (Algorithm a : Algorithm.values()) {
      JsonObject e = entries.get(CONFIGS.get(a));
      Map<String, double[]> npz = readNpz(out.resolve(e.get("data").getAsString()));
      // grad_theta is parameter 0 and theta parameter 1 in every optimizer configuration
      if (theta0 == null) {
        theta0 = npz.get("init_p1");
        grad1 = npz.get("feed1_p0");
      } else {
        assertArrayEquals(theta0, npz.get("init_p1"), a + ": the same initial θ");
        assertArrayEquals(grad1, npz.get("feed1_p0"), a + ": the same gradient");
      }
      after.put(a, npz.get("out1_p1"));
    }
    for (Algorithm a : Algorithm.values()) {
      for (Algorithm b : Algorithm.values()) {
        if (a.ordinal() < b.ordinal()) {
          double largest = 0;
          for (int i = 0; i < theta0.length; i++) {
            largest = Math.max(largest, Math.abs(after.get(a)[i] - after.get(b)[i]));
          }
          // one step moves θ by about η = 1e-3; two rules differ by far more than round-off
          assertTrue(largest > 1e-5, a + " and " + b + " give the same θ after step 1 (max difference "
              + largest + ")");
        }
      }
    }
  }

  private static List<Long> shape(JsonObject o) {
    List<Long> s = new ArrayList<>();
    JsonArray a = o.getAsJsonArray("shape");
    a.forEach(x -> s.add(x.getAsLong()));
    return s;
  }

  /**
   * |got − want| ≤ 1e-5 · max(|want|, max|want| / 10) per element (float32 against float64, as
   * the conformance tests compare them).
   */
  private static void compare(String what, double[] want, double[] got) {
    assertNotNull(got, what + " is not in the export");
    assertEquals(want.length, got.length, what + " size");
    double scale = 0;
    for (double w : want) {
      scale = Math.max(scale, Math.abs(w));
    }
    for (int i = 0; i < want.length; i++) {
      double allowed = 1e-5 * Math.max(Math.abs(want[i]), 0.1 * scale);
      if (!(Math.abs(got[i] - want[i]) <= allowed)) {
        fail(what + "[" + i + "] = " + got[i] + ", reference " + want[i]);
      }
    }
  }

  private static final Pattern DESCR = Pattern.compile("'descr': '([^']+)'");

  /** The float32 and int64 arrays of an .npz (numpy format 1.0), as doubles, by name. */
  static Map<String, double[]> readNpz(Path file) throws IOException {
    Map<String, double[]> arrays = new HashMap<>();
    try (ZipInputStream zip = new ZipInputStream(Files.newInputStream(file))) {
      for (ZipEntry z; (z = zip.getNextEntry()) != null; ) {
        byte[] npy = zip.readAllBytes();
        int headerLength = (npy[8] & 0xff) | (npy[9] & 0xff) << 8;
        String header = new String(npy, 10, headerLength, StandardCharsets.US_ASCII);
        Matcher m = DESCR.matcher(header);
        assertTrue(m.find(), header);
        ByteBuffer data = ByteBuffer.wrap(npy, 10 + headerLength, npy.length - 10 - headerLength)
            .slice().order(ByteOrder.LITTLE_ENDIAN);
        double[] values = switch (m.group(1)) {
          case "<f4" -> {
            double[] v = new double[data.remaining() / 4];
            for (int i = 0; i < v.length; i++) {
              v[i] = data.getFloat(4 * i);
            }
            yield v;
          }
          case "<i8" -> {
            double[] v = new double[data.remaining() / 8];
            for (int i = 0; i < v.length; i++) {
              v[i] = data.getLong(8 * i);
            }
            yield v;
          }
          default -> null; // other types are not read here
        };
        if (values != null) {
          arrays.put(z.getName().substring(0, z.getName().length() - ".npy".length()), values);
        }
      }
    }
    return arrays;
  }
}
