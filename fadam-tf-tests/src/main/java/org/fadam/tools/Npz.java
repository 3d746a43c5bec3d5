package org.fadam.tools;

import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashSet;
import java.util.Set;
import java.util.StringJoiner;
import java.util.zip.ZipEntry;
import java.util.zip.ZipOutputStream;

/**
 * Writes arrays in numpy's formats: one {@code .npy} array (format 1.0: magic, header dict,
 * little-endian C-order data) and {@code .npz} files (a zip of {@code NAME.npy} entries, what
 * {@code numpy.load} reads). bfloat16 has no numpy descriptor: it is written as its raw 16 bits
 * ({@code <u2}) and the reader views it as {@code ml_dtypes.bfloat16}.
 */
public final class Npz implements AutoCloseable {

  private static final byte[] MAGIC = {(byte) 0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
  /** numpy pads the header so that the data starts at a multiple of this. */
  private static final int ALIGN = 64;

  private final ZipOutputStream zip;
  private final Set<String> names = new LinkedHashSet<>();

  private Npz(OutputStream out) {
    this.zip = new ZipOutputStream(out);
  }

  /** A new (deflated) .npz file; an existing file is replaced. */
  public static Npz create(Path file) throws IOException {
    return new Npz(Files.newOutputStream(file));
  }

  /** Adds array {@code name} (read back as {@code npz[name]}). */
  public void add(String name, String descr, long[] shape, byte[] littleEndianData) throws IOException {
    if (!names.add(name)) {
      throw new IllegalArgumentException("array '" + name + "' is already in the npz");
    }
    zip.putNextEntry(new ZipEntry(name + ".npy"));
    zip.write(npy(descr, shape, littleEndianData));
    zip.closeEntry();
  }

  @Override
  public void close() throws IOException {
    zip.close();
  }

  /**
   * One .npy file.
   *
   * @param descr numpy's type string: {@code <f4}, {@code <f8}, {@code <i4}, {@code <i8},
   *     {@code <u2}, {@code <f2} or {@code |b1}
   * @param shape the array's shape ({} for a scalar)
   * @param data the elements in C order, little-endian, {@code itemsize × Π shape} bytes
   */
  public static byte[] npy(String descr, long[] shape, byte[] data) {
    long count = 1;
    for (long d : shape) {
      if (d < 0) {
        throw new IllegalArgumentException("negative dimension in shape " + java.util.Arrays.toString(shape));
      }
      count *= d;
    }
    int itemSize = itemSize(descr);
    if (count * itemSize != data.length) {
      throw new IllegalArgumentException("shape " + java.util.Arrays.toString(shape) + " of " + descr
          + " needs " + count * itemSize + " bytes; got " + data.length);
    }
    StringJoiner dims = new StringJoiner(", ", "(", shape.length == 1 ? ",)" : ")");
    for (long d : shape) {
      dims.add(Long.toString(d));
    }
    String dict = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + dims + ", }";
    int unpadded = MAGIC.length + 2 + dict.length() + 1; // + the closing newline
    int padding = (ALIGN - unpadded % ALIGN) % ALIGN;
    String header = dict + " ".repeat(padding) + "\n";
    byte[] h = header.getBytes(StandardCharsets.US_ASCII);
    byte[] out = new byte[MAGIC.length + 2 + h.length + data.length];
    System.arraycopy(MAGIC, 0, out, 0, MAGIC.length);
    out[MAGIC.length] = (byte) (h.length & 0xff); // header length: uint16, little-endian
    out[MAGIC.length + 1] = (byte) (h.length >>> 8);
    System.arraycopy(h, 0, out, MAGIC.length + 2, h.length);
    System.arraycopy(data, 0, out, MAGIC.length + 2 + h.length, data.length);
    return out;
  }

  /** Bytes per element of a numpy type string. */
  static int itemSize(String descr) {
    return switch (descr) {
      case "<f8", "<i8" -> 8;
      case "<f4", "<i4" -> 4;
      case "<f2", "<u2" -> 2;
      case "|b1" -> 1;
      default -> throw new IllegalArgumentException("unsupported numpy type " + descr);
    };
  }
}
