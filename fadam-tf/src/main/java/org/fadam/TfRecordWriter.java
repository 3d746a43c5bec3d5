package org.fadam;

import java.io.BufferedOutputStream;
import java.io.Closeable;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.zip.CRC32C;
import org.tensorflow.proto.Example;
import org.tensorflow.proto.Feature;
import org.tensorflow.proto.Features;
import org.tensorflow.proto.Int64List;

/**
 * Writes a TFRecord file — the record format TensorFlow input pipelines read
 * ({@code tf.data.TFRecordDataset}) — usually of {@code tf.train.Example}s. Each record is framed
 * as TensorFlow frames it:
 *
 * <pre>
 * uint64 length            little-endian
 * uint32 masked_crc32c(length bytes)
 * byte   data[length]
 * uint32 masked_crc32c(data)
 * </pre>
 *
 * where {@code masked_crc32c(x) = ((c >>> 15) | (c << 17)) + 0xa282ead8} of the CRC-32C
 * (Castagnoli) {@code c} of {@code x}, uncompressed.
 */
public final class TfRecordWriter implements Closeable {

  private static final int MASK_DELTA = 0xa282ead8;

  private final OutputStream out;
  private long records;

  /**
   * Creates (or truncates) {@code file}.
   *
   * @param file the TFRecord file to write
   * @throws IOException if the file cannot be opened for writing
   */
  public TfRecordWriter(Path file) throws IOException {
    this.out = new BufferedOutputStream(Files.newOutputStream(file), 1 << 16);
  }

  /**
   * Appends one record.
   *
   * @param data the record's bytes, written between its framing
   * @throws IOException if writing fails
   */
  public void write(byte[] data) throws IOException {
    ByteBuffer header = ByteBuffer.allocate(12).order(ByteOrder.LITTLE_ENDIAN);
    header.putLong(data.length);
    header.putInt(maskedCrc32c(header.array(), 0, 8));
    out.write(header.array());
    out.write(data);
    ByteBuffer footer = ByteBuffer.allocate(4).order(ByteOrder.LITTLE_ENDIAN);
    footer.putInt(maskedCrc32c(data, 0, data.length));
    out.write(footer.array());
    records++;
  }

  /**
   * Appends one {@code tf.train.Example}.
   *
   * @param example the example, written as one record of its serialized bytes
   * @throws IOException if writing fails
   */
  public void write(Example example) throws IOException {
    write(example.toByteArray());
  }

  /** {@return the number of records written so far} */
  public long records() {
    return records;
  }

  @Override
  public void close() throws IOException {
    out.close();
  }

  /**
   * The masked CRC-32C that TFRecord stores for {@code length} bytes of {@code data} from {@code
   * offset}.
   *
   * @param data the bytes
   * @param offset the index of the first byte to checksum
   * @param length how many bytes to checksum
   * @return {@code ((c >>> 15) | (c << 17)) + 0xa282ead8} of their CRC-32C {@code c}
   */
  public static int maskedCrc32c(byte[] data, int offset, int length) {
    CRC32C crc = new CRC32C();
    crc.update(data, offset, length);
    int c = (int) crc.getValue();
    return ((c >>> 15) | (c << 17)) + MASK_DELTA;
  }

  /**
   * A {@code tf.train.Example} of int64 list features.
   *
   * @param features each feature's values by its name
   * @return the example, with one {@code Int64List} feature per entry
   */
  public static Example int64Example(Map<String, long[]> features) {
    Features.Builder f = Features.newBuilder();
    features.forEach((name, values) -> {
      Int64List.Builder list = Int64List.newBuilder();
      for (long v : values) {
        list.addValue(v);
      }
      f.putFeature(name, Feature.newBuilder().setInt64List(list).build());
    });
    return Example.newBuilder().setFeatures(f).build();
  }

}
