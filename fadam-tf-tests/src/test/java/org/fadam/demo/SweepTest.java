package org.fadam.demo;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import javax.imageio.ImageIO;
import org.fadam.Algorithm;
import org.fadam.tools.Tool;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine.ParameterException;

/**
 * {@code scripts/demo --sweep} end to end, small: 2 optimizers × 2 seeds on two workers, through the same
 * command line as the script, and one of its points against a plain {@code scripts/demo} run of
 * that point, which must give the same numbers bit for bit.
 */
class SweepTest {

  private static final int STEPS = 12;

  private static int demo(String... args) {
    StringWriter out = new StringWriter();
    StringWriter err = new StringWriter();
    int status = Tool.execute(new Demo.Cli(), new PrintWriter(out), new PrintWriter(err), args);
    assertEquals(0, status, String.join(" ", args) + ": " + err);
    return status;
  }

  @Test
  void aSweepPointEqualsThePlainRunOfThatPoint(@TempDir Path tmp) throws Exception {
    Path sweepOut = tmp.resolve("sweep");
    demo("--sweep", "--optimizers", "adafactor,fadam", "--lrs", "0.003", "--seeds", "2",
        "--steps", "" + STEPS, "--eval-every", "5", "--workers", "2", "--out", sweepOut.toString());
    List<SweepCsv.Row> sweep = SweepCsv.read(sweepOut.resolve(Sweep.CSV));
    // 2 optimizers × 1 rate × 2 seeds, evaluated at steps 0, 5, 10 and 12; sorted.
    assertEquals(2 * 2 * 4, sweep.size());
    assertEquals(new SweepCsv.Row("Adafactor", 0.003, 1, 0, sweep.get(0).trainLoss(),
        sweep.get(0).heldoutLoss()), sweep.get(0));
    assertEquals("FAdam", sweep.get(sweep.size() - 1).optimizer());
    assertTrue(Files.size(sweepOut.resolve(Sweep.PNG)) > 0);
    assertEquals(SweepPlot.WIDTH, ImageIO.read(sweepOut.resolve(Sweep.PNG).toFile()).getWidth());
    String md = Files.readString(sweepOut.resolve(Sweep.MARKDOWN));
    assertTrue(md.contains("| Adafactor ") && md.contains("| FAdam "), md);

    // The same point, as a plain demo run (it ran beside another point in the sweep).
    Path plainOut = tmp.resolve("plain");
    demo("--optimizers", "fadam", "--lr", "0.003", "--steps", "" + STEPS, "--seed", "2",
        "--eval-every", "5", "--out", plainOut.toString());
    List<ResultsCsv.Row> plain = ResultsCsv.read(plainOut.resolve(Demo.CSV));
    List<SweepCsv.Row> point = sweep.stream()
        .filter(r -> r.optimizer().equals("FAdam") && r.lr() == 0.003 && r.seed() == 2).toList();
    assertEquals(plain.stream().map(r -> SweepCsv.Row.of(0.003, 2, r)).toList(), point);
    assertEquals(STEPS, point.get(point.size() - 1).step());
    System.out.printf("sweep point FAdam lr 0.003 seed 2 at step %d: held-out %s, plain run %s%n",
        STEPS, point.get(point.size() - 1).heldoutLoss(), plain.get(plain.size() - 1).heldoutLoss());

    // The table is the CSV's: each run's last row.
    double floor = MarkovSource.createDefault().entropyRateNats();
    assertEquals(SweepTable.ofRows(sweep, floor).toMarkdown(),
        md.substring(md.indexOf('|'), md.indexOf("\n\n", md.indexOf('|')) + 1));
  }

  @Test
  void commandLine() {
    // The documented defaults (scripts/demo --help, docs/demo.md), written out: every optimizer,
    // a log grid of rates, 3 seeds, 1000 steps evaluated every 500 (the plain demo: 4000, 200),
    // batch 256, embedding 64, hidden 384, XLA on, 2 workers, out demo-out.
    Sweep.Options d = Demo.parseSweep("--sweep");
    assertEquals(new Sweep.Options(
        List.of(Algorithm.FADAM, Algorithm.FADAFACTOR, Algorithm.ADAM, Algorithm.ADAFACTOR),
        List.of(1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2), 3, 1000, 500, 256, 64, 384, true, 2,
        Path.of("demo-out")), d);
    assertEquals(List.of("fadam", "fadafactor", "adam", "adafactor"),
        d.optimizers().stream().map(Algorithm::cliName).toList());
    assertEquals(4000, Demo.parse().steps(), "the plain demo's default steps, more than the sweep's");
    Sweep.Options o = Demo.parseSweep("--sweep", "--lrs", "0.01,1e-3,0.01", "--seeds", "5",
        "--steps", "40", "--eval-every", "7", "--optimizers", "adam", "--workers", "1",
        "--out", "o", "--no-xla", "--batch", "8", "--embed", "4", "--hidden", "6");
    assertEquals(new Sweep.Options(List.of(Algorithm.ADAM), List.of(1e-3, 0.01), 5, 40, 7, 8, 4, 6,
        false, 1, Path.of("o")), o);
    assertEquals(new Demo.Options(new Demo.Settings(3, 8, 0.01, 4, 6), 40, List.of(Algorithm.ADAM),
        Path.of("o"), false, null, null, 7, false, null), o.point(Algorithm.ADAM, 0.01, 3),
        "a point is the plain demo's run with --lr and --seed");
    for (String[] args : List.of(
        new String[] {"--sweep", "--seed", "2"},
        new String[] {"--sweep", "--lr", "0.01"},
        new String[] {"--sweep", "--save", "x"},
        new String[] {"--sweep", "--resume", "x"},
        new String[] {"--sweep", "--lrs", "0.01,-1"},
        new String[] {"--sweep", "--lrs", "0.01,NaN"},
        new String[] {"--sweep", "--seeds", "0"},
        new String[] {"--sweep", "--workers", "0"})) {
      assertThrows(ParameterException.class, () -> Demo.parseSweep(args), String.join(" ", args));
    }
    for (String[] args : List.of(new String[] {"--lrs", "0.01"}, new String[] {"--seeds", "2"},
        new String[] {"--workers", "2"})) {
      var e = assertThrows(ParameterException.class, () -> Demo.parse(args));
      assertTrue(e.getMessage().contains("only apply with --sweep"), e.getMessage());
    }
  }
}
