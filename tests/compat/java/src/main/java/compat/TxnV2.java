package compat;

import java.time.Duration;
import java.util.*;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.*;
import org.apache.kafka.common.errors.ProducerFencedException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * Transactions of a Java 4.x producer against one broker: {@code TxnV2 <bootstrap>}. A broker
 * that finalizes {@code transaction.version} 2 (Apache Kafka 4, Icestream) gets transaction
 * protocol v2 (KIP-890 part 2): no AddPartitionsToTxn nor AddOffsetsToTxn, Produce v12,
 * TxnOffsetCommit v5, EndTxn v5 with the epoch bumped at every end. Prints one line per case
 * ("PASS name" / "FAIL name: why"), "INFO key=value" lines, and "txn-v2: N passed, N failed";
 * exits 1 when a case failed.
 */
public final class TxnV2 {
    static String bootstrap;
    static final String RUN = Long.toString(System.currentTimeMillis() % 1_000_000_000L, 36);
    static int passed, failed;

    interface Case {
        void run() throws Exception;
    }

    static void check(String name, Case c) {
        try {
            c.run();
            System.out.println("PASS " + name);
            passed++;
        } catch (Throwable t) {
            String why = String.valueOf(t).replace('\n', ' ');
            System.out.println("FAIL " + name + ": " + why);
            t.printStackTrace();
            failed++;
        }
    }

    static void require(boolean ok, String why) {
        if (!ok) {
            throw new AssertionError(why);
        }
    }

    static Properties producerProps(String txnId) {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, txnId);
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        p.put(ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, "60000");
        p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "30000");
        return p;
    }

    static KafkaConsumer<String, String> consumer(String isolation) {
        return consumer(isolation, new Properties());
    }

    static KafkaConsumer<String, String> consumer(String isolation, Properties extra) {
        Properties p = new Properties();
        p.putAll(extra);
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolation);
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        return new KafkaConsumer<>(p);
    }

    /** Every value of `topic` (all partitions) up to its end offsets, as `isolation` reads. */
    static List<String> readAll(String topic, int partitions, String isolation) {
        try (KafkaConsumer<String, String> c = consumer(isolation)) {
            List<TopicPartition> tps = new ArrayList<>();
            for (int i = 0; i < partitions; i++) {
                tps.add(new TopicPartition(topic, i));
            }
            c.assign(tps);
            c.seekToBeginning(tps);
            Map<TopicPartition, Long> end = c.endOffsets(tps);
            List<String> out = new ArrayList<>();
            long deadline = System.currentTimeMillis() + 30_000;
            while (tps.stream().anyMatch(tp -> c.position(tp) < end.get(tp))) {
                require(System.currentTimeMillis() < deadline, "reading " + topic + " timed out at "
                        + out.size() + " records");
                for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) {
                    out.add(r.value());
                }
            }
            return out;
        }
    }

    static void send(Producer<String, String> p, String topic, int partitions, String prefix, int n)
            throws Exception {
        for (int i = 0; i < n; i++) {
            p.send(new ProducerRecord<>(topic, i % partitions, "k" + i, prefix + "-" + i));
        }
    }

    static TransactionDescription describe(Admin admin, String txnId) throws Exception {
        return admin.describeTransactions(List.of(txnId)).description(txnId).get(30, TimeUnit.SECONDS);
    }

    /** The transaction's description once it is in `state` (its markers written). */
    static TransactionDescription awaitState(Admin admin, String txnId, TransactionState state)
            throws Exception {
        long deadline = System.currentTimeMillis() + 30_000;
        while (true) {
            TransactionDescription d = describe(admin, txnId);
            if (d.state() == state) {
                return d;
            }
            require(System.currentTimeMillis() < deadline, txnId + " stays " + d.state());
            Thread.sleep(50);
        }
    }

    public static void main(String[] args) throws Exception {
        bootstrap = args[0];
        String out = "tv2-out-" + RUN;
        String in = "tv2-in-" + RUN;
        String group = "tv2-group-" + RUN;
        String txnId = "tv2-" + RUN;
        int parts = 3;
        Properties ap = new Properties();
        ap.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        try (Admin admin = Admin.create(ap)) {
            admin.createTopics(List.of(new NewTopic(out, parts, (short) 1), new NewTopic(in, 1, (short) 1)))
                    .all().get(30, TimeUnit.SECONDS);
            FeatureMetadata features = admin.describeFeatures().featureMetadata().get(30, TimeUnit.SECONDS);
            FinalizedVersionRange tv = features.finalizedFeatures().get("transaction.version");
            System.out.println("INFO finalized_transaction_version=" + (tv == null ? -1 : tv.maxVersionLevel()));

            KafkaProducer<String, String> producer = new KafkaProducer<>(producerProps(txnId));
            check("init_transactions", producer::initTransactions);
            int[] epochs = new int[4];
            check("epoch_after_init", () -> epochs[0] = describe(admin, txnId).producerEpoch());

            check("commit", () -> {
                producer.beginTransaction();
                send(producer, out, parts, "committed-a", 30);
                producer.commitTransaction();
                epochs[1] = awaitState(admin, txnId, TransactionState.COMPLETE_COMMIT).producerEpoch();
            });
            check("abort", () -> {
                producer.beginTransaction();
                send(producer, out, parts, "aborted-b", 20);
                producer.flush();
                producer.abortTransaction();
                epochs[2] = awaitState(admin, txnId, TransactionState.COMPLETE_ABORT).producerEpoch();
            });
            check("commit_with_offsets", () -> {
                producer.beginTransaction();
                send(producer, out, parts, "committed-c", 10);
                ConsumerGroupMetadata meta;
                Properties cp = new Properties();
                cp.put(ConsumerConfig.GROUP_ID_CONFIG, group);
                try (KafkaConsumer<String, String> c = consumer("read_committed", cp)) {
                    meta = c.groupMetadata();
                }
                producer.sendOffsetsToTransaction(
                        Map.of(new TopicPartition(in, 0), new OffsetAndMetadata(42)), meta);
                producer.commitTransaction();
                epochs[3] = awaitState(admin, txnId, TransactionState.COMPLETE_COMMIT).producerEpoch();
            });
            // Back to back: the next transaction's first batches go out right after the last
            // EndTxn, while its markers may still be in flight.
            check("back_to_back", () -> {
                for (int t = 0; t < 5; t++) {
                    producer.beginTransaction();
                    send(producer, out, parts, "committed-d" + t, 4);
                    producer.commitTransaction();
                }
            });
            System.out.println("INFO epochs=" + epochs[0] + "," + epochs[1] + "," + epochs[2] + "," + epochs[3]);

            check("read_committed", () -> {
                List<String> values = readAll(out, parts, "read_committed");
                long aborted = values.stream().filter(v -> v.startsWith("aborted")).count();
                require(aborted == 0, aborted + " aborted records read");
                require(values.size() == 30 + 10 + 20, "read_committed read " + values.size() + " records");
            });
            check("read_uncommitted", () -> {
                List<String> values = readAll(out, parts, "read_uncommitted");
                require(values.size() == 30 + 20 + 10 + 20, "read_uncommitted read " + values.size());
            });
            check("offsets_committed", () -> {
                Map<TopicPartition, OffsetAndMetadata> o = admin.listConsumerGroupOffsets(group)
                        .partitionsToOffsetAndMetadata().get(30, TimeUnit.SECONDS);
                OffsetAndMetadata m = o.get(new TopicPartition(in, 0));
                require(m != null && m.offset() == 42, "committed offsets " + o);
            });

            // A second producer with the same transactional id fences the first.
            check("fencing", () -> {
                producer.beginTransaction();
                send(producer, out, parts, "zombie", 3);
                producer.flush();
                try (KafkaProducer<String, String> next = new KafkaProducer<>(producerProps(txnId))) {
                    next.initTransactions();
                    next.beginTransaction();
                    send(next, out, parts, "committed-e", 3);
                    next.commitTransaction();
                }
                boolean fenced = false;
                try {
                    send(producer, out, parts, "zombie-late", 1);
                    producer.commitTransaction();
                } catch (ProducerFencedException | org.apache.kafka.common.errors.InvalidProducerEpochException e) {
                    fenced = true;
                } catch (KafkaException e) {
                    fenced = true;
                    System.out.println("INFO fenced_with=" + e);
                }
                require(fenced, "the fenced producer committed");
                List<String> values = readAll(out, parts, "read_committed");
                require(values.stream().noneMatch(v -> v.startsWith("zombie")), "a zombie record is visible");
                require(values.stream().filter(v -> v.startsWith("committed-e")).count() == 3,
                        "the new producer's transaction is not visible");
            });
            try {
                producer.close(Duration.ofSeconds(5));
            } catch (Exception e) {
                // Fenced: closing may complain.
            }
        }
        System.out.println("txn-v2: " + passed + " passed, " + failed + " failed");
        System.exit(failed == 0 ? 0 : 1);
    }
}
