package org.fadam.tools;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.zip.ZipEntry;
import java.util.zip.ZipInputStream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The .npy/.npz writer against numpy's format 1.0, byte for byte (numpy itself reads them in the CPU replay). */
class NpzTest {

  @Test
  void npyIsMagicVersionLengthHeaderThenData() {
    byte[] data = new byte[2 * 3 * 4];
    for (int i = 0; i < data.length; i++) {
      data[i] = (byte) i;
    }
    byte[] npy = Npz.npy("<f4", new long[] {2, 3}, data);
    assertArrayEquals(new byte[] {(byte) 0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0}, Arrays.copyOf(npy, 8));
    int headerLength = (npy[8] & 0xff) | (npy[9] & 0xff) << 8;
    String header = new String(npy, 10, headerLength, StandardCharsets.US_ASCII);
    assertTrue(header.startsWith("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"), header);
    assertTrue(header.endsWith("\n"), "the header ends in a newline");
    assertEquals("", header.substring(59, headerLength - 1).strip(), "padded with spaces");
    assertEquals(0, (10 + headerLength) % 64, "data starts 64-byte aligned");
    assertArrayEquals(data, Arrays.copyOfRange(npy, 10 + headerLength, npy.length));
  }

  @Test
  void scalarsAndVectorsUsePythonTupleSyntax() {
    assertTrue(header(Npz.npy("<i8", new long[0], new byte[8])).contains("'shape': (), "));
    assertTrue(header(Npz.npy("|b1", new long[] {5}, new byte[5])).contains("'shape': (5,), "));
    assertTrue(header(Npz.npy("<u2", new long[] {0, 7}, new byte[0])).contains("'shape': (0, 7), "));
  }

  @Test
  void wrongDataLengthOrTypeIsRefused() {
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
        () -> Npz.npy("<f4", new long[] {2, 2}, new byte[15]));
    assertEquals("shape [2, 2] of <f4 needs 16 bytes; got 15", e.getMessage());
    assertThrows(IllegalArgumentException.class, () -> Npz.npy("<c8", new long[] {1}, new byte[8]));
  }

  @Test
  void npzIsAZipOfNamedNpyFiles(@TempDir Path dir) throws IOException {
    Path file = dir.resolve("a.npz");
    byte[] x = {1, 0, 0, 0, 2, 0, 0, 0};
    try (Npz npz = Npz.create(file)) {
      npz.add("x", "<i4", new long[] {2}, x);
      npz.add("flag", "|b1", new long[0], new byte[] {1});
      assertThrows(IllegalArgumentException.class, () -> npz.add("x", "<i4", new long[] {2}, x));
    }
    List<String> names = new ArrayList<>();
    try (ZipInputStream zip = new ZipInputStream(Files.newInputStream(file))) {
      for (ZipEntry e; (e = zip.getNextEntry()) != null; ) {
        names.add(e.getName());
        if (e.getName().equals("x.npy")) {
          assertArrayEquals(Npz.npy("<i4", new long[] {2}, x), zip.readAllBytes());
        }
      }
    }
    assertEquals(List.of("x.npy", "flag.npy"), names);
  }

  private static String header(byte[] npy) {
    int n = (npy[8] & 0xff) | (npy[9] & 0xff) << 8;
    return new String(npy, 10, n, StandardCharsets.US_ASCII);
  }
}
