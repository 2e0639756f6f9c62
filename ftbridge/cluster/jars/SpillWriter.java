package ftbridge.spill;

import java.io.IOException;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.nio.charset.StandardCharsets;
import java.util.Collections;
import java.util.Iterator;
import java.util.UUID;
import java.util.regex.Pattern;

import net.jpountz.xxhash.StreamingXXHash64;
import net.jpountz.xxhash.XXHashFactory;
import org.apache.arrow.flatbuf.Message;
import org.apache.arrow.flatbuf.MessageHeader;
import org.apache.arrow.flatbuf.RecordBatch;
import org.apache.spark.api.java.function.Function2;

/**
 * Spills one partition of Arrow record-batch messages (Dataset.toArrowBatchRdd) to a local
 * Arrow IPC stream file inside the executor JVM, so the bytes never cross into Python.
 *
 * The file is byte-for-byte what ftbridge/convert/spill.py:write_messages writes for the same
 * messages: schema message, every non-empty batch message, end-of-stream marker; xxh64 over
 * those bytes. Private (dirs 0700, file 0600 from creation), written under a temp name and
 * renamed into place. Returns one JSON metadata row as UTF-8 bytes.
 */
public final class SpillWriter implements Function2<Integer, Iterator<byte[]>, Iterator<byte[]>> {
    private static final long serialVersionUID = 1L;
    private static final Pattern SAFE_ID = Pattern.compile("^[0-9a-zA-Z_-]{1,64}$");
    private static final byte[] EOS = {(byte) 0xff, (byte) 0xff, (byte) 0xff, (byte) 0xff, 0, 0, 0, 0};

    private final String root;
    private final boolean nodeLocal;
    private final String conversionId;
    private final byte[] schemaMessage;
    private final int onlyPartition;  // -1: every partition

    public SpillWriter(String root, boolean nodeLocal, String conversionId, byte[] schemaMessage,
                       int onlyPartition) {
        this.root = root;
        this.nodeLocal = nodeLocal;
        this.conversionId = safeId(conversionId, "conversion id");
        this.schemaMessage = schemaMessage;
        this.onlyPartition = onlyPartition;
    }

    @Override
    public Iterator<byte[]> call(Integer partition, Iterator<byte[]> messages) throws IOException {
        if (onlyPartition >= 0 && partition != onlyPartition) {
            while (messages.hasNext()) {
                messages.next();
            }
            return Collections.emptyIterator();
        }
        String nodeId = System.getenv("FTBRIDGE_RAY_NODE_ID");
        Path base = Paths.get(root);
        Path dir = nodeLocal ? base.resolve(safeId(nodeId == null ? "unknown-node" : nodeId, "node id")) : base;
        dir = dir.resolve(conversionId);
        makeDirs(base, dir);
        Path target = dir.resolve(String.format("part-%05d.arrow", partition));
        if (!dir.toRealPath().startsWith(base.toRealPath())) {
            throw new IOException("spill path " + target + " escapes the spill root " + root);
        }
        Path tmp = dir.resolve(target.getFileName() + ".tmp-" + UUID.randomUUID().toString().replace("-", ""));
        Files.createFile(tmp, PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rw-------")));
        long rows = 0;
        long size = 0;
        StreamingXXHash64 digest = XXHashFactory.fastestInstance().newStreamingHash64(0L);
        try {
            try (OutputStream out = Files.newOutputStream(tmp, StandardOpenOption.WRITE)) {
                size += write(out, digest, schemaMessage);
                while (messages.hasNext()) {
                    byte[] message = messages.next();
                    long n = rowsOf(message, partition);
                    if (n > 0) {
                        size += write(out, digest, message);
                        rows += n;
                    }
                }
                size += write(out, digest, EOS);
            }
            Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        } catch (IOException | RuntimeException e) {
            Files.deleteIfExists(tmp);
            if (e instanceof IOException && String.valueOf(e.getMessage()).contains("No space left on device")) {
                // The driver reads this mark to name the node and the spill root (see foreign.py).
                throw new IOException("SpillDiskFull[node=" + nodeId + ",root=" + root
                    + "]: no space left on device writing partition " + partition, e);
            }
            throw e;
        }
        String json = "{\"partition_id\": " + partition + ", \"path\": " + quote(target.toString())
            + ", \"node_id\": " + (nodeId == null ? "null" : quote(nodeId))
            + ", \"host\": " + (nodeId == null ? quote(executorHost()) : "null") + ", \"num_rows\": " + rows
            + ", \"num_bytes\": " + size + ", \"checksum\": \"xxh64:" + String.format("%016x", digest.getValue())
            + "\"}";
        return Collections.singletonList(json.getBytes(StandardCharsets.UTF_8)).iterator();
    }

    /** The address this executor advertises to Spark (its block manager's host), which a
     *  driver maps to the Ray node on that host when no Ray node id was set here. */
    private static String executorHost() {
        try {
            org.apache.spark.SparkEnv env = org.apache.spark.SparkEnv.get();
            if (env != null) {
                return env.blockManager().blockManagerId().host();
            }
            return java.net.InetAddress.getLocalHost().getHostAddress();
        } catch (Exception e) {
            return "";
        }
    }

        private static long write(OutputStream out, StreamingXXHash64 digest, byte[] bytes) throws IOException {
        out.write(bytes);
        digest.update(bytes, 0, bytes.length);
        return bytes.length;
    }

    /** Rows of one encapsulated IPC message (continuation marker, length, flatbuffer, body). */
    static long rowsOf(byte[] message, int partition) throws IOException {
        ByteBuffer buf = ByteBuffer.wrap(message).order(ByteOrder.LITTLE_ENDIAN);
        if (message.length < 8) {
            throw new IOException("partition " + partition + ": " + message.length + " bytes are not an Arrow message");
        }
        int offset = 4;
        int length = buf.getInt(0);
        if (length == -1) {
            length = buf.getInt(4);
            offset = 8;
        }
        if (length <= 0 || offset + length > message.length) {
            throw new IOException("partition " + partition + ": bad Arrow message length " + length);
        }
        ByteBuffer meta = ByteBuffer.wrap(message, offset, length).slice().order(ByteOrder.LITTLE_ENDIAN);
        Message parsed = Message.getRootAsMessage(meta);
        if (parsed.headerType() != MessageHeader.RecordBatch) {
            throw new IOException("partition " + partition + ": Arrow message of type " + parsed.headerType()
                + " where a record batch was expected");
        }
        RecordBatch batch = (RecordBatch) parsed.header(new RecordBatch());
        return batch.length();
    }

    private static void makeDirs(Path base, Path dir) throws IOException {
        Path current = base.getRoot();
        for (Path part : dir) {
            current = current == null ? part : current.resolve(part);
            if (!Files.isDirectory(current)) {
                try {
                    Files.createDirectory(current,
                        PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rwx------")));
                } catch (FileAlreadyExistsException e) {
                    // another task made it first
                }
            }
        }
    }

    private static String safeId(String value, String what) {
        if (value == null || !SAFE_ID.matcher(value).matches()) {
            throw new IllegalArgumentException(what + " '" + value + "' is not a safe path component");
        }
        return value;
    }

    private static String quote(String value) {
        StringBuilder sb = new StringBuilder("\"");
        for (char c : value.toCharArray()) {
            if (c == '"' || c == '\\') {
                sb.append('\\').append(c);
            } else if (c < 0x20) {
                sb.append(String.format("\\u%04x", (int) c));
            } else {
                sb.append(c);
            }
        }
        return sb.append('"').toString();
    }
}
