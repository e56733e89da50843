#!/usr/bin/env bash
# Gives each service and the channel adapters their SCRAM-SHA-512 credential on the compose
# cluster, as `admin`, at every start (idempotent: an unchanged password is set again).
# The passwords come in as PASSWORD_<user>; ACLs follow in deploy/kafka_setup.py.
set -euo pipefail
: "${ADMIN_PASSWORD:?ADMIN_PASSWORD (AK_KAFKA_ADMIN_PASSWORD) is not set}"
umask 077
cat > /tmp/admin.properties <<PROPS
security.protocol=SASL_PLAINTEXT
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="${ADMIN_PASSWORD}";
PROPS
for user in intake routing tracking notification reporting adapter; do
  var="PASSWORD_${user}"
  password="${!var:-}"
  if [ "${#password}" -lt 24 ]; then
    echo "the Kafka password of '$user' is empty or shorter than 24 characters" >&2
    exit 2
  fi
  /opt/kafka/bin/kafka-configs.sh --bootstrap-server "$BOOTSTRAP" \
    --command-config /tmp/admin.properties --alter --entity-type users --entity-name "$user" \
    --add-config "SCRAM-SHA-512=[password=${password}]" >/dev/null
  echo "user $user: SCRAM-SHA-512 credential set"
done
