package compat.dbz;

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.sql.DriverManager;
import java.time.Duration;
import java.util.*;
import java.util.regex.Pattern;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.connect.cli.ConnectDistributed;

/**
 * {@code Debezium <bootstrap> <postgres port>}: Debezium's PostgreSQL connector on a distributed
 * Kafka Connect worker whose config, offset and status topics live on the broker: a snapshot
 * of existing rows, then inserts and an update streamed from the write-ahead log (pgoutput),
 * all read back from the broker. Prints "PASS name" or "FAIL name: why" and a closing
 * "compat-debezium: N passed, N failed" line.
 */
public final class Debezium {
    static final String RUN = Long.toString(System.currentTimeMillis() % 1_000_000_000L, 36);
    static final String CASE = "connect_debezium_postgres";

    public static void main(String[] args) {
        long t0 = System.nanoTime();
        boolean ok;
        try {
            run(args[0], args[1]);
            System.out.printf("PASS %s (%d ms)%n", CASE, (System.nanoTime() - t0) / 1_000_000);
            ok = true;
        } catch (Throwable t) {
            System.out.printf("FAIL %s: %s%n", CASE, String.valueOf(t).replace('\n', ' '));
            t.printStackTrace(System.err);
            ok = false;
        }
        System.out.printf("compat-debezium: %d passed, %d failed%n", ok ? 1 : 0, ok ? 0 : 1);
        System.out.flush();
        Runtime.getRuntime().halt(ok ? 0 : 1);
    }

    static void check(boolean ok, String what) {
        if (!ok) throw new AssertionError(what);
    }

    static int freePort() throws java.io.IOException {
        try (var s = new java.net.ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
            return s.getLocalPort();
        }
    }

    static String http(String method, String url, String body) throws Exception {
        var b = HttpRequest.newBuilder(URI.create(url)).timeout(Duration.ofSeconds(30))
                .header("Content-Type", "application/json");
        b = body == null ? b.method(method, HttpRequest.BodyPublishers.noBody())
                : b.method(method, HttpRequest.BodyPublishers.ofString(body));
        var r = HttpClient.newHttpClient().send(b.build(), HttpResponse.BodyHandlers.ofString());
        check(r.statusCode() < 300, method + " " + url + " -> " + r.statusCode() + " " + r.body());
        return r.body();
    }

    static void run(String bootstrap, String pgPort) throws Exception {
        String url = "jdbc:postgresql://127.0.0.1:" + pgPort + "/postgres";
        String table = "items_" + RUN;
        try (var db = DriverManager.getConnection(url, "postgres", "")) {
            var st = db.createStatement();
            st.execute("CREATE TABLE " + table + " (id int PRIMARY KEY, name text)");
            st.execute("INSERT INTO " + table + " VALUES (1, 'a'), (2, 'b'), (3, 'c')");
        }
        int port = freePort();
        String id = "dbz-" + RUN;
        Map<String, String> props = new HashMap<>();
        props.put("bootstrap.servers", bootstrap);
        props.put("group.id", id);
        props.put("config.storage.topic", id + "-configs");
        props.put("offset.storage.topic", id + "-offsets");
        props.put("status.storage.topic", id + "-status");
        props.put("config.storage.replication.factor", "1");
        props.put("offset.storage.replication.factor", "1");
        props.put("status.storage.replication.factor", "1");
        props.put("key.converter", "org.apache.kafka.connect.json.JsonConverter");
        props.put("value.converter", "org.apache.kafka.connect.json.JsonConverter");
        props.put("key.converter.schemas.enable", "false");
        props.put("value.converter.schemas.enable", "false");
        props.put("offset.flush.interval.ms", "500");
        props.put("listeners", "http://127.0.0.1:" + port);
        props.put("rest.advertised.host.name", "127.0.0.1");
        props.put("plugin.discovery", "only_scan");
        var connect = new ConnectDistributed().startConnect(props);
        String base = "http://127.0.0.1:" + port;
        try {
            String prefix = "dbz" + RUN;
            String config = "{\"connector.class\":\"io.debezium.connector.postgresql.PostgresConnector\","
                    + "\"tasks.max\":\"1\",\"database.hostname\":\"127.0.0.1\",\"database.port\":\"" + pgPort + "\","
                    + "\"database.user\":\"postgres\",\"database.password\":\"\",\"database.dbname\":\"postgres\","
                    + "\"topic.prefix\":\"" + prefix + "\",\"plugin.name\":\"pgoutput\",\"slot.name\":\"" + table + "\","
                    + "\"publication.name\":\"" + table + "\",\"publication.autocreate.mode\":\"filtered\","
                    + "\"table.include.list\":\"public." + table + "\","
                    // Connect creates the change topic (brokers may refuse auto-creation, as
                    // Icestream does by default).
                    + "\"topic.creation.default.replication.factor\":\"1\",\"topic.creation.default.partitions\":\"1\"}";
            long deadline = System.currentTimeMillis() + 90000;
            while (true) {
                try {
                    http("PUT", base + "/connectors/pg/config", config);
                    break;
                } catch (Throwable e) {
                    check(System.currentTimeMillis() < deadline, "Connect never accepted the connector: " + e);
                    Thread.sleep(500);
                }
            }
            String topic = prefix + ".public." + table;
            List<String> ops = new ArrayList<>();
            Pattern op = Pattern.compile("\"op\":\"(\\w)\"");
            Map<String, Object> c = new HashMap<>();
            c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
            c.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class);
            c.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class);
            c.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
            c.put(ConsumerConfig.GROUP_ID_CONFIG, id + "-reader");
            c.put(ConsumerConfig.METADATA_MAX_AGE_CONFIG, 1000);
            try (var consumer = new KafkaConsumer<String, String>(c)) {
                consumer.subscribe(List.of(topic));
                boolean changed = false;
                deadline = System.currentTimeMillis() + 90000;
                while (ops.size() < 6 && System.currentTimeMillis() < deadline) {
                    for (var r : consumer.poll(Duration.ofMillis(300))) {
                        if (r.value() == null) continue;
                        var m = op.matcher(r.value());
                        if (m.find()) ops.add(m.group(1));
                    }
                    // Once the snapshot is in, change rows: those come from the WAL.
                    if (!changed && ops.size() >= 3) {
                        try (var db = DriverManager.getConnection(url, "postgres", "")) {
                            var st = db.createStatement();
                            st.execute("INSERT INTO " + table + " VALUES (4, 'd'), (5, 'e')");
                            st.execute("UPDATE " + table + " SET name = 'z' WHERE id = 1");
                        }
                        changed = true;
                    }
                }
            }
            if (!ops.equals(List.of("r", "r", "r", "c", "c", "u"))) {
                String status;
                try {
                    status = http("GET", base + "/connectors/pg/status", null);
                } catch (Throwable e) {
                    status = String.valueOf(e);
                }
                throw new AssertionError("change events " + ops + "; connector status: "
                        + status.substring(0, Math.min(1500, status.length())));
            }
            http("DELETE", base + "/connectors/pg", null);
        } finally {
            connect.stop();
            try (var db = DriverManager.getConnection(url, "postgres", "")) {
                db.createStatement().execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
                        + " WHERE slot_name = '" + table + "' AND NOT active");
            } catch (Exception ignored) {
            }
        }
    }
}
