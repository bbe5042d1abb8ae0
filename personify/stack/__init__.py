"""The embedded local stack: Apache Kafka (KRaft), Redis and Prometheus on loopback, no Docker."""
