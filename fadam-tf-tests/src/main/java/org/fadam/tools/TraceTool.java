package org.fadam.tools;

import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import com.google.gson.JsonPrimitive;
import com.google.gson.JsonSyntaxException;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.fadam.Algorithm;
import org.fadam.FisherOptions;
import picocli.CommandLine.Command;
import picocli.CommandLine.Parameters;

/**
 * Cross-framework conformance: runs one JSON case through a graph optimizer and prints θ and every
 * slot after every step as one JSON object. See docs/numerics.md ("Conformance traces") for the
 * format.
 */
@Command(name = "fadam-trace",
    description = {
      "Runs one conformance case (from CASE.json, or stdin) through fadam-tf's TensorFlow graph"
          + " optimizer and prints one JSON object {\"thetas\": [θ after each step], \"slots\":"
          + " {name: [value after each step]}, \"telemetry\": {name: [the tensor's value of each"
          + " step]}} (telemetry: grad_rms, clipped_natural, clipped_decay, eps_floor, skipped,"
          + " learning_rate; docs/telemetry.md).",
      "CASE: {\"optimizer\": \"fadam\"|\"fadafactor\"|\"adam\"|\"adafactor\","
          + " \"dtype\": \"float32\"|\"float64\","
          + " \"hparams\": {lr, beta1, beta2, eps, eps2, clip, weight_decay, rho, factored_min_dim},"
          + " \"theta\": nested list, \"grads\": [nested list, ...]}",
      "adam is the paper's Algorithm 3, adafactor its Algorithm 4. Missing hparams take the"
          + " paper's defaults; adafactor's are Algorithm 4 line 1: its eps (default 1e-30) is"
          + " added to g² inside the EMAs, and eps2 and rho, which it does not have, are rejected."
    })
public final class TraceTool extends Tool {

  private static final Set<String> HPARAMS =
      Set.of("lr", "beta1", "beta2", "eps", "eps2", "clip", "weight_decay", "rho", "factored_min_dim");

  @Parameters(arity = "0..1", paramLabel = "CASE.json", defaultValue = "-",
      description = "the case as a JSON file; - reads standard input")
  private String caseFile;

  /** Entry point: {@code fadam-trace [case.json]} (stdin without a file). */
  public static void main(String[] args) {
    exit(new TraceTool(), args);
  }

  @Override
  protected int run() throws IOException {
    if (!caseFile.equals("-") && !Files.isRegularFile(Path.of(caseFile))) {
      throw usageError("no case file " + caseFile);
    }
    String input = caseFile.equals("-")
        ? new String(System.in.readAllBytes(), StandardCharsets.UTF_8)
        : Files.readString(Path.of(caseFile), StandardCharsets.UTF_8);
    out().println(run(input));
    return 0;
  }

  /** Runs a case given as JSON text and returns the trace as JSON text. */
  public static String run(String json) {
    JsonObject c;
    try {
      JsonElement e = JsonParser.parseString(json);
      if (!e.isJsonObject()) {
        throw new IllegalArgumentException("the case must be a JSON object");
      }
      c = e.getAsJsonObject();
    } catch (JsonSyntaxException e) {
      throw new IllegalArgumentException("the case is not valid JSON: " + e.getMessage(), e);
    }
    for (String key : c.keySet()) {
      if (!Set.of("optimizer", "dtype", "hparams", "theta", "grads").contains(key)) {
        throw new IllegalArgumentException("unknown key \"" + key + "\" in the case");
      }
    }
    Algorithm algorithm = StepHarness.algorithm(string(c, "optimizer", "fadam"));
    String dtype = string(c, "dtype", "float32");
    StepHarness.dtypeClass(dtype);
    JsonObject hp = c.has("hparams") ? c.getAsJsonObject("hparams") : new JsonObject();
    for (String key : hp.keySet()) {
      if (!HPARAMS.contains(key)) {
        throw new IllegalArgumentException("unknown hparam \"" + key + "\"; known: " + HPARAMS);
      }
    }
    boolean adafactor = algorithm == Algorithm.ADAFACTOR;
    for (String unused : List.of("eps2", "rho")) {
      if (adafactor && hp.has(unused)) {
        throw new IllegalArgumentException(
            "hparam \"" + unused + "\" is not a hyperparameter of adafactor (Algorithm 4)");
      }
    }
    double lr = number(hp, "lr", FisherOptions.exact(FisherOptions.LEARNING_RATE_DEFAULT));
    FisherOptions.Builder b = FisherOptions.builder();
    if (adafactor) { // Algorithm 4 line 1: its ε (1e-30) is added to g² inside the EMAs
      b.adafactorEpsilon(number(hp, "eps", FisherOptions.ADAFACTOR_EPSILON_DEFAULT));
    } else {
      b.epsilon(number(hp, "eps", FisherOptions.EPSILON_DEFAULT));
    }
    FisherOptions options =
        b
            .beta1(number(hp, "beta1", FisherOptions.BETA1_DEFAULT))
            .beta2(number(hp, "beta2", FisherOptions.BETA2_DEFAULT))
            .epsilon2(number(hp, "eps2", FisherOptions.EPSILON2_DEFAULT))
            .clipThreshold(number(hp, "clip", FisherOptions.CLIP_THRESHOLD_DEFAULT))
            .weightDecay(number(hp, "weight_decay", FisherOptions.WEIGHT_DECAY_DEFAULT))
            .rho(number(hp, "rho", FisherOptions.RHO_DEFAULT))
            .factoredMinDim((int) number(hp, "factored_min_dim", FisherOptions.FACTORED_MIN_DIM_DEFAULT))
            .nonFinite(FisherOptions.NonFinitePolicy.PROPAGATE)
            .build();
    if (!c.has("theta")) {
      throw new IllegalArgumentException("the case has no \"theta\"");
    }
    List<Long> shapeList = new ArrayList<>();
    List<Double> thetaList = new ArrayList<>();
    flatten(c.get("theta"), 0, shapeList, thetaList, "theta");
    long[] shape = shapeList.stream().mapToLong(Long::longValue).toArray();
    if (!c.has("grads") || !c.get("grads").isJsonArray()) {
      throw new IllegalArgumentException("the case has no \"grads\" list");
    }
    JsonArray grads = c.getAsJsonArray("grads");
    JsonArray thetas = new JsonArray();
    Map<String, JsonArray> slots = new LinkedHashMap<>();
    Map<String, JsonArray> telemetry = new LinkedHashMap<>();
    try (StepHarness h =
        new StepHarness(algorithm, dtype, lr, options, shape, toArray(thetaList))) {
      for (int i = 0; i < grads.size(); i++) {
        List<Long> gShape = new ArrayList<>();
        List<Double> g = new ArrayList<>();
        String where = "grads[" + i + "]";
        flatten(grads.get(i), 0, gShape, g, where);
        if (!gShape.equals(shapeList)) {
          throw new IllegalArgumentException(where + " has shape " + gShape + ", theta " + shapeList);
        }
        h.step(toArray(g));
        h.telemetry().forEach((n, v) -> telemetry.computeIfAbsent(n, x -> new JsonArray()).add(v));
        for (Map.Entry<String, double[]> e : h.state().entrySet()) {
          if (e.getKey().equals("theta")) {
            thetas.add(nest(e.getValue(), shape));
          } else {
            long[] s = e.getKey().equals(org.fadam.FisherOptimizer.STEP) ? new long[0] : slotShape(e.getKey(), shape, e.getValue().length);
            slots.computeIfAbsent(e.getKey(), k -> new JsonArray()).add(nest(e.getValue(), s));
          }
        }
      }
    }
    JsonObject out = new JsonObject();
    out.add("thetas", thetas);
    JsonObject slotObj = new JsonObject();
    slots.forEach(slotObj::add);
    out.add("slots", slotObj);
    JsonObject telemetryObj = new JsonObject();
    telemetry.forEach(telemetryObj::add);
    out.add("telemetry", telemetryObj);
    Gson gson = new GsonBuilder().serializeSpecialFloatingPointValues().create();
    return gson.toJson(out);
  }

  /** R drops the last axis, C the second last; every other slot has θ's shape. */
  private static long[] slotShape(String slot, long[] shape, int size) {
    int r = shape.length;
    if (slot.equals(org.fadam.FisherOptimizer.FIM_ROW)) {
      return java.util.Arrays.copyOf(shape, r - 1);
    }
    if (slot.equals(org.fadam.FisherOptimizer.FIM_COL)) {
      long[] s = java.util.Arrays.copyOf(shape, r - 1);
      s[r - 2] = shape[r - 1];
      return s;
    }
    return shape;
  }

  private static String string(JsonObject o, String key, String dflt) {
    if (!o.has(key)) {
      return dflt;
    }
    JsonElement e = o.get(key);
    if (!e.isJsonPrimitive() || !e.getAsJsonPrimitive().isString()) {
      throw new IllegalArgumentException("\"" + key + "\" must be a string; got " + e);
    }
    return e.getAsString();
  }

  private static double number(JsonObject o, String key, double dflt) {
    if (!o.has(key)) {
      return dflt;
    }
    JsonElement e = o.get(key);
    if (!e.isJsonPrimitive() || !e.getAsJsonPrimitive().isNumber()) {
      throw new IllegalArgumentException("hparam \"" + key + "\" must be a number; got " + e);
    }
    return e.getAsDouble();
  }

  /** Flattens a rectangular nested list, recording its shape. */
  private static void flatten(JsonElement e, int depth, List<Long> shape, List<Double> out, String where) {
    if (e.isJsonPrimitive() && e.getAsJsonPrimitive().isNumber()) {
      if (depth != shape.size() && !(depth == 0 && shape.isEmpty())) {
        throw new IllegalArgumentException(where + " is not rectangular");
      }
      out.add(e.getAsDouble());
      return;
    }
    if (!e.isJsonArray()) {
      throw new IllegalArgumentException(where + " must hold numbers and lists only; got " + e);
    }
    JsonArray a = e.getAsJsonArray();
    if (depth == shape.size()) {
      if (!out.isEmpty()) {
        throw new IllegalArgumentException(where + " is not rectangular");
      }
      shape.add((long) a.size());
    } else if (shape.get(depth) != a.size()) {
      throw new IllegalArgumentException(where + " is not rectangular");
    }
    for (JsonElement child : a) {
      flatten(child, depth + 1, shape, out, where);
    }
  }

  private static double[] toArray(List<Double> values) {
    return values.stream().mapToDouble(Double::doubleValue).toArray();
  }

  /** A row-major array as a nested JSON list of the given shape. */
  private static JsonElement nest(double[] values, long[] shape) {
    return nest(values, shape, 0, 0);
  }

  private static JsonElement nest(double[] values, long[] shape, int depth, int offset) {
    if (depth == shape.length) {
      return new JsonPrimitive(values[offset]);
    }
    int stride = 1;
    for (int d = depth + 1; d < shape.length; d++) {
      stride *= (int) shape[d];
    }
    JsonArray a = new JsonArray();
    for (int i = 0; i < shape[depth]; i++) {
      a.add(nest(values, shape, depth + 1, offset + i * stride));
    }
    return a;
  }
}
