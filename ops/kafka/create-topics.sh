#!/usr/bin/env bash
# Create Personify's topics with explicit partition counts (docker-compose's kafka-init).
set -euo pipefail
topics=/opt/kafka/bin/kafka-topics.sh
create() {
  "$topics" --bootstrap-server "$BOOTSTRAP" --create --if-not-exists --topic "$1" \
    --partitions "$PARTITIONS" --replication-factor 1 "${@:2}"
}
for t in page-views-v1 signups-v1 billing-v1 marketing-spend-v1 attribution-credits-v2 dead-letters-v1 \
         personify-device-events-v2 personify-person-events-v2; do
  create "$t" --config retention.ms=-1
done
create profiles-v1 --config cleanup.policy=compact
