package compat.streams;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.*;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;

import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.IsolationLevel;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.InvalidProducerEpochException;
import org.apache.kafka.common.errors.ProducerFencedException;
import org.apache.kafka.common.serialization.LongDeserializer;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.state.Stores;

/**
 * Transactions and exactly-once through real Java clients, every case in one JVM:
 * {@code StreamsEos <bootstrap> [case...]} (all cases when none is named).
 *
 * <p>kafka-clients cases: a transactional producer commits and aborts; read_committed sees only
 * committed records while read_uncommitted sees both; an open transaction holds the last stable
 * offset; a second producer with the same transactional.id fences the first; a
 * consume-transform-produce loop with {@code sendOffsetsToTransaction(offsets,
 * consumer.groupMetadata())}; KIP-447 fencing of transactional offset commits with a stale
 * generation or an unknown member.
 *
 * <p>{@code streams_wordcount_eos}: a Kafka Streams word count (lines to (word, count)
 * updates through a repartition topic and a state store with its changelog) with
 * processing.guarantee=exactly_once_v2 and no record cache, so every input word yields one
 * update: the committed output of a word must be exactly 1, 2, ..., n. System properties:
 * streams.input / streams.output (existing topics, holding the input; otherwise the case makes
 * its own topics and produces streams.lines lines), streams.expect.lines (input lines to wait
 * for before the app counts as done), streams.rf (replication factor of the topics it creates,
 * Streams' internal ones included; -1 = broker default), streams.app (application.id),
 * streams.timeout.s, streams.line.delay.ms (a pause per input line, so that a test can act on
 * the brokers while the app is still busy), streams.session.timeout.ms (how soon the group
 * drops a member that died).
 *
 * <p>Prints "PASS name (ms)" / "FAIL name: why" per case, "INFO ..." progress lines, and a
 * closing "streams-eos: N passed, M failed"; exits 1 when a case failed.
 */
public final class StreamsEos {
    static String bootstrap;
    static final String RUN = Long.toString(System.currentTimeMillis() % 1_000_000_000L, 36);
    /** How long a transactional call may block (initTransactions retries COORDINATOR_NOT_AVAILABLE). */
    static final int MAX_BLOCK_MS = Integer.getInteger("txn.max.block.ms", 30000);
    /** The first initTransactions failure: later transactional cases fail at once with it. */
    static volatile String initFailure;

    interface Case {
        void run() throws Exception;
    }

    public static void main(String[] args) throws Exception {
        // Client logs (slf4j-simple, to stderr) at WARN unless asked otherwise: Streams at INFO
        // is thousands of lines. Set before any Kafka class makes its logger.
        if (System.getProperty("org.slf4j.simpleLogger.defaultLogLevel") == null) {
            System.setProperty("org.slf4j.simpleLogger.defaultLogLevel", "warn");
        }
        System.setProperty("org.slf4j.simpleLogger.showDateTime", "true");
        // The producers' transaction coordinator discovery, producer ids and epochs, fatal errors.
        String txnLog = "org.slf4j.simpleLogger.log.org.apache.kafka.clients.producer.internals.TransactionManager";
        if (System.getProperty(txnLog) == null) System.setProperty(txnLog, "info");
        bootstrap = args[0];
        Set<String> only = new HashSet<>(Arrays.asList(args).subList(1, args.length));
        LinkedHashMap<String, Case> cases = new LinkedHashMap<>();
        cases.put("txn_commit_and_abort", StreamsEos::commitAndAbort);
        cases.put("txn_open_transaction_holds_lso", StreamsEos::openTransactionHoldsLso);
        cases.put("txn_zombie_fenced", StreamsEos::zombieFenced);
        cases.put("txn_consume_transform_produce", StreamsEos::consumeTransformProduce);
        cases.put("txn_offset_commit_kip447_fencing", StreamsEos::offsetCommitFencing);
        cases.put("streams_wordcount_eos", StreamsEos::streamsWordCount);
        for (String name : only) check(cases.containsKey(name), "unknown case " + name + "; cases: " + cases.keySet());
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
                System.out.printf("FAIL %s: %s%n", e.getKey(), describe(t));
                t.printStackTrace(System.err);
            }
            System.out.flush();
        }
        System.out.printf("streams-eos: %d passed, %d failed%n", passed, failed);
        System.out.flush();
        Runtime.getRuntime().halt(failed == 0 ? 0 : 1);
    }

    // ------------------------------------------------------------------ helpers

    /** An exception and its causes on one line: clients wrap the broker's error. */
    static String describe(Throwable t) {
        StringBuilder sb = new StringBuilder(String.valueOf(t));
        Set<Throwable> seen = new HashSet<>(Set.of(t));
        for (Throwable c = t.getCause(); c != null && seen.add(c); c = c.getCause()) sb.append(" <- ").append(c);
        return sb.toString().replace('\n', ' ');
    }

    static void check(boolean ok, String what) {
        if (!ok) throw new AssertionError(what);
    }

    static final long T0 = System.nanoTime();

    static void info(String msg) {
        System.out.printf("INFO [%.1fs] %s%n", (System.nanoTime() - T0) / 1e9, msg);
        System.out.flush();
    }

    static String topic(String prefix) {
        return prefix + "-" + RUN + "-" + UUID.randomUUID().toString().substring(0, 6);
    }

    static Admin admin() {
        return Admin.create(Map.of(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap,
                AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 60000));
    }

    static void createTopic(Admin a, String name, int partitions, int rf) throws Exception {
        Optional<Short> r = rf < 0 ? Optional.empty() : Optional.of((short) rf);
        a.createTopics(List.of(new NewTopic(name, Optional.of(partitions), r))).all().get(30, TimeUnit.SECONDS);
        long deadline = System.currentTimeMillis() + 30000;
        while (true) {
            try {
                TopicDescription d = a.describeTopics(List.of(name)).allTopicNames().get(10, TimeUnit.SECONDS).get(name);
                if (d.partitions().size() == partitions && d.partitions().stream().allMatch(p -> p.leader() != null)) return;
            } catch (ExecutionException e) {
                if (System.currentTimeMillis() > deadline) throw e;
            }
            check(System.currentTimeMillis() < deadline, "topic " + name + " has no leaders");
            Thread.sleep(100);
        }
    }

    static List<TopicPartition> partitions(Admin a, String topic) throws Exception {
        TopicDescription d = a.describeTopics(List.of(topic)).allTopicNames().get(30, TimeUnit.SECONDS).get(topic);
        List<TopicPartition> out = new ArrayList<>();
        for (var p : d.partitions()) out.add(new TopicPartition(topic, p.partition()));
        out.sort(Comparator.comparingInt(TopicPartition::partition));
        return out;
    }

    static KafkaProducer<String, String> producer(Map<String, Object> extra) {
        Map<String, Object> c = new HashMap<>();
        c.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        c.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
        c.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
        c.put(ProducerConfig.ACKS_CONFIG, "all");
        c.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true);
        c.putAll(extra);
        return new KafkaProducer<>(c);
    }

    /** A transactional producer, initialised (initTransactions) before it is returned. */
    static KafkaProducer<String, String> txProducer(String txnId) {
        if (initFailure != null) throw new AssertionError("skipped: initTransactions failed earlier: " + initFailure);
        var p = producer(Map.of(ProducerConfig.TRANSACTIONAL_ID_CONFIG, txnId,
                ProducerConfig.MAX_BLOCK_MS_CONFIG, MAX_BLOCK_MS,
                ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, 60000));
        try {
            p.initTransactions();
        } catch (RuntimeException e) {
            initFailure = describe(e);
            p.close(Duration.ZERO);
            throw new AssertionError("initTransactions(" + txnId + "): " + initFailure, e);
        }
        return p;
    }

    static KafkaConsumer<String, String> consumer(IsolationLevel isolation, Map<String, Object> extra) {
        Map<String, Object> c = new HashMap<>();
        c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        c.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class);
        c.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class);
        c.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        c.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        c.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolation.toString().toLowerCase(Locale.ROOT));
        c.putAll(extra);
        return new KafkaConsumer<>(c);
    }

    /**
     * Every record of a topic from the start up to its end offsets as this isolation level sees
     * them (the last stable offset for read_committed), read without a group; values per
     * partition in offset order.
     */
    static <V> Map<Integer, List<ConsumerRecord<String, V>>> readToEnd(KafkaConsumer<String, V> c, String topic) {
        List<TopicPartition> tps = new ArrayList<>();
        for (var p : c.partitionsFor(topic, Duration.ofSeconds(30))) tps.add(new TopicPartition(topic, p.partition()));
        c.assign(tps);
        c.seekToBeginning(tps);
        Map<TopicPartition, Long> end = c.endOffsets(tps, Duration.ofSeconds(30));
        Map<Integer, List<ConsumerRecord<String, V>>> out = new TreeMap<>();
        for (var tp : tps) out.put(tp.partition(), new ArrayList<>());
        long deadline = System.currentTimeMillis() + 60000;
        while (tps.stream().anyMatch(tp -> c.position(tp, Duration.ofSeconds(30)) < end.get(tp))) {
            check(System.currentTimeMillis() < deadline, "reading " + topic + " to " + end + " timed out");
            for (var r : c.poll(Duration.ofMillis(200))) out.get(r.partition()).add(r);
        }
        return out;
    }

    static Map<Integer, List<String>> values(Map<Integer, List<ConsumerRecord<String, String>>> recs) {
        Map<Integer, List<String>> out = new TreeMap<>();
        recs.forEach((p, rs) -> out.put(p, rs.stream().map(ConsumerRecord::value).toList()));
        return out;
    }

    static Map<Integer, List<String>> read(String topic, IsolationLevel isolation) {
        try (var c = consumer(isolation, Map.of())) {
            return values(readToEnd(c, topic));
        }
    }

    static List<String> all(Map<Integer, List<String>> byPartition) {
        List<String> out = new ArrayList<>();
        byPartition.values().forEach(out::addAll);
        return out;
    }

    /** The values sent in one transaction, "<prefix>-<i>", spread over the topic's partitions. */
    static void sendBatch(KafkaProducer<String, String> p, String topic, int partitions, String prefix, int n) throws Exception {
        List<java.util.concurrent.Future<RecordMetadata>> fs = new ArrayList<>();
        for (int i = 0; i < n; i++) fs.add(p.send(new ProducerRecord<>(topic, i % partitions, "k" + i, prefix + "-" + i)));
        p.flush();
        for (var f : fs) f.get(30, TimeUnit.SECONDS);
    }

    static List<String> expected(String prefix, int n) {
        List<String> out = new ArrayList<>();
        for (int i = 0; i < n; i++) out.add(prefix + "-" + i);
        return out;
    }

    static boolean isFenced(Throwable t) {
        for (Throwable c = t; c != null; c = c.getCause()) {
            if (c instanceof ProducerFencedException || c instanceof InvalidProducerEpochException) return true;
        }
        return false;
    }

    // ------------------------------------------------------------------ kafka-clients cases

    /**
     * Commit, abort, commit over two partitions; read_committed sees exactly the committed
     * records in order, read_uncommitted sees every record.
     */
    static void commitAndAbort() throws Exception {
        String t = topic("txn-ca");
        try (var a = admin()) {
            createTopic(a, t, 2, -1);
        }
        try (var p = txProducer("txn-ca-" + RUN)) {
            p.beginTransaction();
            sendBatch(p, t, 2, "commit1", 10);
            p.commitTransaction();
            p.beginTransaction();
            sendBatch(p, t, 2, "abort", 10);
            p.abortTransaction();
            p.beginTransaction();
            sendBatch(p, t, 2, "commit2", 10);
            p.commitTransaction();
        }
        List<String> committed = all(read(t, IsolationLevel.READ_COMMITTED));
        List<String> want = new ArrayList<>();
        for (int part = 0; part < 2; part++) {
            for (String prefix : List.of("commit1", "commit2")) {
                for (int i = part; i < 10; i += 2) want.add(prefix + "-" + i);
            }
        }
        check(committed.equals(want), "read_committed saw " + committed + ", want " + want);
        List<String> uncommitted = all(read(t, IsolationLevel.READ_UNCOMMITTED));
        List<String> wantAll = new ArrayList<>();
        for (int part = 0; part < 2; part++) {
            for (String prefix : List.of("commit1", "abort", "commit2")) {
                for (int i = part; i < 10; i += 2) wantAll.add(prefix + "-" + i);
            }
        }
        check(uncommitted.equals(wantAll), "read_uncommitted saw " + uncommitted + ", want " + wantAll);
    }

    /**
     * While a transaction is open its records are past the last stable offset: read_committed's
     * end offset stays below the high watermark and shows none of them until the commit.
     */
    static void openTransactionHoldsLso() throws Exception {
        String t = topic("txn-lso");
        try (var a = admin()) {
            createTopic(a, t, 1, -1);
        }
        TopicPartition tp = new TopicPartition(t, 0);
        try (var p = txProducer("txn-lso-" + RUN);
             var rc = consumer(IsolationLevel.READ_COMMITTED, Map.of());
             var ru = consumer(IsolationLevel.READ_UNCOMMITTED, Map.of())) {
            p.beginTransaction();
            sendBatch(p, t, 1, "first", 3);
            p.commitTransaction();
            p.beginTransaction();
            sendBatch(p, t, 1, "open", 5);
            long lso = rc.endOffsets(List.of(tp)).get(tp);
            long hw = ru.endOffsets(List.of(tp)).get(tp);
            // first-0..2 at 0..2, its marker at 3, open-0..4 at 4..8.
            check(lso == 4 && hw == 9, "with a transaction open: read_committed end " + lso + " (want 4), read_uncommitted end " + hw + " (want 9)");
            List<String> seen = values(readToEnd(rc, t)).get(0);
            check(seen.equals(expected("first", 3)), "read_committed during the transaction saw " + seen);
            p.commitTransaction();
            long deadline = System.currentTimeMillis() + 15000;
            // The markers are written after EndTxn is answered: the LSO moves soon after.
            while ((lso = rc.endOffsets(List.of(tp)).get(tp)) != 10) {
                check(System.currentTimeMillis() < deadline, "after the commit read_committed end " + lso + ", want 10");
                Thread.sleep(50);
            }
            List<String> after = values(readToEnd(rc, t)).get(0);
            List<String> want = new ArrayList<>(expected("first", 3));
            want.addAll(expected("open", 5));
            check(after.equals(want), "read_committed after the commit saw " + after);
        }
    }

    /**
     * A second producer with the same transactional.id aborts the first one's open transaction
     * and fences it: the first producer's commit fails, its records are never visible.
     */
    static void zombieFenced() throws Exception {
        String t = topic("txn-zombie");
        try (var a = admin()) {
            createTopic(a, t, 1, -1);
        }
        String id = "txn-zombie-" + RUN;
        var zombie = txProducer(id);
        try {
            zombie.beginTransaction();
            sendBatch(zombie, t, 1, "zombie", 4);
            try (var fresh = txProducer(id)) {
                try {
                    zombie.commitTransaction();
                    throw new AssertionError("the fenced producer's commit succeeded");
                } catch (KafkaException e) {
                    check(isFenced(e), "the fenced producer's commit failed with " + describe(e) + ", want ProducerFencedException");
                }
                fresh.beginTransaction();
                sendBatch(fresh, t, 1, "fresh", 3);
                fresh.commitTransaction();
            }
        } finally {
            zombie.close(Duration.ZERO);
        }
        List<String> seen = all(read(t, IsolationLevel.READ_COMMITTED));
        check(seen.equals(expected("fresh", 3)), "read_committed saw " + seen + ", want fresh-0..2 only");
        List<String> raw = all(read(t, IsolationLevel.READ_UNCOMMITTED));
        List<String> wantRaw = new ArrayList<>(expected("zombie", 4));
        wantRaw.addAll(expected("fresh", 3));
        check(raw.equals(wantRaw), "read_uncommitted saw " + raw + ", want " + wantRaw);
    }

    /**
     * The consume-transform-produce loop: each polled batch transformed into the output and its
     * offsets committed in the same transaction with sendOffsetsToTransaction(offsets,
     * consumer.groupMetadata()); the second batch is aborted and the consumer rewound to the
     * committed offsets (fetched require_stable). Every input record appears exactly once in
     * the committed output, in order per partition, and the group's committed offsets are the
     * input's end.
     */
    static void consumeTransformProduce() throws Exception {
        String in = topic("ctp-in"), out = topic("ctp-out"), group = "ctp-" + RUN;
        int n = 600;
        try (var a = admin()) {
            createTopic(a, in, 3, -1);
            createTopic(a, out, 3, -1);
        }
        try (var p = producer(Map.of())) {
            List<java.util.concurrent.Future<RecordMetadata>> fs = new ArrayList<>();
            for (int i = 0; i < n; i++) fs.add(p.send(new ProducerRecord<>(in, i % 3, "k" + i, "v" + i)));
            for (var f : fs) f.get(60, TimeUnit.SECONDS);
        }
        int iteration = 0, committedRecords = 0, abortedBatches = 0;
        try (var p = txProducer("ctp-" + RUN);
             var c = consumer(IsolationLevel.READ_COMMITTED, Map.of(ConsumerConfig.GROUP_ID_CONFIG, group,
                     ConsumerConfig.MAX_POLL_RECORDS_CONFIG, 50))) {
            c.subscribe(List.of(in));
            long deadline = System.currentTimeMillis() + 90000;
            while (committedRecords < n) {
                check(System.currentTimeMillis() < deadline, "processed " + committedRecords + " of " + n);
                ConsumerRecords<String, String> recs = c.poll(Duration.ofMillis(200));
                if (recs.isEmpty()) continue;
                p.beginTransaction();
                Map<TopicPartition, OffsetAndMetadata> next = new HashMap<>();
                for (var r : recs) {
                    p.send(new ProducerRecord<>(out, r.partition(), r.key(), r.value().toUpperCase(Locale.ROOT)));
                    next.put(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1));
                }
                p.sendOffsetsToTransaction(next, c.groupMetadata());
                if (iteration++ == 1) {
                    p.abortTransaction();
                    abortedBatches++;
                    // Back to what the group committed: the aborted offsets must not show.
                    Map<TopicPartition, OffsetAndMetadata> committed = c.committed(c.assignment(), Duration.ofSeconds(30));
                    for (var tp : c.assignment()) {
                        OffsetAndMetadata o = committed.get(tp);
                        if (o == null) c.seekToBeginning(List.of(tp));
                        else c.seek(tp, o.offset());
                    }
                } else {
                    p.commitTransaction();
                    committedRecords += recs.count();
                }
            }
        }
        check(abortedBatches == 1, "aborted " + abortedBatches + " batches");
        Map<Integer, List<String>> got = read(out, IsolationLevel.READ_COMMITTED);
        for (int part = 0; part < 3; part++) {
            List<String> want = new ArrayList<>();
            for (int i = part; i < n; i += 3) want.add("V" + i);
            List<String> have = got.getOrDefault(part, List.of());
            check(have.equals(want), "output partition " + part + ": " + have.size() + " records, want " + want.size()
                    + (have.size() > 0 ? "; first " + have.subList(0, Math.min(5, have.size())) : ""));
        }
        try (var a = admin()) {
            var offs = a.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get(30, TimeUnit.SECONDS);
            for (int part = 0; part < 3; part++) {
                OffsetAndMetadata o = offs.get(new TopicPartition(in, part));
                check(o != null && o.offset() == n / 3, "committed offset of " + in + "-" + part + ": " + o + ", want " + n / 3);
            }
        }
    }

    /**
     * KIP-447: a transactional offset commit with a generation or member id the group does not
     * have fails (ILLEGAL_GENERATION / UNKNOWN_MEMBER_ID, CommitFailedException in the client),
     * the transaction can still be aborted, and nothing is committed.
     */
    @SuppressWarnings("removal") // ConsumerGroupMetadata's constructor: the way to forge stale metadata
    static void offsetCommitFencing() throws Exception {
        String in = topic("fence-in"), out = topic("fence-out"), group = "fence-" + RUN;
        try (var a = admin()) {
            createTopic(a, in, 1, -1);
            createTopic(a, out, 1, -1);
        }
        try (var p = producer(Map.of())) {
            for (int i = 0; i < 5; i++) p.send(new ProducerRecord<>(in, 0, "k" + i, "v" + i));
            p.flush();
        }
        TopicPartition tp = new TopicPartition(in, 0);
        try (var p = txProducer("fence-" + RUN);
             var c = consumer(IsolationLevel.READ_COMMITTED, Map.of(ConsumerConfig.GROUP_ID_CONFIG, group))) {
            c.subscribe(List.of(in));
            long deadline = System.currentTimeMillis() + 30000;
            while (c.assignment().isEmpty() || c.groupMetadata().generationId() < 0) {
                check(System.currentTimeMillis() < deadline, "the consumer never joined its group");
                c.poll(Duration.ofMillis(100));
            }
            ConsumerGroupMetadata real = c.groupMetadata();
            List<ConsumerGroupMetadata> stale = List.of(
                    new ConsumerGroupMetadata(group, real.generationId() + 7, real.memberId(), real.groupInstanceId()),
                    new ConsumerGroupMetadata(group, real.generationId(), "not-a-member-" + RUN, real.groupInstanceId()));
            for (var meta : stale) {
                p.beginTransaction();
                p.send(new ProducerRecord<>(out, 0, "k", "fenced"));
                try {
                    p.sendOffsetsToTransaction(Map.of(tp, new OffsetAndMetadata(3)), meta);
                    p.commitTransaction();
                    throw new AssertionError("transactional offset commit with " + meta + " succeeded (group has " + real + ")");
                } catch (CommitFailedException e) {
                    // Expected; the transaction is abortable.
                } catch (KafkaException e) {
                    boolean commitFailed = false;
                    for (Throwable x = e; x != null; x = x.getCause()) commitFailed |= x instanceof CommitFailedException;
                    check(commitFailed, "with " + meta + ": " + describe(e) + ", want CommitFailedException");
                }
                p.abortTransaction();
            }
            // The real metadata still commits.
            p.beginTransaction();
            p.send(new ProducerRecord<>(out, 0, "k", "real"));
            p.sendOffsetsToTransaction(Map.of(tp, new OffsetAndMetadata(5)), c.groupMetadata());
            p.commitTransaction();
        }
        try (var a = admin()) {
            var offs = a.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get(30, TimeUnit.SECONDS);
            check(offs.get(tp) != null && offs.get(tp).offset() == 5, "committed " + offs.get(tp) + ", want 5");
        }
        List<String> seen = all(read(out, IsolationLevel.READ_COMMITTED));
        check(seen.equals(List.of("real")), "read_committed output " + seen);
    }

    // ------------------------------------------------------------------ Kafka Streams

    static final List<String> VOCABULARY = List.of(
            "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliett",
            "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango",
            "uniform", "victor", "whiskey", "xray", "yankee", "zulu", "ice", "stream", "kafka", "raft");

    static void streamsWordCount() throws Exception {
        // Streams' producers would only retry the same failure until the timeout.
        if (initFailure != null) throw new AssertionError("skipped: initTransactions failed earlier: " + initFailure);
        String input = System.getProperty("streams.input");
        String output = System.getProperty("streams.output");
        int rf = Integer.getInteger("streams.rf", -1);
        String app = System.getProperty("streams.app", "wc-" + RUN);
        long timeoutMs = Long.getLong("streams.timeout.s", 150) * 1000;
        int expectLines;
        try (var a = admin()) {
            if (input == null) {
                input = topic("wc-in");
                output = topic("wc-out");
                createTopic(a, input, 3, rf);
                createTopic(a, output, 3, rf);
                expectLines = Integer.getInteger("streams.lines", 3000);
                Random rnd = new Random(42);
                try (var p = producer(Map.of(ProducerConfig.LINGER_MS_CONFIG, 5))) {
                    for (int i = 0; i < expectLines; i++) {
                        StringBuilder line = new StringBuilder();
                        for (int w = 1 + rnd.nextInt(8); w > 0; w--) line.append(VOCABULARY.get(rnd.nextInt(VOCABULARY.size()))).append(' ');
                        p.send(new ProducerRecord<>(input, null, line.toString().trim()));
                    }
                    p.flush();
                }
            } else {
                check(output != null, "streams.input given without streams.output");
                expectLines = Integer.getInteger("streams.expect.lines", 0);
            }
        }
        info("streams app " + app + ": " + input + " -> " + output + ", waiting for " + expectLines + " input lines");

        StreamsBuilder b = new StreamsBuilder();
        long lineDelayMs = Long.getLong("streams.line.delay.ms", 0);
        b.stream(input, Consumed.with(Serdes.String(), Serdes.String()))
                .peek((k, line) -> pause(lineDelayMs))
                .flatMapValues(line -> Arrays.stream(line.split("\\s+")).filter(w -> !w.isEmpty()).toList())
                .groupBy((k, word) -> word, Grouped.with("words", Serdes.String(), Serdes.String()))
                .count(Materialized.<String, Long>as(Stores.inMemoryKeyValueStore("counts"))
                        .withKeySerde(Serdes.String()).withValueSerde(Serdes.Long()))
                .toStream()
                .to(output, Produced.with(Serdes.String(), Serdes.Long()));
        Path stateDir = Files.createTempDirectory("streams-eos-");
        Properties props = new Properties();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, app);
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 1);
        props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 100);
        // No record cache: every input word gives one output update, so the committed
        // updates of a word must be exactly 1..n.
        props.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0);
        props.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, rf);
        props.put(StreamsConfig.STATE_DIR_CONFIG, stateDir.toString());
        // Small polls: transactions of a fraction of a second even with streams.line.delay.ms.
        props.put(StreamsConfig.mainConsumerPrefix(ConsumerConfig.MAX_POLL_RECORDS_CONFIG), 100);
        props.put(StreamsConfig.producerPrefix(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG), 15000);
        String session = System.getProperty("streams.session.timeout.ms");
        if (session != null) props.put(StreamsConfig.consumerPrefix(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG), Integer.parseInt(session));
        props.put(StreamsConfig.consumerPrefix(ConsumerConfig.REQUEST_TIMEOUT_MS_CONFIG), 15000);

        AtomicInteger replaced = new AtomicInteger();
        AtomicReference<KafkaStreams.State> state = new AtomicReference<>(KafkaStreams.State.CREATED);
        KafkaStreams streams = new KafkaStreams(b.build(), props);
        streams.setStateListener((now, before) -> {
            state.set(now);
            info("streams state " + before + " -> " + now);
        });
        // A stream thread that dies (say on a timeout while a broker is down) is replaced: the
        // new thread's producer fences the old one, so exactly-once still holds; each is shown.
        streams.setUncaughtExceptionHandler(e -> {
            replaced.incrementAndGet();
            info("stream thread replaced after: " + describe(e));
            return StreamThreadExceptionResponse.REPLACE_THREAD;
        });
        long deadline = System.currentTimeMillis() + timeoutMs;
        streams.start();
        // Done once every input line is there and the committed output holds one update per
        // input word (each word yields exactly one); verifyWordCounts then checks which.
        long totalWords = -1, updates = 0;
        try (var a = admin();
             KafkaConsumer<String, Long> out = new KafkaConsumer<>(withDefaults(
                     Map.of(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, LongDeserializer.class)))) {
            List<TopicPartition> in = partitions(a, input);
            List<TopicPartition> outTps = partitions(a, output);
            out.assign(outTps);
            out.seekToBeginning(outTps);
            boolean coordinatorsShown = false;
            long lastProgress = 0, inputLines = 0;
            while (true) {
                KafkaStreams.State s = state.get();
                check(s != KafkaStreams.State.ERROR && s != KafkaStreams.State.NOT_RUNNING
                        && s != KafkaStreams.State.PENDING_ERROR, "streams state " + s);
                check(System.currentTimeMillis() < deadline, "the app did not process the input in " + timeoutMs
                        + " ms: " + updates + " of " + (totalWords < 0 ? "?" : totalWords) + " updates committed");
                updates += out.poll(Duration.ofMillis(200)).count();
                try {
                    if (!coordinatorsShown && s == KafkaStreams.State.RUNNING) coordinatorsShown = showCoordinators(a, app, streams);
                    if (totalWords < 0) {
                        Map<TopicPartition, OffsetSpec> latest = new HashMap<>();
                        in.forEach(tp -> latest.put(tp, OffsetSpec.latest()));
                        inputLines = 0;
                        for (var r : a.listOffsets(latest).all().get(10, TimeUnit.SECONDS).values()) inputLines += r.offset();
                        if (inputLines >= expectLines) {
                            totalWords = countWords(input).values().stream().mapToLong(Long::longValue).sum();
                        }
                    }
                } catch (ExecutionException | java.util.concurrent.TimeoutException e) {
                    // A broker restarting: ask again.
                    info("progress check failed: " + describe(e));
                }
                if (System.currentTimeMillis() - lastProgress > 2000) {
                    info("progress: " + updates + " of " + (totalWords < 0 ? "?" : totalWords) + " updates committed; "
                            + inputLines + " of " + expectLines + " input lines there");
                    lastProgress = System.currentTimeMillis();
                }
                if (totalWords >= 0 && updates >= totalWords) break;
            }
            info("all " + totalWords + " updates committed");
        } finally {
            boolean closed = streams.close(Duration.ofSeconds(30));
            info("streams closed " + (closed ? "cleanly" : "with a timeout") + "; stream threads replaced: " + replaced.get());
        }
        verifyWordCounts(input, output);
    }

    static void pause(long ms) {
        if (ms <= 0) return;
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /**
     * Prints which brokers coordinate the app's group and this instance's transactions (best
     * effort): its transactional ids are its producers' client ids up to "-StreamThread-"
     * plus the thread's index; a dead instance's may still be listed.
     */
    static boolean showCoordinators(Admin a, String app, KafkaStreams streams) {
        try {
            String prefix = null;
            for (var t : streams.metadataForLocalThreads()) {
                for (String clientId : t.producerClientIds()) {
                    int i = clientId.indexOf("-StreamThread-");
                    if (i > 0) prefix = clientId.substring(0, i) + "-";
                }
            }
            if (prefix == null) return false;
            int group = a.describeConsumerGroups(List.of(app)).describedGroups().get(app).get(10, TimeUnit.SECONDS).coordinator().id();
            List<String> ids = new ArrayList<>();
            for (var l : a.listTransactions().all().get(10, TimeUnit.SECONDS)) {
                if (l.transactionalId().startsWith(prefix)) ids.add(l.transactionalId());
            }
            if (ids.isEmpty()) return false;
            Collections.sort(ids);
            var d = a.describeTransactions(ids).all().get(10, TimeUnit.SECONDS);
            info("coordinators group=" + group + " txn=" + d.get(ids.get(0)).coordinatorId() + " transactional.id=" + ids.get(0));
            return true;
        } catch (Exception e) {
            info("coordinators unknown: " + describe(e));
            return true;
        }
    }

    /**
     * The committed updates of each word, read_committed, are exactly 1..n where n is how often
     * the word occurs in the input: no update lost, none duplicated by a retry.
     */
    static void verifyWordCounts(String input, String output) {
        Map<String, Long> want = countWords(input);
        Map<String, List<Long>> got = new TreeMap<>();
        Map<String, Object> longs = Map.of(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, LongDeserializer.class);
        long updates = 0;
        try (KafkaConsumer<String, Long> c = new KafkaConsumer<>(withDefaults(longs))) {
            for (var rs : readToEnd(c, output).values()) {
                for (var r : rs) {
                    got.computeIfAbsent(r.key(), k -> new ArrayList<>()).add(r.value());
                    updates++;
                }
            }
        }
        List<String> wrong = new ArrayList<>();
        Set<String> words = new TreeSet<>(want.keySet());
        words.addAll(got.keySet());
        for (String w : words) {
            long n = want.getOrDefault(w, 0L);
            List<Long> seq = got.getOrDefault(w, List.of());
            boolean exact = seq.size() == n;
            for (int i = 0; exact && i < seq.size(); i++) exact = seq.get(i) == i + 1;
            if (!exact) {
                int firstBad = 0;
                while (firstBad < seq.size() && seq.get(firstBad) == firstBad + 1) firstBad++;
                wrong.add(w + ": want 1.." + n + ", got " + seq.size() + " updates, last "
                        + (seq.isEmpty() ? "-" : seq.get(seq.size() - 1)) + ", first deviation at #" + firstBad
                        + (firstBad < seq.size() ? " = " + seq.get(firstBad) : ""));
            }
        }
        long total = want.values().stream().mapToLong(Long::longValue).sum();
        info("word counts: " + want.size() + " words, " + total + " input words, " + updates + " committed updates");
        check(total > 0, "no input words");
        check(wrong.isEmpty(), wrong.size() + " words counted wrong: " + wrong.subList(0, Math.min(5, wrong.size())));
    }

    /** How often each word occurs in the input topic. */
    static Map<String, Long> countWords(String input) {
        Map<String, Long> want = new TreeMap<>();
        try (var c = consumer(IsolationLevel.READ_COMMITTED, Map.of())) {
            for (var rs : readToEnd(c, input).values()) {
                for (var r : rs) {
                    for (String w : r.value().split("\\s+")) if (!w.isEmpty()) want.merge(w, 1L, Long::sum);
                }
            }
        }
        return want;
    }

    static Map<String, Object> withDefaults(Map<String, Object> extra) {
        Map<String, Object> c = new HashMap<>();
        c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        c.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class);
        c.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class);
        c.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        c.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        c.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        c.putAll(extra);
        return c;
    }
}
