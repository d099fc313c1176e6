//! The librdkafka properties of the clients Bento creates, from the settings.

use rdkafka::ClientConfig;

use super::KafkaConfig;

impl KafkaConfig {
    /// Properties shared by every client: brokers, id, security, timeouts.
    pub(crate) fn common(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", self.bootstrap_servers.trim())
            .set("client.id", &self.client_id)
            .set(
                "socket.connection.setup.timeout.ms",
                self.connect_timeout_ms.to_string(),
            )
            .set("security.protocol", self.security.protocol.librdkafka());
        let s = &self.security;
        if let Some(mechanism) = s.sasl_mechanism {
            config.set("sasl.mechanism", mechanism.librdkafka());
        }
        if let Some(username) = &s.username {
            config.set("sasl.username", username);
        }
        if let Some(password) = &s.password {
            config.set("sasl.password", password);
        }
        let paths = [
            ("ssl.ca.location", &s.ssl_ca_location),
            ("ssl.certificate.location", &s.ssl_certificate_location),
            ("ssl.key.location", &s.ssl_key_location),
        ];
        for (key, path) in paths {
            if let Some(path) = path {
                config.set(key, path.display().to_string());
            }
        }
        if let Some(password) = &s.ssl_key_password {
            config.set("ssl.key.password", password);
        }
        config
    }

    /// The idempotent producer's properties.
    pub(crate) fn producer_config(&self) -> ClientConfig {
        let mut config = self.common();
        // Send as soon as the broker connection is free rather than waiting 5 ms (librdkafka's
        // default) for more records: an awaited `publish` from a request handler returns in
        // about a round trip instead of the linger time, and `publish_batch` still fills
        // batches from the records queued while earlier requests are in flight (measured:
        // same `publish_all` rate, 7x the rate of awaited publishes from 16 tasks). A value
        // in `producer` wins.
        config.set("linger.ms", "0");
        for (key, value) in &self.producer {
            config.set(key, &value.0);
        }
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", self.delivery_timeout_ms.to_string())
            .set("compression.type", self.compression.librdkafka());
        if !self.producer.contains_key("partitioner") {
            // The Java client's partitioner: a key lands on the same partition whichever
            // client wrote it.
            config.set("partitioner", "murmur2_random");
        }
        config
    }

    /// A consumer's properties for consumer group `group`.
    pub(crate) fn consumer_config(&self, group: &str) -> ClientConfig {
        let mut config = self.common();
        // librdkafka stops fetching a partition whose prefetched records exceed
        // `queued.max.messages.kbytes` and, by default, looks again only a second later: a
        // consumer working through a backlog larger than that ran dry and idled for up to
        // `fetch.wait.max.ms` behind a long-poll of its other partitions. 10 ms keeps the queue
        // topped up at the cost of a cheap check. A value in `consumer` wins.
        config.set("fetch.queue.backoff.ms", "10");
        // A member that died holds its partitions until its session times out, and a
        // restarted service's `subscribe` waits for that: with librdkafka's 45 s it outwaited
        // `subscribe_timeout_ms` (30 s) and a service restarted after a crash failed to start.
        // 10 s (Kafka's default before 3.0) bounds that wait and moves a dead member's
        // partitions sooner; heartbeats come from librdkafka's own thread, so a long handler
        // does not end a session. A value in `consumer` wins.
        config.set("session.timeout.ms", "10000");
        for (key, value) in &self.consumer {
            config.set(key, &value.0);
        }
        config
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("enable.partition.eof", "false")
            .set("allow.auto.create.topics", "false");
        config
    }
}
