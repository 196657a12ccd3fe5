package compat;

import java.time.Duration;
import java.util.*;
import java.util.concurrent.ExecutionException;

import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.acl.*;
import org.apache.kafka.common.errors.SaslAuthenticationException;
import org.apache.kafka.common.errors.TopicAuthorizationException;
import org.apache.kafka.common.resource.*;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * The Java client over SASL_SSL with SCRAM-SHA-512, against a broker with authorization on:
 * {@code Secure <bootstrap> <ca.pem> <superuser> <password>}. As a superuser it creates a
 * topic, produces and consumes, creates a second user (AlterUserScramCredentials) and ACLs
 * letting that user read the topic; the second user then consumes it and is refused another
 * topic and produce. A wrong password is refused. Prints "PASS name" / "FAIL name: why" and a
 * closing "secure-java: N passed, N failed"; exits 1 when a case failed.
 */
public final class Secure {
    static String bootstrap;
    static String caPem;
    static final String RUN = Long.toString(System.currentTimeMillis() % 1_000_000_000L, 36);
    static final String TOPIC = "sec-java-" + RUN;
    static final String OTHER = "sec-java-other-" + RUN;
    static final String READER = "reader-" + RUN;
    static final String READER_PASSWORD = "reader-secret-" + RUN;

    interface Case {
        void run() throws Exception;
    }

    static Properties props(String user, String password) {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("security.protocol", "SASL_SSL");
        p.put("sasl.mechanism", "SCRAM-SHA-512");
        p.put("sasl.jaas.config", "org.apache.kafka.common.security.scram.ScramLoginModule required"
                + " username=\"" + user + "\" password=\"" + password + "\";");
        p.put("ssl.truststore.type", "PEM");
        p.put("ssl.truststore.location", caPem);
        p.put("request.timeout.ms", "15000");
        p.put("default.api.timeout.ms", "30000");
        return p;
    }

    static KafkaProducer<String, String> producer(Properties base) {
        Properties p = (Properties) base.clone();
        p.put("acks", "all");
        p.put("enable.idempotence", "true");
        p.put("max.block.ms", "20000");
        p.put("delivery.timeout.ms", "30000");
        return new KafkaProducer<>(p, new StringSerializer(), new StringSerializer());
    }

    static KafkaConsumer<String, String> consumer(Properties base, String group) {
        Properties p = (Properties) base.clone();
        p.put("group.id", group);
        p.put("auto.offset.reset", "earliest");
        p.put("enable.auto.commit", "false");
        return new KafkaConsumer<>(p, new StringDeserializer(), new StringDeserializer());
    }

    static int drain(KafkaConsumer<String, String> c, int want) {
        int got = 0;
        long deadline = System.currentTimeMillis() + 30_000;
        while (got < want && System.currentTimeMillis() < deadline) {
            got += c.poll(Duration.ofMillis(500)).count();
        }
        return got;
    }

    static boolean refusedForAuthorization(Throwable e) {
        for (Throwable t = e; t != null; t = t.getCause()) {
            String n = t.getClass().getSimpleName();
            if (n.equals("TopicAuthorizationException") || n.equals("ClusterAuthorizationException")) {
                return true;
            }
        }
        return false;
    }

    static void check(boolean ok, String why) {
        if (!ok) throw new AssertionError(why);
    }

    public static void main(String[] args) throws Exception {
        bootstrap = args[0];
        caPem = args[1];
        Properties admin = props(args[2], args[3]);
        Properties reader = props(READER, READER_PASSWORD);
        LinkedHashMap<String, Case> cases = new LinkedHashMap<>();

        cases.put("scram-sha-512-produce-consume", () -> {
            try (Admin a = Admin.create(admin)) {
                a.createTopics(List.of(new NewTopic(TOPIC, 1, (short) 1), new NewTopic(OTHER, 1, (short) 1)))
                        .all().get();
            }
            try (KafkaProducer<String, String> p = producer(admin)) {
                for (int i = 0; i < 50; i++) p.send(new ProducerRecord<>(TOPIC, "k" + i, "v" + i)).get();
                p.send(new ProducerRecord<>(OTHER, "k", "v")).get();
            }
            try (KafkaConsumer<String, String> c = consumer(admin, "sec-java-admin-" + RUN)) {
                c.subscribe(List.of(TOPIC));
                int got = drain(c, 50);
                check(got == 50, "consumed " + got + " of 50 records");
            }
        });

        cases.put("wrong-password-refused", () -> {
            Properties bad = props(args[2], args[3] + "-wrong");
            try (KafkaProducer<String, String> p = producer(bad)) {
                p.send(new ProducerRecord<>(TOPIC, "k", "v")).get();
                throw new AssertionError("a wrong password produced");
            } catch (ExecutionException | SaslAuthenticationException e) {
                Throwable t = e instanceof ExecutionException ? e.getCause() : e;
                check(t instanceof SaslAuthenticationException, "expected SaslAuthenticationException, got " + t);
                check(t.getMessage().contains("Authentication failed"), "message: " + t.getMessage());
            }
        });

        cases.put("alter-describe-user-scram-credentials", () -> {
            try (Admin a = Admin.create(admin)) {
                a.alterUserScramCredentials(List.of(new UserScramCredentialUpsertion(READER,
                        new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), READER_PASSWORD)))
                        .all().get();
                UserScramCredentialsDescription d = a.describeUserScramCredentials(List.of(READER))
                        .description(READER).get();
                check(d.credentialInfos().stream().anyMatch(
                        i -> i.mechanism() == ScramMechanism.SCRAM_SHA_512 && i.iterations() == 8192),
                        "described: " + d);
            }
        });

        cases.put("create-describe-acls", () -> {
            try (Admin a = Admin.create(admin)) {
                String who = "User:" + READER;
                a.createAcls(List.of(
                        new AclBinding(new ResourcePattern(ResourceType.TOPIC, TOPIC, PatternType.LITERAL),
                                new AccessControlEntry(who, "*", AclOperation.READ, AclPermissionType.ALLOW)),
                        new AclBinding(new ResourcePattern(ResourceType.GROUP, "sec-java-", PatternType.PREFIXED),
                                new AccessControlEntry(who, "*", AclOperation.READ, AclPermissionType.ALLOW))))
                        .all().get();
                Collection<AclBinding> listed = a.describeAcls(new AclBindingFilter(ResourcePatternFilter.ANY,
                        new AccessControlEntryFilter(who, null, AclOperation.ANY, AclPermissionType.ANY)))
                        .values().get();
                check(listed.size() == 2, "described " + listed);
            }
        });

        cases.put("read-only-user", () -> {
            try (KafkaConsumer<String, String> c = consumer(reader, "sec-java-reader-" + RUN)) {
                c.subscribe(List.of(TOPIC));
                int got = drain(c, 50);
                check(got == 50, "the reader consumed " + got + " of 50 records");
            }
            try (KafkaConsumer<String, String> c = consumer(reader, "sec-java-reader2-" + RUN)) {
                c.assign(List.of(new TopicPartition(OTHER, 0)));
                c.seekToBeginning(List.of(new TopicPartition(OTHER, 0)));
                try {
                    drain(c, 1);
                    throw new AssertionError("the reader read a topic it has no ACL for");
                } catch (TopicAuthorizationException e) {
                    check(e.unauthorizedTopics().contains(OTHER), "unauthorized: " + e.unauthorizedTopics());
                }
            }
            try (KafkaProducer<String, String> p = producer(reader)) {
                p.send(new ProducerRecord<>(TOPIC, "k", "v")).get();
                throw new AssertionError("the reader produced");
            } catch (org.apache.kafka.common.KafkaException | ExecutionException e) {
                // An idempotent producer asks for a producer id first and is refused as the
                // cluster authorization it lacks (or the topic's). The client reports that refusal
                // from the send's future, or, when the refusal arrived before send(), as the cause
                // of "Cannot execute transactional method because we are in an error state".
                check(refusedForAuthorization(e), "expected an authorization error, got " + e);
            }
        });

        int passed = 0, failed = 0;
        for (Map.Entry<String, Case> c : cases.entrySet()) {
            try {
                c.getValue().run();
                System.out.println("PASS " + c.getKey());
                passed++;
            } catch (Throwable t) {
                System.out.println("FAIL " + c.getKey() + ": " + t);
                failed++;
            }
        }
        System.out.println("secure-java: " + passed + " passed, " + failed + " failed");
        System.exit(failed == 0 ? 0 : 1);
    }
}
