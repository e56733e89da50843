#!/usr/bin/env bash
# Starts one Kafka node of deploy/compose.yaml with SASL: formats its storage on the first start
# with the `admin` user's SCRAM-SHA-512 credential (KIP-900: the only user that must exist before
# any client can sign in; kafka-users.sh adds the others over the protocol), writes the admin's
# client settings for the health check and the tools, then runs the image's own start script.
set -euo pipefail
: "${ADMIN_PASSWORD:?ADMIN_PASSWORD (AK_KAFKA_ADMIN_PASSWORD) is not set}"
: "${CLUSTER_ID:?}" "${KAFKA_LOG_DIRS:?}"

# The same KAFKA_* environment the image turns into server.properties, by the same rule
# (`_` → `.`, `__` → `_`, `___` → `-`, lower case): the storage tool checks the whole config.
props=/tmp/format.properties
: > "$props"
while IFS='=' read -r name value; do
  case "$name" in
    KAFKA_OPTS|KAFKA_HEAP_OPTS|KAFKA_JMX_OPTS|KAFKA_JVM_PERFORMANCE_OPTS|KAFKA_LOG4J_OPTS|KAFKA_GC_LOG_OPTS) continue ;;
  esac
  key=$(printf '%s' "${name#KAFKA_}" | sed -e 's/___/-/g' -e 's/__/@/g' -e 's/_/./g' -e 's/@/_/g' | tr '[:upper:]' '[:lower:]')
  printf '%s=%s\n' "$key" "$value" >> "$props"
done < <(env | grep '^KAFKA_')

/opt/kafka/bin/kafka-storage.sh format --ignore-formatted --cluster-id "$CLUSTER_ID" \
  --config "$props" --add-scram "SCRAM-SHA-512=[name=admin,password=${ADMIN_PASSWORD}]"
rm -f "$props"

umask 077
cat > /tmp/admin.properties <<PROPS
security.protocol=SASL_PLAINTEXT
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="${ADMIN_PASSWORD}";
PROPS
exec /etc/kafka/docker/run
