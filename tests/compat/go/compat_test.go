// The Go side of the compatibility suite (tests/compat/README.md): franz-go (with kadm) and
// Sarama against the broker at $COMPAT_BOOTSTRAP, Apache Kafka or Icestream alike.
package compat

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

var run = strconv.FormatInt(time.Now().UnixNano()%1_000_000_000, 36)

func bootstrap(t *testing.T) string {
	b := os.Getenv("COMPAT_BOOTSTRAP")
	if b == "" {
		t.Skip("COMPAT_BOOTSTRAP is not set")
	}
	return b
}

func name(prefix string) string {
	return fmt.Sprintf("%s-%s-%d", prefix, run, time.Now().UnixNano()%100000)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	return c
}

func admin(t *testing.T) (*kadm.Client, *kgo.Client) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(bootstrap(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl), cl
}

func createTopic(t *testing.T, adm *kadm.Client, topic string, partitions int32, configs map[string]*string) {
	resp, err := adm.CreateTopic(ctx(t), partitions, 1, configs, topic)
	if err != nil || resp.Err != nil {
		t.Fatalf("create %s: %v %v", topic, err, resp.Err)
	}
	// Until every partition has a leader.
	deadline := time.Now().Add(30 * time.Second)
	for {
		md, err := adm.Metadata(ctx(t), topic)
		if err == nil {
			td := md.Topics[topic]
			ok := td.Err == nil && len(td.Partitions) == int(partitions)
			for _, p := range td.Partitions {
				ok = ok && p.Leader >= 0
			}
			if ok {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("topic %s has no leaders: %v", topic, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ------------------------------------------------------------------ franz-go

func TestFranzProduceAndConsumeInGroup(t *testing.T) {
	adm, _ := admin(t)
	topic, group := name("franz"), name("franz-g")
	createTopic(t, adm, topic, 3, nil)
	for _, codec := range []kgo.CompressionCodec{kgo.NoCompression(), kgo.GzipCompression(), kgo.SnappyCompression(), kgo.Lz4Compression(), kgo.ZstdCompression()} {
		p, err := kgo.NewClient(kgo.SeedBrokers(bootstrap(t)), kgo.ProducerBatchCompression(codec), kgo.RequiredAcks(kgo.AllISRAcks()))
		if err != nil {
			t.Fatal(err)
		}
		var recs []*kgo.Record
		for i := 0; i < 40; i++ {
			recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(fmt.Sprintf("k%d", i)), Value: []byte(fmt.Sprintf("v%d", i))})
		}
		if err := p.ProduceSync(ctx(t), recs...).FirstErr(); err != nil {
			t.Fatalf("produce (idempotent, %v): %v", codec, err)
		}
		p.Close()
	}
	c, err := kgo.NewClient(kgo.SeedBrokers(bootstrap(t)), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := 0
	deadline := time.Now().Add(60 * time.Second)
	for got < 200 && time.Now().Before(deadline) {
		fs := c.PollFetches(ctx(t))
		if errs := fs.Errors(); len(errs) > 0 {
			t.Fatalf("fetch: %v", errs)
		}
		got += fs.NumRecords()
	}
	if got != 200 {
		t.Fatalf("consumed %d of 200", got)
	}
	if err := c.CommitUncommittedOffsets(ctx(t)); err != nil {
		t.Fatal(err)
	}
	offs, err := adm.FetchOffsets(ctx(t), group)
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	offs.Each(func(o kadm.OffsetResponse) { sum += o.At })
	if sum != 200 {
		t.Fatalf("committed offsets sum to %d", sum)
	}
	groups, err := adm.DescribeGroups(ctx(t), group)
	if err != nil || groups[group].Err != nil || len(groups[group].Members) != 1 {
		t.Fatalf("describe group: %v %+v", err, groups[group])
	}
}

func TestKadmAdmin(t *testing.T) {
	adm, _ := admin(t)
	c := ctx(t)
	topic := name("kadm")
	ratio := "0.2"
	createTopic(t, adm, topic, 2, map[string]*string{"min.cleanable.dirty.ratio": &ratio})
	topics, err := adm.ListTopics(c)
	if err != nil || !topics.Has(topic) {
		t.Fatalf("list topics: %v", err)
	}
	cfgs, err := adm.DescribeTopicConfigs(c, topic)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := cfgs.On(topic, nil)
	if err != nil || rc.Err != nil {
		t.Fatalf("describe configs: %v %v", err, rc.Err)
	}
	found := false
	for _, cfg := range rc.Configs {
		if cfg.Key == "min.cleanable.dirty.ratio" && cfg.MaybeValue() == "0.2" {
			found = true
		}
	}
	if !found {
		t.Fatalf("min.cleanable.dirty.ratio not described as 0.2")
	}
	v := "3600000"
	ar, err := adm.AlterTopicConfigs(c, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "retention.ms", Value: &v}}, topic)
	if err != nil || ar[0].Err != nil {
		t.Fatalf("alter configs: %v %v", err, ar)
	}
	if _, err := adm.CreatePartitions(c, 1, topic); err != nil {
		t.Fatal(err)
	}
	// Records: produce 10 to partition 0, delete the first 4.
	cl, _ := kgo.NewClient(kgo.SeedBrokers(bootstrap(t)), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	defer cl.Close()
	for i := 0; i < 10; i++ {
		if err := cl.ProduceSync(c, &kgo.Record{Topic: topic, Partition: 0, Value: []byte("x")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	os := kadm.Offsets{}
	os.Add(kadm.Offset{Topic: topic, Partition: 0, At: 4})
	dr, err := adm.DeleteRecords(c, os)
	if err != nil || dr.Error() != nil {
		t.Fatalf("delete records: %v %v", err, dr.Error())
	}
	starts, err := adm.ListStartOffsets(c, topic)
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := starts.Lookup(topic, 0); o.Offset != 4 {
		t.Fatalf("start offset %d, want 4", o.Offset)
	}
	ends, err := adm.ListEndOffsets(c, topic)
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := ends.Lookup(topic, 0); o.Offset != 10 {
		t.Fatalf("end offset %d, want 10", o.Offset)
	}
	// Group offsets: commit, list, delete the group.
	group := name("kadm-g")
	commit := kadm.Offsets{}
	commit.Add(kadm.Offset{Topic: topic, Partition: 0, At: 7})
	if r, err := adm.CommitOffsets(c, group, commit); err != nil || r.Error() != nil {
		t.Fatalf("commit offsets: %v %v", err, r.Error())
	}
	lg, err := adm.ListGroups(c)
	if err != nil || !contains(lg.Groups(), group) {
		t.Fatalf("list groups: %v %v", err, lg.Groups())
	}
	if r, err := adm.DeleteGroups(c, group); err != nil || r[group].Err != nil {
		t.Fatalf("delete group: %v %v", err, r)
	}
	meta, err := adm.BrokerMetadata(c)
	if err != nil || len(meta.Brokers) == 0 || meta.Cluster == "" {
		t.Fatalf("broker metadata: %v %+v", err, meta)
	}
	if r, err := adm.DeleteTopics(c, topic); err != nil || r.Error() != nil {
		t.Fatalf("delete topic: %v %v", err, r.Error())
	}
	// An unknown config name is refused.
	bad := "1"
	resp, _ := adm.CreateTopic(c, 1, 1, map[string]*string{"no.such.config": &bad}, name("bad"))
	if !errors.Is(resp.Err, kerr.InvalidConfig) {
		t.Fatalf("unknown config: %v", resp.Err)
	}
}

func contains(xs []string, x string) bool {
	sort.Strings(xs)
	i := sort.SearchStrings(xs, x)
	return i < len(xs) && xs[i] == x
}

// ------------------------------------------------------------------ Sarama

func saramaConfig() *sarama.Config {
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V3_7_0_0
	cfg.Producer.Return.Successes = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Idempotent = true
	cfg.Net.MaxOpenRequests = 1
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.Offsets.AutoCommit.Enable = false
	return cfg
}

type handler struct {
	mu   sync.Mutex
	got  map[string]bool
	want int
	done chan struct{}
	once sync.Once
}

func (h *handler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (h *handler) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (h *handler) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	for m := range c.Messages() {
		s.MarkMessage(m, "")
		h.mu.Lock()
		h.got[string(m.Value)] = true
		n := len(h.got)
		h.mu.Unlock()
		if n >= h.want {
			s.Commit()
			h.once.Do(func() { close(h.done) })
		}
	}
	return nil
}

func TestSaramaProduceAndConsumeInGroup(t *testing.T) {
	adm, _ := admin(t)
	topic, group := name("sarama"), name("sarama-g")
	createTopic(t, adm, topic, 3, nil)
	for _, codec := range []sarama.CompressionCodec{sarama.CompressionNone, sarama.CompressionGZIP, sarama.CompressionSnappy, sarama.CompressionLZ4, sarama.CompressionZSTD} {
		cfg := saramaConfig()
		cfg.Producer.Compression = codec
		p, err := sarama.NewSyncProducer([]string{bootstrap(t)}, cfg)
		if err != nil {
			t.Fatal(err)
		}
		var msgs []*sarama.ProducerMessage
		for i := 0; i < 40; i++ {
			msgs = append(msgs, &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(fmt.Sprintf("k%d", i)), Value: sarama.StringEncoder(fmt.Sprintf("%v-%d", codec, i))})
		}
		if err := p.SendMessages(msgs); err != nil {
			t.Fatalf("produce (%v): %v", codec, err)
		}
		p.Close()
	}
	cg, err := sarama.NewConsumerGroup([]string{bootstrap(t)}, group, saramaConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Close()
	h := &handler{got: map[string]bool{}, want: 200, done: make(chan struct{})}
	c, cancel := context.WithCancel(ctx(t))
	defer cancel()
	go func() {
		for c.Err() == nil {
			if err := cg.Consume(c, []string{topic}, h); err != nil && c.Err() == nil {
				t.Logf("consume: %v", err)
				time.Sleep(200 * time.Millisecond)
			}
		}
	}()
	select {
	case <-h.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("consumed %d of 200", len(h.got))
	}
	cancel()
	ca, err := sarama.NewClusterAdmin([]string{bootstrap(t)}, saramaConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		offs, err := ca.ListConsumerGroupOffsets(group, map[string][]int32{topic: {0, 1, 2}})
		if err != nil {
			t.Fatal(err)
		}
		var sum int64
		for _, b := range offs.Blocks[topic] {
			sum += b.Offset
		}
		if sum == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("committed offsets sum to %d", sum)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestSaramaAdmin(t *testing.T) {
	ca, err := sarama.NewClusterAdmin([]string{bootstrap(t)}, saramaConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close()
	topic := name("sadm")
	ratio := "0.3"
	if err := ca.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 2, ReplicationFactor: 1,
		ConfigEntries: map[string]*string{"min.cleanable.dirty.ratio": &ratio}}, false); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		md, err := ca.DescribeTopics([]string{topic})
		if err == nil && len(md) == 1 && md[0].Err == sarama.ErrNoError && len(md[0].Partitions) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("describe topics: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	topics, err := ca.ListTopics()
	if _, ok := topics[topic]; err != nil || !ok {
		t.Fatalf("list topics: %v", err)
	}
	entries, err := ca.DescribeConfig(sarama.ConfigResource{Type: sarama.TopicResource, Name: topic})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range entries {
		if e.Name == "min.cleanable.dirty.ratio" && e.Value == "0.3" {
			found = true
		}
	}
	if !found {
		t.Fatal("min.cleanable.dirty.ratio not described as 0.3")
	}
	v := "7200000"
	if err := ca.IncrementalAlterConfig(sarama.TopicResource, topic, map[string]sarama.IncrementalAlterConfigsEntry{
		"retention.ms": {Operation: sarama.IncrementalAlterConfigsOperationSet, Value: &v}}, false); err != nil {
		t.Fatal(err)
	}
	if err := ca.CreatePartitions(topic, 3, nil, false); err != nil {
		t.Fatal(err)
	}
	cfg := saramaConfig()
	cfg.Producer.Partitioner = sarama.NewManualPartitioner
	p, err := sarama.NewSyncProducer([]string{bootstrap(t)}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if _, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: topic, Partition: 0, Value: sarama.StringEncoder("x")}); err != nil {
			t.Fatal(err)
		}
	}
	p.Close()
	if err := ca.DeleteRecords(topic, map[int32]int64{0: 5}); err != nil {
		t.Fatal(err)
	}
	client, err := sarama.NewClient([]string{bootstrap(t)}, saramaConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if o, err := client.GetOffset(topic, 0, sarama.OffsetOldest); err != nil || o != 5 {
		t.Fatalf("oldest offset %d %v, want 5", o, err)
	}
	if o, err := client.GetOffset(topic, 0, sarama.OffsetNewest); err != nil || o != 10 {
		t.Fatalf("newest offset %d %v, want 10", o, err)
	}
	brokers, controller, err := ca.DescribeCluster()
	if err != nil || len(brokers) == 0 || controller < 0 {
		t.Fatalf("describe cluster: %v", err)
	}
	// A group with committed offsets, listed, described, deleted.
	group := name("sadm-g")
	om, err := sarama.NewOffsetManagerFromClient(group, client)
	if err != nil {
		t.Fatal(err)
	}
	pom, err := om.ManagePartition(topic, 0)
	if err != nil {
		t.Fatal(err)
	}
	pom.MarkOffset(8, "")
	om.Commit()
	// Close commits (auto-commit is off) and releases the partition manager; pom.Close first
	// would wait for the manager's loop, which only ends here.
	if err := om.Close(); err != nil {
		t.Fatal(err)
	}
	groups, err := ca.ListConsumerGroups()
	if _, ok := groups[group]; err != nil || !ok {
		t.Fatalf("list groups: %v %v", err, groups)
	}
	offs, err := ca.ListConsumerGroupOffsets(group, map[string][]int32{topic: {0}})
	if err != nil || offs.Blocks[topic][0].Offset != 8 {
		t.Fatalf("group offsets: %v", err)
	}
	if err := ca.DeleteConsumerGroup(group); err != nil {
		t.Fatal(err)
	}
	if err := ca.DeleteTopic(topic); err != nil {
		t.Fatal(err)
	}
}
