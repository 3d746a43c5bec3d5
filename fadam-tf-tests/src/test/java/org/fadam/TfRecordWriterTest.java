package org.fadam;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.zip.CRC32C;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.tensorflow.proto.Example;

/** TFRecord framing: known vectors (RFC 3720's CRC-32C, a file Python TensorFlow wrote). */
class TfRecordWriterTest {

  /** RFC 3720 appendix B.4: CRC-32C of 32 zeros, 32 0xFF bytes, 0 … 31; and of "123456789". */
  @Test
  void crc32cKnownVectors() {
    byte[] zeros = new byte[32];
    byte[] ones = new byte[32];
    java.util.Arrays.fill(ones, (byte) 0xff);
    byte[] up = new byte[32];
    for (int i = 0; i < 32; i++) {
      up[i] = (byte) i;
    }
    assertEquals(0x8a9136aaL, crc(zeros));
    assertEquals(0x62a8ab43L, crc(ones));
    assertEquals(0x46dd794eL, crc(up));
    assertEquals(0xe3069283L, crc("123456789".getBytes(StandardCharsets.US_ASCII)));
  }

  /**
   * The bytes Python TensorFlow 2.18's {@code tf.io.TFRecordWriter} wrote for an empty record and
   * {@code b"hello, TFRecord"} (printed once with {@code open(f, "rb").read().hex()}).
   */
  @Test
  void writesWhatTensorFlowWrites(@TempDir Path tmp) throws Exception {
    Path f = tmp.resolve("r.tfrecord");
    try (TfRecordWriter w = new TfRecordWriter(f)) {
      w.write(new byte[0]);
      w.write("hello, TFRecord".getBytes(StandardCharsets.US_ASCII));
      assertEquals(2, w.records());
    }
    assertEquals("000000000000000029039807d8ea82a2"
        + "0f000000000000006d532b0968656c6c6f2c2054465265636f726470f4a362",
        HexFormat.of().formatHex(Files.readAllBytes(f)));
  }

  /** An Example record reads back: length, both masked CRCs, the proto with its features. */
  @Test
  void examplesRoundTrip(@TempDir Path tmp) throws Exception {
    Path f = tmp.resolve("e.tfrecord");
    Map<String, long[]> features = new LinkedHashMap<>();
    features.put("tokens", new long[] {3, 63});
    features.put("labels", new long[] {-1});
    try (TfRecordWriter w = new TfRecordWriter(f)) {
      w.write(TfRecordWriter.int64Example(features));
    }
    ByteBuffer b = ByteBuffer.wrap(Files.readAllBytes(f)).order(ByteOrder.LITTLE_ENDIAN);
    long length = b.getLong(0);
    assertEquals(TfRecordWriter.maskedCrc32c(b.array(), 0, 8), b.getInt(8));
    byte[] data = new byte[(int) length];
    b.get(12, data);
    assertEquals(TfRecordWriter.maskedCrc32c(data, 0, data.length), b.getInt(12 + (int) length));
    assertEquals(16 + length, b.capacity());
    var parsed = Example.parseFrom(data).getFeatures().getFeatureMap();
    assertArrayEquals(new Long[] {3L, 63L}, parsed.get("tokens").getInt64List().getValueList().toArray(new Long[0]));
    assertArrayEquals(new Long[] {-1L}, parsed.get("labels").getInt64List().getValueList().toArray(new Long[0]));
  }

  private static long crc(byte[] data) {
    CRC32C c = new CRC32C();
    c.update(data);
    return c.getValue();
  }
}
