package org.fadam;

import java.nio.file.Path;
import java.util.Map;
import org.fadam.tools.ResumeProbe;
import org.tensorflow.Graph;
import org.tensorflow.Session;
import org.tensorflow.Tensor;
import org.tensorflow.types.TFloat32;

/**
 * A training job to be killed (run as a child JVM by {@link CrashSafetyTest}): it trains the
 * {@link ResumeProbe} model, and when its write reaches the given stage it prints
 * {@code PAUSED <stage>} and waits there, for the test to {@code kill -9} it.
 *
 * <ul>
 *   <li>{@code checkpoint DIR STAGE}: a checkpoint (keep 2) after steps 2, 4 and 6; pauses in the
 *       write of the third, ckpt-6.
 *   <li>{@code export DIR STAGE}: exports after step 3, then replaces that export after step 5,
 *       pausing in the replacement.
 * </ul>
 */
public final class CrashProbe {

  private CrashProbe() {}

  public static void main(String[] args) throws Exception {
    String mode = args[0];
    Path dir = Path.of(args[1]);
    String stage = args[2];
    try (Graph g = new Graph()) {
      FisherTrainStep step = ResumeProbe.build(g, Algorithm.FADAM, true);
      try (Session s = new Session(g)) {
        s.initialize();
        CheckpointManager checkpoints = step.checkpoints(dir, 2);
        for (int k = 0; k < 6; k++) {
          Map<String, TFloat32> feeds = ResumeProbe.batch(k);
          step.train(s, feeds);
          feeds.values().forEach(Tensor::close);
          int done = k + 1;
          if (mode.equals("checkpoint") && done % 2 == 0) {
            arm(done == 6, stage);
            checkpoints.save(s);
            System.out.println("saved " + done);
          } else if (mode.equals("export") && (done == 3 || done == 5)) {
            arm(done == 5, stage);
            step.exportReplacing(s, dir, null);
            System.out.println("exported " + done);
          }
        }
      }
    }
    System.out.println("not killed");
  }

  private static void arm(boolean armed, String stage) {
    AtomicDirectory.stageHook = s -> {
      if (armed && s.equals(stage)) {
        System.out.println("PAUSED " + s);
        System.out.flush();
        try {
          Thread.sleep(Long.MAX_VALUE);
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
        }
      }
    };
  }
}
