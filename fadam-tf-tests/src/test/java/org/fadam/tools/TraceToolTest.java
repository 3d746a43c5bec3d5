package org.fadam.tools;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.util.ArrayList;
import java.util.List;
import org.fadam.reference.PaperReference;
import org.fadam.Algorithm;
import org.fadam.reference.PaperReference.Hyper;
import org.junit.jupiter.api.Test;

/** {@code fadam-trace} on the paper's Adafactor: Algorithm 4 line 1 defaults, its slots, errors. */
class TraceToolTest {

  /**
   * A factored 2×2 case with no hparams but lr and factored_min_dim: θ, m, R and C after each
   * step equal the float64 reference at Algorithm 4's defaults (ε = 1e-30). The first gradient is
   * 2^-60, whose square (~7.5e-37) is far below ε = 1e-30: R, C, and through ḡ = g/√f also m and
   * θ, are set by ε, so a wrong ε default (the 1e-8 of Algorithms 1–3) shows in every slot.
   */
  @Test
  void adafactorTraceIsAlgorithm4WithItsDefaults() {
    double tiny = Math.scalb(1.0, -60);
    String json = "{\"optimizer\": \"adafactor\", \"dtype\": \"float64\","
        + " \"hparams\": {\"lr\": 0.1, \"factored_min_dim\": 2},"
        + " \"theta\": [[1, 2], [3, 4]],"
        + " \"grads\": [[[" + tiny + ", 0], [0, -" + tiny + "]], [[0.5, -1], [0.25, 2]], [[0, 0], [0, 0]]]}";
    JsonObject out = JsonParser.parseString(TraceTool.run(json)).getAsJsonObject();
    Hyper h = Hyper.paperDefaults().withEps(1e-30).withLr(0.1).withFactoredMinDim(2);
    int[] shape = {2, 2};
    PaperReference.State ref = PaperReference.init(Algorithm.ADAFACTOR, shape, new double[] {1, 2, 3, 4}, h);
    double[][] grads = {{tiny, 0, 0, -tiny}, {0.5, -1, 0.25, 2}, {0, 0, 0, 0}};
    JsonObject slots = out.getAsJsonObject("slots");
    assertEquals(List.of("m", "fim_row", "fim_col", "step"), new ArrayList<>(slots.keySet()));
    for (int k = 0; k < grads.length; k++) {
      PaperReference.step(Algorithm.ADAFACTOR, ref, grads[k], h);
      close(ref.theta, flat(out.getAsJsonArray("thetas").get(k)), "theta step " + (k + 1));
      for (String slot : List.of("m", "fim_row", "fim_col")) {
        close(ref.slots.get(slot), flat(slots.getAsJsonArray(slot).get(k)), slot + " step " + (k + 1));
      }
      assertEquals(k + 1.0, slots.getAsJsonArray("step").get(k).getAsDouble());
    }
    // After step 1 (β̂2 = 0), by hand: R = C = row (column) sums of g² + ε = (τ² + 2ε, τ² + 2ε)
    // (Alg. 4 l.7–8), f = R C / 1ᵀR = (τ² + 2ε)/2 everywhere (l.9), ḡ = g/√f (l.10, RMS < 1: no
    // clip), m = (1 − β1) η ḡ (l.12), θ ← θ − (m + λθ) (l.13).
    double r = tiny * tiny + 2e-30;
    close(new double[] {r, r}, flat(slots.getAsJsonArray("fim_row").get(0)), "R1 by hand");
    close(new double[] {r, r}, flat(slots.getAsJsonArray("fim_col").get(0)), "C1 by hand");
    double gBar = tiny / Math.sqrt(r / 2);
    double m = 0.1 * 0.1 * gBar;
    close(new double[] {1 - m - 0.001, 2 - 0.002, 3 - 0.003, 4 + m - 0.004},
        flat(out.getAsJsonArray("thetas").get(0)), "θ1 by hand");
  }

  /**
   * The trace shows the tensor's telemetry of each step (docs/design.md, "Step telemetry"), here
   * worked by hand for FAdam at the paper's defaults (c = 1, ε = 1e-8, ε2 = 1e-4). Step 1, g = (1,
   * 0): f = g² (β̂2 = 0), ε̂ = min(ε, ε2·RMS(g)) = ε (1e-4·0.707 &gt; ε: no floor), ḡ = (1/(1 + ε),
   * 0), RMS(ḡ) ≈ 0.707 &lt; 1: not clipped; ḡw = θ/(√f + ε) = (1/(1 + ε), 2/ε): clipped. Step 2, g
   * = (1e-9, 1e-9): ε2·RMS(g) = 1e-13 &lt; ε: the floor.
   */
  @Test
  void traceShowsTheTensorsTelemetry() {
    String json = "{\"optimizer\": \"fadam\", \"dtype\": \"float64\", \"hparams\": {\"lr\": 0.1},"
        + " \"theta\": [1, 2], \"grads\": [[1, 0], [1e-9, 1e-9]]}";
    JsonObject t = JsonParser.parseString(TraceTool.run(json)).getAsJsonObject().getAsJsonObject("telemetry");
    assertEquals(List.of("grad_rms", "clipped_natural", "clipped_decay", "eps_floor", "skipped", "learning_rate"),
        new ArrayList<>(t.keySet()));
    double[] gradRms = flat(t.get("grad_rms")); // float32
    assertEquals(Math.sqrt(0.5), gradRms[0], 1e-6, "grad_rms step 1");
    assertEquals(1e-9, gradRms[1], 1e-15, "grad_rms step 2");
    assertEquals(0.0, flat(t.get("clipped_natural"))[0], "clipped_natural step 1");
    assertEquals(1.0, flat(t.get("clipped_decay"))[0], "clipped_decay step 1");
    close(new double[] {0, 1}, flat(t.get("eps_floor")), "eps_floor");
    close(new double[] {0, 0}, flat(t.get("skipped")), "skipped");
    assertEquals(0.1, flat(t.get("learning_rate"))[0], 1e-8, "learning_rate (float32)");
  }

  @Test
  void adafactorRejectsHyperparametersItDoesNotHave() {
    for (String hp : List.of("eps2", "rho")) {
      var e = assertThrows(IllegalArgumentException.class, () -> TraceTool.run(
          "{\"optimizer\": \"adafactor\", \"hparams\": {\"" + hp + "\": 0.5}, \"theta\": [1], \"grads\": [[1]]}"));
      assertEquals("hparam \"" + hp + "\" is not a hyperparameter of adafactor (Algorithm 4)", e.getMessage());
    }
    var e = assertThrows(IllegalArgumentException.class, () -> TraceTool.run(
        "{\"optimizer\": \"adafactorx\", \"theta\": [1], \"grads\": [[1]]}"));
    assertTrue(e.getMessage().contains("fadam, fadafactor, adam, adafactor"), e.getMessage());
  }

  private static void close(double[] want, double[] got, String what) {
    assertEquals(want.length, got.length, what);
    for (int i = 0; i < want.length; i++) {
      assertEquals(want[i], got[i], 1e-12 * Math.abs(want[i]), what + "[" + i + "]");
    }
  }

  private static double[] flat(JsonElement e) {
    List<Double> out = new ArrayList<>();
    flatten(e, out);
    return out.stream().mapToDouble(Double::doubleValue).toArray();
  }

  private static void flatten(JsonElement e, List<Double> out) {
    if (e.isJsonArray()) {
      for (JsonElement c : (JsonArray) e) {
        flatten(c, out);
      }
    } else {
      out.add(e.getAsDouble());
    }
  }
}
