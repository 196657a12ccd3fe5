package compat;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.*;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;

import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.*;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.common.utils.internals.Exit;

/**
 * Every Java compatibility case, run against one broker: {@code Compat <bootstrap> [case...]}.
 * Prints one line per case ("PASS name" / "FAIL name: why") and a closing
 * "N passed, N failed" line; exits 1 when a case failed. The same program runs against Apache
 * Kafka (the positive control) and Icestream.
 */
public final class Compat {
    static String bootstrap;
    static final String RUN = Long.toString(System.currentTimeMillis() % 1_000_000_000L, 36);

    /** Kafka 4's topic configs (TopicConfig / LogConfig), each with a valid non-default value. */
    static final Map<String, String> KAFKA_TOPIC_CONFIGS = new TreeMap<>(Map.ofEntries(
            Map.entry("cleanup.policy", "compact,delete"),
            Map.entry("compression.type", "zstd"),
            Map.entry("compression.gzip.level", "5"),
            Map.entry("compression.lz4.level", "10"),
            Map.entry("compression.zstd.level", "7"),
            Map.entry("delete.retention.ms", "3600000"),
            Map.entry("file.delete.delay.ms", "30000"),
            Map.entry("flush.messages", "1000"),
            Map.entry("flush.ms", "500"),
            Map.entry("follower.replication.throttled.replicas", "*"),
            Map.entry("index.interval.bytes", "8192"),
            Map.entry("leader.replication.throttled.replicas", "*"),
            Map.entry("local.retention.bytes", "-2"),
            Map.entry("local.retention.ms", "-2"),
            Map.entry("max.compaction.lag.ms", "86400000"),
            Map.entry("max.message.bytes", "2097152"),
            Map.entry("message.timestamp.after.max.ms", "7200000"),
            Map.entry("message.timestamp.before.max.ms", "86400000000"),
            Map.entry("message.timestamp.type", "LogAppendTime"),
            Map.entry("min.cleanable.dirty.ratio", "0.25"),
            Map.entry("min.compaction.lag.ms", "1000"),
            Map.entry("min.insync.replicas", "1"),
            Map.entry("preallocate", "true"),
            Map.entry("remote.log.copy.disable", "false"),
            Map.entry("remote.log.delete.on.disable", "false"),
            Map.entry("remote.storage.enable", "false"),
            Map.entry("retention.bytes", "1073741824"),
            Map.entry("retention.ms", "86400000"),
            Map.entry("segment.bytes", "16777216"),
            Map.entry("segment.index.bytes", "1048576"),
            Map.entry("segment.jitter.ms", "1000"),
            Map.entry("segment.ms", "3600000"),
            Map.entry("unclean.leader.election.enable", "false"),
            Map.entry("errors.deadletterqueue.group.enable", "true"),
            Map.entry("max.decompressed.message.bytes", "10485760"),
            Map.entry("remote.copy.lag.bytes", "1048576"),
            Map.entry("remote.copy.lag.ms", "1000")));

    interface Case {
        void run() throws Exception;
    }

    public static void main(String[] args) throws Exception {
        bootstrap = args[0];
        Set<String> only = new HashSet<>(Arrays.asList(args).subList(1, args.length));
        Exit.setExitProcedure((code, msg) -> {
            throw new ExitCalled(code, msg);
        });
        LinkedHashMap<String, Case> cases = new LinkedHashMap<>();
        for (String codec : List.of("none", "gzip", "snappy", "lz4", "zstd")) {
            cases.put("producer_idempotent_" + codec, () -> idempotentProducer(codec));
        }
        cases.put("consumer_group_classic", () -> consumerGroup("classic"));
        cases.put("consumer_group_consumer_protocol", () -> consumerGroup("consumer"));
        cases.put("admin_topics", Compat::adminTopics);
        cases.put("admin_every_kafka_topic_config", Compat::adminEveryTopicConfig);
        cases.put("admin_configs", Compat::adminConfigs);
        cases.put("admin_groups_and_offsets", Compat::adminGroups);
        cases.put("admin_list_offsets", Compat::adminListOffsets);
        cases.put("admin_delete_records", Compat::adminDeleteRecords);
        cases.put("admin_describe_cluster", Compat::adminCluster);
        cases.put("admin_describe_log_dirs", Compat::adminLogDirs);
        cases.put("admin_elect_leaders", Compat::adminElectLeaders);
        cases.put("tool_kafka_topics", Compat::toolTopics);
        cases.put("tool_kafka_configs", Compat::toolConfigs);
        cases.put("tool_kafka_configs_brokers", Compat::toolBrokerConfigs);
        cases.put("tool_kafka_consumer_groups", Compat::toolConsumerGroups);
        cases.put("tool_kafka_producer_perf_test", Compat::toolProducerPerf);
        cases.put("tool_kafka_consumer_perf_test", Compat::toolConsumerPerf);
        cases.put("connect_distributed_file_source_and_sink", Compat::connectDistributed);
        int passed = 0, failed = 0;
        for (var e : cases.entrySet()) {
            if (!only.isEmpty() && !only.contains(e.getKey())) continue;
            long t0 = System.nanoTime();
            try {
                e.getValue().run();
                passed++;
                System.out.printf("PASS %s (%d ms)%n", e.getKey(), (System.nanoTime() - t0) / 1_000_000);
            } catch (Throwable t) {
                failed++;
                String why = String.valueOf(t).replace('\n', ' ');
                System.out.printf("FAIL %s: %s%n", e.getKey(), why);
                t.printStackTrace(System.err);
            }
            System.out.flush();
        }
        System.out.printf("compat-java: %d passed, %d failed%n", passed, failed);
        System.out.flush();
        Runtime.getRuntime().halt(failed == 0 ? 0 : 1);
    }

    // ------------------------------------------------------------------ helpers

    static final class ExitCalled extends RuntimeException {
        final int code;

        ExitCalled(int code, String msg) {
            super("exit " + code + (msg == null ? "" : ": " + msg));
            this.code = code;
        }
    }

    static void check(boolean ok, String what) {
        if (!ok) throw new AssertionError(what);
    }

    static String topic(String prefix) {
        return prefix + "-" + RUN + "-" + UUID.randomUUID().toString().substring(0, 6);
    }

    static Admin admin() {
        return Admin.create(Map.of(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap,
                AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 60000));
    }

    static void createTopic(Admin a, String name, int partitions, Map<String, String> configs) throws Exception {
        a.createTopics(List.of(new NewTopic(name, partitions, (short) 1).configs(configs))).all().get(30, TimeUnit.SECONDS);
        // Wait until every partition has a leader.
        long deadline = System.currentTimeMillis() + 30000;
        while (true) {
            try {
                TopicDescription d = a.describeTopics(List.of(name)).allTopicNames().get(10, TimeUnit.SECONDS).get(name);
                if (d.partitions().size() == partitions && d.partitions().stream().allMatch(p -> p.leader() != null)) return;
            } catch (Exception e) {
                if (System.currentTimeMillis() > deadline) throw e;
            }
            check(System.currentTimeMillis() < deadline, "topic " + name + " has no leaders");
            Thread.sleep(100);
        }
    }

    static KafkaProducer<String, String> producer(Map<String, Object> extra) {
        Map<String, Object> c = new HashMap<>();
        c.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        c.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
        c.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
        c.put(ProducerConfig.ACKS_CONFIG, "all");
        c.putAll(extra);
        return new KafkaProducer<>(c);
    }

    static KafkaConsumer<String, String> consumer(Map<String, Object> extra) {
        Map<String, Object> c = new HashMap<>();
        c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        c.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class);
        c.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class);
        c.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        c.putAll(extra);
        return new KafkaConsumer<>(c);
    }

    static void produce(String topic, int n, Map<String, Object> extra) throws Exception {
        try (var p = producer(extra)) {
            List<java.util.concurrent.Future<RecordMetadata>> fs = new ArrayList<>();
            for (int i = 0; i < n; i++) fs.add(p.send(new ProducerRecord<>(topic, "k" + i, "v" + i)));
            for (var f : fs) f.get(60, TimeUnit.SECONDS);
        }
    }

    /** Reads partition 0..n-1 of a topic from the start until `count` records arrived. */
    static List<ConsumerRecord<String, String>> readAll(String topic, int partitions, int count) {
        try (var c = consumer(Map.of())) {
            List<TopicPartition> tps = new ArrayList<>();
            for (int i = 0; i < partitions; i++) tps.add(new TopicPartition(topic, i));
            c.assign(tps);
            c.seekToBeginning(tps);
            List<ConsumerRecord<String, String>> out = new ArrayList<>();
            long deadline = System.currentTimeMillis() + 60000;
            while (out.size() < count && System.currentTimeMillis() < deadline) {
                for (var r : c.poll(Duration.ofMillis(200))) out.add(r);
            }
            check(out.size() == count, "read " + out.size() + " of " + count + " records");
            return out;
        }
    }

    /** Runs a Kafka command-line tool's main class in this JVM; returns its standard output. */
    static String tool(String mainClass, String... args) throws Exception {
        PrintStream saved = System.out;
        ByteArrayOutputStream buf = new ByteArrayOutputStream();
        int code = 0;
        System.setOut(new PrintStream(buf, true, StandardCharsets.UTF_8));
        try {
            // TopicCommand's main turns any exception, including our exit hook's, into exit 1;
            // its execute() is the same without that.
            Class<?> c = Class.forName(mainClass);
            java.lang.reflect.Method m;
            try {
                m = c.getDeclaredMethod("execute", String[].class);
            } catch (NoSuchMethodException e) {
                m = c.getMethod("main", String[].class);
            }
            m.setAccessible(true);
            m.invoke(null, (Object) args);
        } catch (java.lang.reflect.InvocationTargetException e) {
            if (e.getCause() instanceof ExitCalled x) code = x.code;
            else throw new AssertionError(mainClass + " threw " + e.getCause(), e.getCause());
        } finally {
            System.out.flush();
            System.setOut(saved);
        }
        String out = buf.toString(StandardCharsets.UTF_8);
        check(code == 0, mainClass + " " + String.join(" ", args) + " exited " + code + "; output: " + out);
        return out;
    }

    // ------------------------------------------------------------------ producer and consumer

    static void idempotentProducer(String codec) throws Exception {
        String t = topic("idem-" + codec);
        try (var a = admin()) {
            createTopic(a, t, 2, Map.of());
        }
        produce(t, 500, Map.of(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true,
                ProducerConfig.COMPRESSION_TYPE_CONFIG, codec, ProducerConfig.LINGER_MS_CONFIG, 5));
        var recs = readAll(t, 2, 500);
        Set<String> values = recs.stream().map(ConsumerRecord::value).collect(Collectors.toSet());
        check(values.size() == 500, "distinct values: " + values.size());
        // Per key, in order, once: offsets per partition are dense.
        Map<Integer, List<Long>> offs = new TreeMap<>();
        for (var r : recs) offs.computeIfAbsent(r.partition(), k -> new ArrayList<>()).add(r.offset());
        for (var e : offs.entrySet()) {
            for (int i = 0; i < e.getValue().size(); i++)
                check(e.getValue().get(i) == i, "partition " + e.getKey() + " offsets " + e.getValue().subList(0, Math.min(10, e.getValue().size())));
        }
    }

    static void consumerGroup(String protocol) throws Exception {
        String t = topic("grp-" + protocol);
        String g = "g-" + protocol + "-" + RUN;
        try (var a = admin()) {
            createTopic(a, t, 3, Map.of());
            produce(t, 300, Map.of());
            Set<String> got = new HashSet<>();
            try (var c = consumer(Map.of(ConsumerConfig.GROUP_ID_CONFIG, g,
                    ConsumerConfig.GROUP_PROTOCOL_CONFIG, protocol,
                    ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false))) {
                c.subscribe(List.of(t));
                long deadline = System.currentTimeMillis() + 60000;
                while (got.size() < 300 && System.currentTimeMillis() < deadline) {
                    for (var r : c.poll(Duration.ofMillis(200))) got.add(r.value());
                }
                check(got.size() == 300, "consumed " + got.size() + " of 300");
                c.commitSync();
                check(c.assignment().size() == 3, "assignment " + c.assignment());
                var desc = a.describeConsumerGroups(List.of(g)).all().get(30, TimeUnit.SECONDS).get(g);
                check(desc.members().size() == 1, "members " + desc.members());
                check(desc.type() == (protocol.equals("classic") ? GroupType.CLASSIC : GroupType.CONSUMER),
                        "group type " + desc.type());
            }
            var committed = a.listConsumerGroupOffsets(g).partitionsToOffsetAndMetadata().get(30, TimeUnit.SECONDS);
            long sum = committed.values().stream().mapToLong(OffsetAndMetadata::offset).sum();
            check(sum == 300, "committed offsets " + committed);
        }
    }

    // ------------------------------------------------------------------ admin

    static void adminTopics() throws Exception {
        String t = topic("adm");
        try (var a = admin()) {
            createTopic(a, t, 2, Map.of("retention.ms", "123456"));
            check(a.listTopics().names().get().contains(t), "listTopics misses " + t);
            var d = a.describeTopics(List.of(t)).allTopicNames().get().get(t);
            check(d.partitions().size() == 2 && d.topicId() != null && !d.isInternal(), "describe " + d);
            // Already exists.
            try {
                a.createTopics(List.of(new NewTopic(t, 1, (short) 1))).all().get();
                throw new AssertionError("duplicate create succeeded");
            } catch (java.util.concurrent.ExecutionException e) {
                check(e.getCause() instanceof org.apache.kafka.common.errors.TopicExistsException, "duplicate: " + e.getCause());
            }
            a.createPartitions(Map.of(t, NewPartitions.increaseTo(4))).all().get();
            long deadline = System.currentTimeMillis() + 30000;
            while (a.describeTopics(List.of(t)).allTopicNames().get().get(t).partitions().size() != 4) {
                check(System.currentTimeMillis() < deadline, "partitions not 4");
                Thread.sleep(100);
            }
            a.deleteTopics(List.of(t)).all().get();
            deadline = System.currentTimeMillis() + 30000;
            while (a.listTopics().names().get().contains(t)) {
                check(System.currentTimeMillis() < deadline, "topic not deleted");
                Thread.sleep(100);
            }
        }
    }

    static void adminEveryTopicConfig() throws Exception {
        String t = topic("allcfg");
        try (var a = admin()) {
            createTopic(a, t, 1, KAFKA_TOPIC_CONFIGS);
            var res = new ConfigResource(ConfigResource.Type.TOPIC, t);
            Config cfg = a.describeConfigs(List.of(res)).all().get().get(res);
            List<String> wrong = new ArrayList<>();
            for (var e : KAFKA_TOPIC_CONFIGS.entrySet()) {
                ConfigEntry c = cfg.get(e.getKey());
                if (c == null || !e.getValue().equals(c.value()) || c.source() != ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG)
                    wrong.add(e.getKey() + "=" + (c == null ? "(absent)" : c.value() + " " + c.source()));
            }
            check(wrong.isEmpty(), "described differently: " + wrong);
            List<String> extra = cfg.entries().stream().map(ConfigEntry::name)
                    .filter(n -> !KAFKA_TOPIC_CONFIGS.containsKey(n)).sorted().toList();
            System.out.println("INFO admin_every_kafka_topic_config: also described: " + extra);
            // An unknown name is refused.
            String bad = topic("badcfg");
            try {
                a.createTopics(List.of(new NewTopic(bad, 1, (short) 1).configs(Map.of("no.such.config", "1")))).all().get();
                throw new AssertionError("unknown config accepted");
            } catch (java.util.concurrent.ExecutionException e) {
                check(e.getCause() instanceof org.apache.kafka.common.errors.InvalidConfigurationException, "unknown config: " + e.getCause());
            }
        }
    }

    static void adminConfigs() throws Exception {
        String t = topic("cfg");
        try (var a = admin()) {
            createTopic(a, t, 1, Map.of());
            var res = new ConfigResource(ConfigResource.Type.TOPIC, t);
            a.incrementalAlterConfigs(Map.of(res, List.of(
                    new AlterConfigOp(new ConfigEntry("retention.ms", "100000"), AlterConfigOp.OpType.SET),
                    new AlterConfigOp(new ConfigEntry("min.cleanable.dirty.ratio", "0.1"), AlterConfigOp.OpType.SET)))).all().get();
            Config c = a.describeConfigs(List.of(res)).all().get().get(res);
            check("100000".equals(c.get("retention.ms").value()), "retention.ms " + c.get("retention.ms"));
            check("0.1".equals(c.get("min.cleanable.dirty.ratio").value()), "ratio " + c.get("min.cleanable.dirty.ratio"));
            a.incrementalAlterConfigs(Map.of(res, List.of(
                    new AlterConfigOp(new ConfigEntry("retention.ms", ""), AlterConfigOp.OpType.DELETE)))).all().get();
            c = a.describeConfigs(List.of(res)).all().get().get(res);
            check(c.get("retention.ms").source() == ConfigEntry.ConfigSource.DEFAULT_CONFIG
                    || c.get("retention.ms").source() == ConfigEntry.ConfigSource.STATIC_BROKER_CONFIG, "after delete " + c.get("retention.ms"));
            String node = a.describeCluster().nodes().get().iterator().next().idString();
            var br = new ConfigResource(ConfigResource.Type.BROKER, node);
            Config bc = a.describeConfigs(List.of(br)).all().get().get(br);
            check(bc.get("log.retention.ms") != null || bc.get("log.retention.hours") != null, "broker configs lack log retention");
        }
    }

    static void adminGroups() throws Exception {
        String t = topic("offs");
        String g = "g-adm-" + RUN;
        try (var a = admin()) {
            createTopic(a, t, 2, Map.of());
            produce(t, 100, Map.of());
            var tp0 = new TopicPartition(t, 0);
            var tp1 = new TopicPartition(t, 1);
            a.alterConsumerGroupOffsets(g, Map.of(tp0, new OffsetAndMetadata(3), tp1, new OffsetAndMetadata(4))).all().get();
            var offs = a.listConsumerGroupOffsets(g).partitionsToOffsetAndMetadata().get();
            check(offs.get(tp0).offset() == 3 && offs.get(tp1).offset() == 4, "offsets " + offs);
            var listed = a.listGroups().all().get().stream().map(GroupListing::groupId).toList();
            check(listed.contains(g), "listGroups misses " + g + ": " + listed);
            var desc = a.describeConsumerGroups(List.of(g)).all().get().get(g);
            check(desc.groupState() == GroupState.EMPTY, "state " + desc.groupState());
            a.deleteConsumerGroupOffsets(g, Set.of(tp1)).all().get();
            offs = a.listConsumerGroupOffsets(g).partitionsToOffsetAndMetadata().get();
            check(offs.containsKey(tp0) && !offs.containsKey(tp1), "after offset delete " + offs);
            a.deleteConsumerGroups(List.of(g)).all().get();
            listed = a.listGroups().all().get().stream().map(GroupListing::groupId).toList();
            check(!listed.contains(g), "group not deleted");
        }
    }

    static void adminListOffsets() throws Exception {
        String t = topic("lo");
        try (var a = admin()) {
            createTopic(a, t, 1, Map.of());
            long t0 = System.currentTimeMillis() - 10000;
            try (var p = producer(Map.of())) {
                for (int i = 0; i < 10; i++) p.send(new ProducerRecord<>(t, 0, t0 + i * 1000, "k", "v" + i)).get();
            }
            var tp = new TopicPartition(t, 0);
            check(a.listOffsets(Map.of(tp, OffsetSpec.earliest())).all().get().get(tp).offset() == 0, "earliest");
            check(a.listOffsets(Map.of(tp, OffsetSpec.latest())).all().get().get(tp).offset() == 10, "latest");
            var mx = a.listOffsets(Map.of(tp, OffsetSpec.maxTimestamp())).all().get().get(tp);
            check(mx.offset() == 9 && mx.timestamp() == t0 + 9000, "max timestamp " + mx);
            var ft = a.listOffsets(Map.of(tp, OffsetSpec.forTimestamp(t0 + 4500))).all().get().get(tp);
            check(ft.offset() == 5, "for timestamp " + ft);
        }
    }

    static void adminDeleteRecords() throws Exception {
        String t = topic("dr");
        try (var a = admin()) {
            createTopic(a, t, 1, Map.of());
            produce(t, 100, Map.of());
            var tp = new TopicPartition(t, 0);
            var lw = a.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(50))).all().get();
            var low = a.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(50))).lowWatermarks().get(tp).get();
            check(low.lowWatermark() == 50, "low watermark " + low.lowWatermark());
            check(a.listOffsets(Map.of(tp, OffsetSpec.earliest())).all().get().get(tp).offset() == 50, "earliest after delete");
            check(lw == null, "all() is Void");
        }
    }

    static void adminCluster() throws Exception {
        try (var a = admin()) {
            var d = a.describeCluster();
            check(d.clusterId().get() != null && !d.clusterId().get().isEmpty(), "cluster id");
            check(!d.nodes().get().isEmpty(), "nodes");
            check(d.controller().get() != null, "controller");
            var features = a.describeFeatures().featureMetadata().get();
            check(features != null && !features.supportedFeatures().isEmpty(), "supported features: " + features);
        }
    }

    static void adminLogDirs() throws Exception {
        String t = topic("ld");
        try (var a = admin()) {
            createTopic(a, t, 1, Map.of());
            produce(t, 10, Map.of());
            int node = a.describeCluster().nodes().get().iterator().next().id();
            var dirs = a.describeLogDirs(List.of(node)).allDescriptions().get().get(node);
            check(dirs != null && !dirs.isEmpty(), "no log dirs");
            boolean found = false;
            for (var d : dirs.values()) {
                check(d.error() == null, "log dir error " + d.error());
                var info = d.replicaInfos().get(new TopicPartition(t, 0));
                if (info != null) {
                    found = true;
                    check(info.size() > 0, "replica size " + info.size());
                }
            }
            check(found, "partition not in any log dir");
        }
    }

    static void adminElectLeaders() throws Exception {
        String t = topic("el");
        try (var a = admin()) {
            createTopic(a, t, 1, Map.of());
            var tp = new TopicPartition(t, 0);
            var r = a.electLeaders(ElectionType.PREFERRED, Set.of(tp)).partitions().get();
            var err = r.get(tp);
            // One replica, already the leader: nothing to do.
            check(err.isPresent() && err.get() instanceof org.apache.kafka.common.errors.ElectionNotNeededException,
                    "preferred election: " + r);
        }
    }

    // ------------------------------------------------------------------ command-line tools

    static void toolTopics() throws Exception {
        String t = topic("cli");
        tool("org.apache.kafka.tools.TopicCommand", "--bootstrap-server", bootstrap, "--create", "--topic", t,
                "--partitions", "2", "--replication-factor", "1", "--config", "retention.ms=3600000");
        String list = tool("org.apache.kafka.tools.TopicCommand", "--bootstrap-server", bootstrap, "--list");
        check(list.lines().anyMatch(t::equals), "--list: " + list);
        tool("org.apache.kafka.tools.TopicCommand", "--bootstrap-server", bootstrap, "--alter", "--topic", t, "--partitions", "3");
        long deadline = System.currentTimeMillis() + 30000;
        String d;
        while (true) {
            d = tool("org.apache.kafka.tools.TopicCommand", "--bootstrap-server", bootstrap, "--describe", "--topic", t);
            if (d.contains("PartitionCount: 3")) break;
            check(System.currentTimeMillis() < deadline, "--describe: " + d);
            Thread.sleep(200);
        }
        check(d.contains("retention.ms=3600000") && d.contains("Partition: 2"), "--describe: " + d);
        tool("org.apache.kafka.tools.TopicCommand", "--bootstrap-server", bootstrap, "--delete", "--topic", t);
    }

    static void toolConfigs() throws Exception {
        String t = topic("clicfg");
        try (var a = admin()) {
            createTopic(a, t, 1, Map.of());
        }
        tool("org.apache.kafka.tools.ConfigCommand", "--bootstrap-server", bootstrap, "--alter", "--entity-type", "topics",
                "--entity-name", t, "--add-config", "retention.ms=7200000,min.cleanable.dirty.ratio=0.2,segment.jitter.ms=5");
        String d = tool("org.apache.kafka.tools.ConfigCommand", "--bootstrap-server", bootstrap, "--describe", "--entity-type", "topics", "--entity-name", t);
        check(d.contains("retention.ms=7200000") && d.contains("min.cleanable.dirty.ratio=0.2") && d.contains("segment.jitter.ms=5"), "--describe: " + d);
        tool("org.apache.kafka.tools.ConfigCommand", "--bootstrap-server", bootstrap, "--alter", "--entity-type", "topics",
                "--entity-name", t, "--delete-config", "retention.ms");
        d = tool("org.apache.kafka.tools.ConfigCommand", "--bootstrap-server", bootstrap, "--describe", "--entity-type", "topics", "--entity-name", t);
        check(!d.contains("retention.ms=7200000"), "after --delete-config: " + d);
        String b = tool("org.apache.kafka.tools.ConfigCommand", "--bootstrap-server", bootstrap, "--describe", "--entity-type", "brokers", "--all");
        check(b.contains("log.retention"), "brokers --describe --all: " + b.substring(0, Math.min(500, b.length())));
    }

    /** Dynamic broker configs with kafka-configs: for every broker (--entity-default) and for
     *  one, seen through a topic without an override, then deleted again. */
    static void toolBrokerConfigs() throws Exception {
        String cmd = "org.apache.kafka.tools.ConfigCommand";
        String t = topic("brokercfg");
        String node;
        try (var a = admin()) {
            createTopic(a, t, 1, Map.of());
            node = a.describeCluster().nodes().get().iterator().next().idString();
        }
        tool(cmd, "--bootstrap-server", bootstrap, "--alter", "--entity-type", "brokers", "--entity-default",
                "--add-config", "log.retention.ms=86400000");
        // Kafka applies a dynamic config from its metadata log a moment after the alter.
        awaitDescribe("log.retention.ms=86400000", true, "--entity-type", "brokers", "--entity-default");
        awaitTopicRetention(t, "86400000", ConfigEntry.ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG);
        tool(cmd, "--bootstrap-server", bootstrap, "--alter", "--entity-type", "brokers", "--entity-name", node,
                "--add-config", "log.retention.ms=172800000");
        awaitDescribe("log.retention.ms=172800000", true, "--entity-type", "brokers", "--entity-name", node);
        awaitTopicRetention(t, "172800000", ConfigEntry.ConfigSource.DYNAMIC_BROKER_CONFIG);
        tool(cmd, "--bootstrap-server", bootstrap, "--alter", "--entity-type", "brokers", "--entity-name", node,
                "--delete-config", "log.retention.ms");
        tool(cmd, "--bootstrap-server", bootstrap, "--alter", "--entity-type", "brokers", "--entity-default",
                "--delete-config", "log.retention.ms");
        awaitDescribe("log.retention.ms=", false, "--entity-type", "brokers", "--entity-default");
        awaitTopicRetention(t, "604800000", null);
    }

    /** Runs kafka-configs --describe until its output lists `want` (or, `listed` false, no longer does). */
    static void awaitDescribe(String want, boolean listed, String... entity) throws Exception {
        var args = new java.util.ArrayList<>(List.of("--bootstrap-server", bootstrap, "--describe"));
        args.addAll(List.of(entity));
        long deadline = System.currentTimeMillis() + 15000;
        while (true) {
            String d = tool("org.apache.kafka.tools.ConfigCommand", args.toArray(new String[0]));
            if (d.contains(want) == listed) return;
            check(System.currentTimeMillis() < deadline, String.join(" ", entity) + " --describe: " + d);
            Thread.sleep(200);
        }
    }

    /** Waits until the topic's retention.ms is `value` from `source` (null: a static or default one). */
    static void awaitTopicRetention(String t, String value, ConfigEntry.ConfigSource source) throws Exception {
        var res = new ConfigResource(ConfigResource.Type.TOPIC, t);
        long deadline = System.currentTimeMillis() + 15000;
        try (var a = admin()) {
            while (true) {
                ConfigEntry e = a.describeConfigs(List.of(res)).all().get().get(res).get("retention.ms");
                boolean fromIt = source == null
                        ? e.source() == ConfigEntry.ConfigSource.DEFAULT_CONFIG || e.source() == ConfigEntry.ConfigSource.STATIC_BROKER_CONFIG
                        : e.source() == source;
                if (value.equals(e.value()) && fromIt) return;
                check(System.currentTimeMillis() < deadline, "topic retention.ms " + e + ", want " + value + " from " + source);
                Thread.sleep(200);
            }
        }
    }

    static void toolConsumerGroups() throws Exception {
        String t = topic("cgc");
        String g = "g-cli-" + RUN;
        try (var a = admin()) {
            createTopic(a, t, 2, Map.of());
        }
        produce(t, 50, Map.of());
        try (var c = consumer(Map.of(ConsumerConfig.GROUP_ID_CONFIG, g))) {
            c.subscribe(List.of(t));
            int n = 0;
            long deadline = System.currentTimeMillis() + 60000;
            while (n < 50 && System.currentTimeMillis() < deadline) n += c.poll(Duration.ofMillis(200)).count();
            check(n == 50, "consumed " + n);
            c.commitSync();
        }
        String cmd = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand";
        String list = tool(cmd, "--bootstrap-server", bootstrap, "--list");
        check(list.lines().anyMatch(g::equals), "--list: " + list);
        String d = tool(cmd, "--bootstrap-server", bootstrap, "--describe", "--group", g);
        check(d.contains(t) && d.lines().filter(l -> l.contains(t)).count() == 2, "--describe: " + d);
        String r = tool(cmd, "--bootstrap-server", bootstrap, "--reset-offsets", "--group", g, "--topic", t, "--to-earliest", "--execute");
        check(r.lines().filter(l -> l.contains(t)).allMatch(l -> l.trim().endsWith(" 0")), "--reset-offsets: " + r);
        String del = tool(cmd, "--bootstrap-server", bootstrap, "--delete", "--group", g);
        check(del.contains("successful"), "--delete: " + del);
    }

    static String perfTopic;

    static void toolProducerPerf() throws Exception {
        perfTopic = topic("perf");
        try (var a = admin()) {
            createTopic(a, perfTopic, 1, Map.of());
        }
        String out = tool("org.apache.kafka.tools.ProducerPerformance", "--topic", perfTopic, "--num-records", "20000",
                "--record-size", "100", "--throughput", "-1", "--producer-props", "bootstrap.servers=" + bootstrap, "acks=all");
        check(out.contains("20000 records sent"), "output: " + out);
    }

    static void toolConsumerPerf() throws Exception {
        if (perfTopic == null) toolProducerPerf();
        String out = tool("org.apache.kafka.tools.ConsumerPerformance", "--bootstrap-server", bootstrap, "--topic", perfTopic,
                "--messages", "20000", "--timeout", "60000");
        // The data line: start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, ...
        String data = out.lines().filter(l -> !l.startsWith("start.time") && l.contains(",")).findFirst().orElse("");
        String[] cols = data.split(",\\s*");
        check(cols.length > 4 && Long.parseLong(cols[4].trim()) == 20000, "output: " + out);
    }

    // ------------------------------------------------------------------ Kafka Connect

    static int freePort() throws java.io.IOException {
        try (var s = new java.net.ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
            return s.getLocalPort();
        }
    }

    static String http(String method, String url, String body) throws Exception {
        var client = java.net.http.HttpClient.newHttpClient();
        var b = java.net.http.HttpRequest.newBuilder(java.net.URI.create(url)).timeout(Duration.ofSeconds(30))
                .header("Content-Type", "application/json");
        b = body == null ? b.method(method, java.net.http.HttpRequest.BodyPublishers.noBody())
                : b.method(method, java.net.http.HttpRequest.BodyPublishers.ofString(body));
        var r = client.send(b.build(), java.net.http.HttpResponse.BodyHandlers.ofString());
        check(r.statusCode() < 300, method + " " + url + " -> " + r.statusCode() + " " + r.body());
        return r.body();
    }

    /**
     * Kafka Connect in distributed mode, its config, offset and status topics on the broker
     * under test (compacted, as Connect requires and checks), with a file source connector
     * feeding a topic and a file sink connector reading it back.
     */
    static void connectDistributed() throws Exception {
        java.nio.file.Path dir = java.nio.file.Files.createTempDirectory("compat-connect");
        int port = freePort();
        String id = "connect-" + RUN;
        Map<String, String> props = new HashMap<>();
        props.put("bootstrap.servers", bootstrap);
        props.put("group.id", id);
        props.put("config.storage.topic", id + "-configs");
        props.put("offset.storage.topic", id + "-offsets");
        props.put("status.storage.topic", id + "-status");
        props.put("config.storage.replication.factor", "1");
        props.put("offset.storage.replication.factor", "1");
        props.put("status.storage.replication.factor", "1");
        props.put("offset.storage.partitions", "3");
        props.put("status.storage.partitions", "1");
        props.put("key.converter", "org.apache.kafka.connect.storage.StringConverter");
        props.put("value.converter", "org.apache.kafka.connect.storage.StringConverter");
        props.put("offset.flush.interval.ms", "500");
        props.put("listeners", "http://127.0.0.1:" + port);
        props.put("rest.advertised.host.name", "127.0.0.1");
        props.put("plugin.discovery", "only_scan");
        var connect = new org.apache.kafka.connect.cli.ConnectDistributed().startConnect(props);
        try {
            String base = "http://127.0.0.1:" + port;
            java.nio.file.Path in = dir.resolve("in.txt"), out = dir.resolve("out.txt");
            List<String> lines = new ArrayList<>();
            for (int i = 0; i < 100; i++) lines.add("line-" + i);
            java.nio.file.Files.write(in, lines);
            String topic = topic("connect-data");
            try (var a = admin()) {
                createTopic(a, topic, 1, Map.of());
            }
            // The REST API answers once the worker joined its group and read the config topic.
            long deadline = System.currentTimeMillis() + 90000;
            while (true) {
                try {
                    http("PUT", base + "/connectors/file-source/config", "{\"connector.class\":\"compat.LineFiles$Source\",\"tasks.max\":\"1\",\"file\":\"" + in + "\",\"topic\":\"" + topic + "\"}");
                    break;
                } catch (Throwable e) {
                    check(System.currentTimeMillis() < deadline, "Connect never accepted a connector: " + e);
                    Thread.sleep(500);
                }
            }
            http("PUT", base + "/connectors/file-sink/config", "{\"connector.class\":\"compat.LineFiles$Sink\",\"tasks.max\":\"1\",\"file\":\"" + out + "\",\"topics\":\"" + topic + "\"}");
            deadline = System.currentTimeMillis() + 90000;
            List<String> got = List.of();
            while (System.currentTimeMillis() < deadline) {
                got = java.nio.file.Files.exists(out) ? java.nio.file.Files.readAllLines(out) : List.of();
                if (got.size() >= lines.size()) break;
                Thread.sleep(300);
            }
            check(got.equals(lines), "sink file holds " + got.size() + " lines: " + got.subList(0, Math.min(5, got.size())));
            String status = http("GET", base + "/connectors/file-source/status", null);
            check(status.contains("\"state\":\"RUNNING\""), "source status " + status);
            // Connect stored the source's position in its offsets topic and its status in the
            // status topic: both are compacted topics on the broker under test.
            try (var a = admin()) {
                var res = new ConfigResource(ConfigResource.Type.TOPIC, id + "-offsets");
                var policy = a.describeConfigs(List.of(res)).all().get().get(res).get("cleanup.policy").value();
                check(policy.equals("compact"), "offsets topic cleanup.policy " + policy);
            }
            http("DELETE", base + "/connectors/file-source", null);
            http("DELETE", base + "/connectors/file-sink", null);
        } finally {
            connect.stop();
        }
    }
}
