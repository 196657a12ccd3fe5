package compat;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.*;

import org.apache.kafka.common.config.ConfigDef;
import org.apache.kafka.connect.connector.Task;
import org.apache.kafka.connect.data.Schema;
import org.apache.kafka.connect.sink.SinkConnector;
import org.apache.kafka.connect.sink.SinkRecord;
import org.apache.kafka.connect.sink.SinkTask;
import org.apache.kafka.connect.source.SourceConnector;
import org.apache.kafka.connect.source.SourceRecord;
import org.apache.kafka.connect.source.SourceTask;

/**
 * A line-per-record file source and sink, as Kafka's FileStreamSource/FileStreamSink
 * (org.apache.kafka:connect-file, which the Maven mirror here does not serve): the source
 * reads `file` and produces each line to `topic`, keeping its position as a Connect source
 * offset (line number); the sink appends each record's value as a line to `file`.
 */
public final class LineFiles {
    static final ConfigDef CONFIG = new ConfigDef()
            .define("file", ConfigDef.Type.STRING, ConfigDef.Importance.HIGH, "file")
            .define("topic", ConfigDef.Type.STRING, "", ConfigDef.Importance.HIGH, "topic");

    public static final class Source extends SourceConnector {
        Map<String, String> props;

        @Override public void start(Map<String, String> p) { props = p; }
        @Override public Class<? extends Task> taskClass() { return SourceTaskImpl.class; }
        @Override public List<Map<String, String>> taskConfigs(int max) { return List.of(props); }
        @Override public void stop() {}
        @Override public ConfigDef config() { return CONFIG; }
        @Override public String version() { return "1"; }
    }

    public static final class SourceTaskImpl extends SourceTask {
        Path file;
        String topic;
        long line;

        @Override public String version() { return "1"; }

        @Override public void start(Map<String, String> p) {
            file = Path.of(p.get("file"));
            topic = p.get("topic");
            Map<String, Object> off = context.offsetStorageReader().offset(Map.of("file", file.toString()));
            line = off == null ? 0 : ((Number) off.get("line")).longValue();
        }

        @Override public List<SourceRecord> poll() throws InterruptedException {
            List<String> lines;
            try {
                lines = Files.readAllLines(file, StandardCharsets.UTF_8);
            } catch (IOException e) {
                lines = List.of();
            }
            List<SourceRecord> out = new ArrayList<>();
            while (line < lines.size()) {
                out.add(new SourceRecord(Map.of("file", file.toString()), Map.of("line", line + 1), topic, null,
                        Schema.STRING_SCHEMA, lines.get((int) line)));
                line++;
            }
            if (out.isEmpty()) {
                Thread.sleep(200);
                return null;
            }
            return out;
        }

        @Override public void stop() {}
    }

    public static final class Sink extends SinkConnector {
        Map<String, String> props;

        @Override public void start(Map<String, String> p) { props = p; }
        @Override public Class<? extends Task> taskClass() { return SinkTaskImpl.class; }
        @Override public List<Map<String, String>> taskConfigs(int max) { return List.of(props); }
        @Override public void stop() {}
        @Override public ConfigDef config() { return CONFIG; }
        @Override public String version() { return "1"; }
    }

    public static final class SinkTaskImpl extends SinkTask {
        Path file;

        @Override public String version() { return "1"; }
        @Override public void start(Map<String, String> p) { file = Path.of(p.get("file")); }

        @Override public void put(Collection<SinkRecord> records) {
            if (records.isEmpty()) return;
            StringBuilder b = new StringBuilder();
            for (SinkRecord r : records) b.append(r.value()).append('\n');
            try {
                Files.writeString(file, b, StandardCharsets.UTF_8, StandardOpenOption.CREATE, StandardOpenOption.APPEND);
            } catch (IOException e) {
                throw new org.apache.kafka.connect.errors.ConnectException(e);
            }
        }

        @Override public void stop() {}
    }
}
