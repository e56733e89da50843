#!/usr/bin/env bash
# The local stack: real Kafka + ZooKeeper, nx-27017 (MongoDB wire), Kannel with its fake SMSC,
# an SMTP sink and the five services, all on 127.0.0.1, all data under one folder.
#
#   stack.sh start    start what is not running yet, create topics, wait until all is ready
#   stack.sh stop     stop everything this data folder's PID files name, newest first
#   stack.sh status   one line per component
#   stack.sh env      `export AK_...=...` lines for tests and the bench to source
#
# Settings come from the environment (defaults in parentheses):
#   AK_DATA_DIR (.ak/run)  AK_ZOOKEEPER_PORT (2181)  AK_KAFKA_PORT (9092)  AK_MONGO_PORT (27017)
#   AK_KANNEL_ADMIN_PORT (13000)  AK_KANNEL_SMSBOX_PORT (13001)  AK_KANNEL_SENDSMS_PORT (13013)
#   AK_KANNEL_SMSC_PORT (10000)  AK_SMTP_PORT (2525)  AK_INTAKE_PORT (8001) … AK_REPORTING_PORT (8005)
#   AK_STACK_INFRA_ONLY=1     start no service (tests start their own)
#   AK_STACK_ALLOW_MISSING=1  skip a service whose package does not exist yet, instead of failing
#   AK_STACK_TIMEOUT (90)     seconds to wait for any one component
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/deploy/local"
CACHE="${AK_CACHE_DIR:-$ROOT/.ak/cache}"
PY="$ROOT/.venv/bin/python"
KAFKA_HOME="$CACHE/kafka_2.12-2.3.0"
ZK_CLIENT_JARS="$CACHE/zookeeper-client/usr/share/java"
KANNEL_BIN=/usr/sbin
FAKESMSC=/usr/lib/kannel/test/fakesmsc

# --- settings ------------------------------------------------------------------------------

DATA="$(realpath -m "${AK_DATA_DIR:-$ROOT/.ak/run}")"

ZOOKEEPER_PORT="${AK_ZOOKEEPER_PORT:-2181}"
KAFKA_PORT="${AK_KAFKA_PORT:-9092}"
MONGO_PORT="${AK_MONGO_PORT:-27017}"
KANNEL_ADMIN_PORT="${AK_KANNEL_ADMIN_PORT:-13000}"
KANNEL_SMSBOX_PORT="${AK_KANNEL_SMSBOX_PORT:-13001}"
KANNEL_SENDSMS_PORT="${AK_KANNEL_SENDSMS_PORT:-13013}"
KANNEL_SMSC_PORT="${AK_KANNEL_SMSC_PORT:-10000}"
KANNEL_ADMIN_PASSWORD="${AK_KANNEL_ADMIN_PASSWORD:-acikkapi-admin}"
SMTP_PORT="${AK_SMTP_PORT:-2525}"
SMS_USERNAME="${AK_SMS_USERNAME:-acikkapi}"
SMS_PASSWORD="${AK_SMS_PASSWORD:-acikkapi}"
TIMEOUT="${AK_STACK_TIMEOUT:-90}"

SERVICES=(intake routing tracking notification reporting)
declare -A SERVICE_PORT=(
    [intake]="${AK_INTAKE_PORT:-8001}"
    [routing]="${AK_ROUTING_PORT:-8002}"
    [tracking]="${AK_TRACKING_PORT:-8003}"
    [notification]="${AK_NOTIFICATION_PORT:-8004}"
    [reporting]="${AK_REPORTING_PORT:-8005}"
)

INFRA=(zookeeper kafka mongo bearerbox smsbox fakesmsc smtp)
# Port each component listens on (fakesmsc connects out: bearerbox owns its port).
declare -A PORT=(
    [zookeeper]=$ZOOKEEPER_PORT [kafka]=$KAFKA_PORT [mongo]=$MONGO_PORT
    [bearerbox]=$KANNEL_ADMIN_PORT [smsbox]=$KANNEL_SENDSMS_PORT [fakesmsc]=""
    [smtp]=$SMTP_PORT
)
# A string the process's command line must contain: a PID file is trusted (and its process
# killed) only while the PID still belongs to what this data folder's stack started, never to
# a recycled PID or to the other stack (`make run` and `make test` run side by side).
declare -A MARKER=(
    [zookeeper]="$DATA/conf/zookeeper.properties"
    [kafka]="$DATA/conf/server.properties"
    [mongo]="--data-dir $DATA/mongo"
    [bearerbox]="bearerbox -v 1 $DATA/conf/kannel.conf"
    [smsbox]="smsbox -v 2 $DATA/conf/kannel.conf"
    [fakesmsc]="fakesmsc -H 127.0.0.1 -r $KANNEL_SMSC_PORT "
    [smtp]="--maildir $DATA/mail"
)
for svc in "${SERVICES[@]}"; do
    PORT[$svc]=${SERVICE_PORT[$svc]}
    MARKER[$svc]="-m services.$svc"
done

# AK_MONGO_PER_SERVICE=1 (what `make run` uses): each service gets an nx-27017 process of its
# own, `mongo-<service>` on AK_MONGO_PORT+10+n. On two cores that drained ~20 % faster than
# one process for all (docs/performance.md); the shared `mongo` still runs for tools and tests.
# The choice is remembered in the data folder, so `stop`, `status` and `env` follow it.
if [[ -f $DATA/conf/mongo-per-service ]]; then
    MONGO_PER_SERVICE="${AK_MONGO_PER_SERVICE:-1}"
else
    MONGO_PER_SERVICE="${AK_MONGO_PER_SERVICE:-0}"
fi
OWN_MONGO=()
if [[ $MONGO_PER_SERVICE == 1 ]]; then
    n=0
    for svc in "${SERVICES[@]}"; do
        n=$((n + 1))
        OWN_MONGO+=("mongo-$svc")
        PORT[mongo-$svc]=$((MONGO_PORT + 10 + n))
        MARKER[mongo-$svc]="--data-dir $DATA/mongo-$svc "
    done
    INFRA+=("${OWN_MONGO[@]}")
fi

# What the services (and tests) read: services.common.settings.Settings, AK_ prefix.
export_settings() {
    export AK_DATA_DIR="$DATA"
    export AK_ZOOKEEPER_PORT="$ZOOKEEPER_PORT" AK_KAFKA_PORT="$KAFKA_PORT" AK_MONGO_PORT="$MONGO_PORT"
    export AK_KANNEL_ADMIN_PORT="$KANNEL_ADMIN_PORT" AK_KANNEL_SMSBOX_PORT="$KANNEL_SMSBOX_PORT"
    export AK_KANNEL_SENDSMS_PORT="$KANNEL_SENDSMS_PORT" AK_KANNEL_SMSC_PORT="$KANNEL_SMSC_PORT"
    export AK_KAFKA_BOOTSTRAP="127.0.0.1:$KAFKA_PORT"
    export AK_MONGO_URI="mongodb://127.0.0.1:$MONGO_PORT"
    local own name
    for own in "${OWN_MONGO[@]}"; do
        name=${own#mongo-}
        export "AK_${name^^}_MONGO_URI=mongodb://127.0.0.1:${PORT[$own]}"
    done
    export AK_SMS_GATEWAY_URL="http://127.0.0.1:$KANNEL_SENDSMS_PORT/cgi-bin/sendsms"
    export AK_SMS_USERNAME="$SMS_USERNAME" AK_SMS_PASSWORD="$SMS_PASSWORD"
    export AK_SMS_DLR_BASE_URL="http://127.0.0.1:${SERVICE_PORT[notification]}"
    export AK_SMTP_HOST=127.0.0.1 AK_SMTP_PORT="$SMTP_PORT"
    export AK_PUBLIC_TRACKING_URL="http://127.0.0.1:${SERVICE_PORT[tracking]}/takip"
    local svc
    for svc in "${SERVICES[@]}"; do
        export "AK_${svc^^}_PORT=${SERVICE_PORT[$svc]}"
    done
}
EXPORTED=(
    AK_DATA_DIR AK_ZOOKEEPER_PORT AK_KAFKA_PORT AK_MONGO_PORT AK_KANNEL_ADMIN_PORT
    AK_KANNEL_SMSBOX_PORT AK_KANNEL_SENDSMS_PORT AK_KANNEL_SMSC_PORT AK_KAFKA_BOOTSTRAP
    AK_MONGO_URI AK_SMS_GATEWAY_URL AK_SMS_USERNAME AK_SMS_PASSWORD AK_SMS_DLR_BASE_URL
    AK_SMTP_HOST AK_SMTP_PORT AK_PUBLIC_TRACKING_URL AK_INTAKE_PORT AK_ROUTING_PORT
    AK_TRACKING_PORT AK_NOTIFICATION_PORT AK_REPORTING_PORT
)
for own in "${OWN_MONGO[@]}"; do
    name=${own#mongo-}
    EXPORTED+=("AK_${name^^}_MONGO_URI")
done

# --- small helpers -------------------------------------------------------------------------

say() { printf '[stack] %s\n' "$*"; }
warn() { printf '[stack] warning: %s\n' "$*" >&2; }
die() { printf '[stack] ERROR: %s\n' "$*" >&2; exit 1; }

log_of() { printf '%s/logs/%s.log' "$DATA" "$1"; }
pid_file() { printf '%s/pids/%s.pid' "$DATA" "$1"; }

# Fails with the last lines of a component's log, which usually say why.
fail_with_log() {
    local name=$1 msg=$2 log
    log="$(log_of "$name")"
    [[ $name == fakesmsc ]] && log="$DATA/fakesmsc.out"
    {
        printf '[stack] ERROR: %s\n' "$msg"
        if [[ -s $log ]]; then
            printf -- '--- last lines of %s ---\n' "$log"
            tail -n 30 "$log"
            printf -- '---\n'
        fi
        printf "[stack] what did start keeps running; '%s stop' stops it\n" "$0"
    } >&2
    exit 1
}

# True when the component's own process listens on the port. A bare "port open" would also
# be true for whatever else listens there, and call a component ready that has just died.
listens() {
    local name=$1 port=$2 pid hex inode
    pid="$(running_pid "$name")" || return 1
    hex="$(printf ':%04X' "$port")"
    # Listening sockets (state 0A) on that port, IPv4 or v4-mapped IPv6 (Java), by inode...
    local inodes=()
    mapfile -t inodes < <(awk -v h="$hex" '$4 == "0A" && substr($2, length($2) - 4) == h { print $10 }' \
        /proc/net/tcp /proc/net/tcp6 2>/dev/null)
    for inode in "${inodes[@]}"; do
        # ...and whether one of them is among the process's open files.
        [[ -n "$(find "/proc/$pid/fd" -lname "socket:\[$inode\]" -print -quit 2>/dev/null)" ]] \
            && return 0
    done
    return 1
}

# GET on loopback with plain bash (no curl on a bare machine); prints the raw response.
http_get() {
    local port=$1 path=$2
    (
        exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
        printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1:%s\r\nConnection: close\r\n\r\n' \
            "$path" "$port" >&3
        local line
        while IFS= read -r -t 5 line <&3; do printf '%s\n' "$line"; done
        [[ -n $line ]] && printf '%s\n' "$line"
        exit 0
    ) 2>/dev/null
}

http_status() {
    local first
    first="$(http_get "$1" "$2" | head -n1)" || true
    first="${first#HTTP/* }"
    printf '%s' "${first:0:3}"
}

# The PID of a running component, or nothing. A zombie or a recycled PID does not count.
running_pid() {
    local file pid cmdline
    file="$(pid_file "$1")"
    [[ -f $file ]] || return 1
    pid="$(<"$file")"
    [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/cmdline ]] || return 1
    cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
    [[ $cmdline == *"${MARKER[$1]}"* ]] || return 1
    # A service's command line names no data folder: its environment does.
    if [[ -n ${SERVICE_PORT[$1]:-} ]]; then
        grep -qzxF "AK_DATA_DIR=$DATA" "/proc/$pid/environ" 2>/dev/null || return 1
    fi
    printf '%s' "$pid"
}

# Starts a command in its own session (so a terminal's Ctrl-C does not reach it), records
# its PID, and sends its output to `log`. Earlier logs are kept once, as <log>.1.
launch() {
    local name=$1 log=$2
    shift 2
    [[ -f $log && $name != fakesmsc ]] && mv -f "$log" "$log.1"
    setsid "$@" >>"$log" 2>&1 </dev/null &
    printf '%s\n' "$!" >"$(pid_file "$name")"
}

# Polls `check` (a command) until it succeeds; fails early if the process has died.
wait_for() {
    local name=$1 what=$2
    shift 2
    local deadline=$((SECONDS + TIMEOUT))
    until "$@"; do
        running_pid "$name" >/dev/null || fail_with_log "$name" "$name exited while starting"
        ((SECONDS < deadline)) || fail_with_log "$name" "$name: no $what after ${TIMEOUT}s"
        sleep 0.2
    done
}

# --- preflight -----------------------------------------------------------------------------

require_installed() {
    [[ -x $PY && -x $KAFKA_HOME/bin/kafka-server-start.sh && -f $ZK_CLIENT_JARS/zookeeper.jar \
        && -x $KANNEL_BIN/bearerbox && -x $FAKESMSC ]] \
        || die "the stack is not installed: run deploy/local/install.sh (make install)"
}

service_present() { [[ -f $ROOT/services/$1/__main__.py ]]; }

# Which services this start runs; missing ones are skipped only when allowed.
services_to_run() {
    [[ ${AK_STACK_INFRA_ONLY:-0} == 1 ]] && return 0
    local svc
    for svc in "${SERVICES[@]}"; do
        if service_present "$svc"; then
            printf '%s\n' "$svc"
        elif [[ ${AK_STACK_ALLOW_MISSING:-0} == 1 ]]; then
            warn "services/$svc/__main__.py does not exist yet: $svc not started"
        else
            die "services/$svc/__main__.py does not exist (AK_STACK_ALLOW_MISSING=1 skips it)"
        fi
    done
}

# Prints the ports among the arguments that cannot be bound on 127.0.0.1 (something listens
# there). Binding, unlike connecting, disturbs nobody and also catches a port that is bound
# but not yet listening.
unbindable_ports() {
    "$PY" - "$@" <<'PY'
import socket
import sys

for port in sys.argv[1:]:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do
        try:
            sock.bind(("127.0.0.1", int(port)))
        except OSError:
            print(port)
PY
}

# Two components given one port would pass every check below and fail halfway.
check_ports_distinct() {
    local name port
    local -A seen=()
    for name in "${!PORT[@]}" smsbox-port smsc-port; do
        case $name in
            smsbox-port) port=$KANNEL_SMSBOX_PORT ;;
            smsc-port) port=$KANNEL_SMSC_PORT ;;
            *) port=${PORT[$name]} ;;
        esac
        [[ -n $port ]] || continue
        [[ -z ${seen[$port]:-} ]] || die "port $port is given to both ${seen[$port]} and $name"
        seen[$port]=$name
    done
}

# Before anything starts: a port that something else holds would only fail later, halfway.
check_ports_free() {
    local name busy=() wanted=() port
    local -A owner=()
    for name in "$@"; do
        [[ -n ${PORT[$name]} ]] || continue
        running_pid "$name" >/dev/null && continue
        wanted+=("${PORT[$name]}")
        owner[${PORT[$name]}]=$name
    done
    # Kannel listens on more ports than the one it is known by.
    if ! running_pid bearerbox >/dev/null; then
        wanted+=("$KANNEL_SMSBOX_PORT" "$KANNEL_SMSC_PORT")
        owner[$KANNEL_SMSBOX_PORT]="kannel smsbox-port"
        owner[$KANNEL_SMSC_PORT]="kannel smsc port"
    fi
    ((${#wanted[@]})) || return 0
    for port in $(unbindable_ports "${wanted[@]}"); do
        busy+=("${owner[$port]}:$port")
    done
    ((${#busy[@]} == 0)) && return 0
    {
        printf '[stack] ERROR: port(s) already in use by another process: %s\n' "${busy[*]}"
        printf '[stack] choose other ports with AK_*_PORT, or stop what holds them\n'
        if command -v ss >/dev/null; then
            local entry
            for entry in "${busy[@]}"; do
                ss -Hltnp "sport = :${entry##*:}" 2>/dev/null || true
            done
        fi
    } >&2
    exit 1
}

# --- components ----------------------------------------------------------------------------

start_zookeeper() {
    mkdir -p "$DATA/zookeeper" "$DATA/logs/zookeeper"
    cat >"$DATA/conf/zookeeper.properties" <<EOF
dataDir=$DATA/zookeeper
clientPort=$ZOOKEEPER_PORT
clientPortAddress=127.0.0.1
maxClientCnxns=0
admin.enableServer=false
EOF
    # The bundled ZooKeeper 3.4 server runs fine on Java 17 (only its client does not).
    # An empty-but-set KAFKA_JMX_OPTS keeps the JVM from opening JMX ports on all interfaces.
    launch zookeeper "$(log_of zookeeper)" env LOG_DIR="$DATA/logs/zookeeper" \
        KAFKA_HEAP_OPTS="-Xmx256m -Xms256m" KAFKA_JMX_OPTS=" " \
        "$KAFKA_HOME/bin/zookeeper-server-start.sh" "$DATA/conf/zookeeper.properties"
}

kafka_started() {
    listens kafka "$KAFKA_PORT" && grep -q 'started (kafka.server.KafkaServer)' "$(log_of kafka)"
}

start_kafka() {
    mkdir -p "$DATA/kafka" "$DATA/logs/kafka"
    cat >"$DATA/conf/server.properties" <<EOF
broker.id=0
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
log.dirs=$DATA/kafka
zookeeper.connect=127.0.0.1:$ZOOKEEPER_PORT
zookeeper.connection.timeout.ms=15000
# One broker: every replication factor is 1.
default.replication.factor=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
# Fewer internal partitions than the default 50: the first consumer group and the first
# transaction come up in a fraction of the time, which a one-broker stack cannot use anyway.
offsets.topic.num.partitions=10
transaction.state.log.num.partitions=10
# Consumers join without the 3 s wait for more members that a local stack never has.
group.initial.rebalance.delay.ms=0
# As in production: a topic exists because it was created on purpose (create_topics.py).
auto.create.topics.enable=false
num.partitions=1
EOF
    # On Java 17 the ZooKeeper 3.4 client inside Kafka 2.3 cannot resolve addresses; Debian's
    # 3.8 client jars, first on the classpath, replace it.
    launch kafka "$(log_of kafka)" env LOG_DIR="$DATA/logs/kafka" \
        KAFKA_HEAP_OPTS="-Xmx512m -Xms512m" KAFKA_JMX_OPTS=" " \
        CLASSPATH="$ZK_CLIENT_JARS/zookeeper.jar:$ZK_CLIENT_JARS/zookeeper-jute.jar" \
        "$KAFKA_HOME/bin/kafka-server-start.sh" "$DATA/conf/server.properties"
}

start_mongo() {
    mkdir -p "$DATA/mongo"
    # --data-dir: one SQLite file per logical database, so each service really owns its
    # database (with --db every database shares one set of tables) and writers of different
    # services do not wait on one file lock.
    launch mongo "$(log_of mongo)" "$ROOT/.venv/bin/nx-27017" --data-dir "$DATA/mongo" \
        --host 127.0.0.1 -p "$MONGO_PORT" --log-file "$(log_of mongo)" \
        --pid-file "$DATA/mongo/nx-27017.pid"
}

# A service's own nx-27017 (AK_MONGO_PER_SERVICE=1); $1 is `mongo-<service>`.
start_own_mongo() {
    local name=$1 dir="$DATA/$1"
    mkdir -p "$dir"
    # The trailing space of the marker: `--data-dir …/mongo-intake ` is not a prefix of another.
    # At its service's CPU priority: a database works for its service, not ahead of intake.
    launch "$name" "$(log_of "$name")" nice -n "${NICENESS[${name#mongo-}]:-0}" \
        "$ROOT/.venv/bin/nx-27017" --data-dir "$dir" \
        --host 127.0.0.1 -p "${PORT[$name]}" --log-file "$(log_of "$name")" \
        --pid-file "$dir/nx-27017.pid"
}

render_kannel_conf() {
    local conf="$DATA/conf/kannel.conf"
    sed -e "s|@KANNEL_ADMIN_PORT@|$KANNEL_ADMIN_PORT|g" \
        -e "s|@KANNEL_ADMIN_PASSWORD@|$KANNEL_ADMIN_PASSWORD|g" \
        -e "s|@KANNEL_SMSBOX_PORT@|$KANNEL_SMSBOX_PORT|g" \
        -e "s|@KANNEL_SENDSMS_PORT@|$KANNEL_SENDSMS_PORT|g" \
        -e "s|@KANNEL_SMSC_PORT@|$KANNEL_SMSC_PORT|g" \
        -e "s|@SMS_USERNAME@|$SMS_USERNAME|g" \
        -e "s|@SMS_PASSWORD@|$SMS_PASSWORD|g" \
        -e "s|@DATA_DIR@|$DATA|g" \
        "$HERE/kannel.conf.template" >"$conf"
    if grep -q '@[A-Z_]*@' "$conf"; then
        die "unfilled placeholder in $conf: $(grep -o '@[A-Z_]*@' "$conf" | head -n1)"
    fi
}

kannel_status() { http_get "$KANNEL_ADMIN_PORT" "/status.txt?password=$KANNEL_ADMIN_PASSWORD"; }
# The fake SMSC's port is not probed by connecting: bearerbox would take the probe for the
# fakesmsc client. Once status.txt lists the SMSC, its listening socket exists.
bearerbox_ready() {
    listens bearerbox "$KANNEL_ADMIN_PORT" && listens bearerbox "$KANNEL_SMSBOX_PORT" \
        && grep -q "FAKE:$KANNEL_SMSC_PORT " <<<"$(kannel_status)"
}
smsbox_ready() {
    listens smsbox "$KANNEL_SENDSMS_PORT" && grep -q 'smsbox:.*on-line' <<<"$(kannel_status)"
}
fakesmsc_ready() { grep -q "FAKE:$KANNEL_SMSC_PORT (online" <<<"$(kannel_status)"; }

# bearerbox and smsbox log to the console, which `launch` writes to logs/<box>.log. smsbox at
# -v 2 (warnings and up): at info it logs every recipient number and message text (KVKK).
start_bearerbox() { launch bearerbox "$(log_of bearerbox)" "$KANNEL_BIN/bearerbox" -v 1 "$DATA/conf/kannel.conf"; }
start_smsbox() { launch smsbox "$(log_of smsbox)" "$KANNEL_BIN/smsbox" -v 2 "$DATA/conf/kannel.conf"; }

start_fakesmsc() {
    # -m 0: it generates no incoming SMS of its own; it only prints what Kannel sends it
    # ("Got message N: <from to coding text>", on its log output) into fakesmsc.out.
    launch fakesmsc "$DATA/fakesmsc.out" "$FAKESMSC" -H 127.0.0.1 -r "$KANNEL_SMSC_PORT" \
        -i 1 -m 0 "0 0 text unused"
}

start_smtp() {
    launch smtp "$(log_of smtp)" "$PY" "$HERE/smtp_sink.py" --host 127.0.0.1 \
        --port "$SMTP_PORT" --maildir "$DATA/mail"
}

# On one small machine the five services share two cores. Intake and routing are the path a
# citizen waits on (the number, the institution's queue); notification, tracking and reporting
# run a little behind under load and catch up, so they yield the CPU first. In production each
# service has its own replicas and none of this applies.
declare -A NICENESS=([intake]=0 [routing]=0 [tracking]=5 [notification]=5 [reporting]=10)

start_service() {
    local workers=1
    # Intake takes the bursts: AK_INTAKE_WORKERS processes share its port.
    [[ $1 == intake ]] && workers=${AK_INTAKE_WORKERS:-2}
    # AK_PORT would put every service on one port; each takes its own AK_<NAME>_PORT.
    launch "$1" "$(log_of "$1")" nice -n "${NICENESS[$1]:-0}" \
        env -u AK_PORT AK_HOST=127.0.0.1 AK_WORKERS="$workers" "$PY" -m "services.$1"
}

create_topics() {
    say "creating topics"
    "$PY" "$HERE/create_topics.py" --bootstrap "$AK_KAFKA_BOOTSTRAP" --timeout "$TIMEOUT" \
        || fail_with_log kafka "topic creation failed"
}

# Starts one infrastructure component unless it already runs, then waits until it is ready.
bring_up() {
    local name=$1 what=$2 check=$3 t0=$SECONDS
    if running_pid "$name" >/dev/null; then
        say "$name: already running (pid $(running_pid "$name"))"
    else
        "start_$name"
    fi
    wait_for "$name" "$what" "$check"
    say "$name: ready ($what) in $((SECONDS - t0)) s"
}

zookeeper_ready() { listens zookeeper "$ZOOKEEPER_PORT"; }
mongo_ready() { listens mongo "$MONGO_PORT"; }
smtp_ready() { listens smtp "$SMTP_PORT"; }

wait_for_services() {
    local deadline=$((SECONDS + TIMEOUT)) waiting svc last_report=-10
    while :; do
        waiting=()
        for svc in "$@"; do
            running_pid "$svc" >/dev/null || fail_with_log "$svc" "$svc exited while starting"
            if ! listens "$svc" "${SERVICE_PORT[$svc]}" \
                || [[ "$(http_status "${SERVICE_PORT[$svc]}" /readyz)" != 200 ]]; then
                waiting+=("$svc")
            fi
        done
        ((${#waiting[@]} == 0)) && return 0
        if ((SECONDS >= deadline)); then
            fail_with_log "${waiting[0]}" "/readyz not 200 after ${TIMEOUT}s: ${waiting[*]}"
        fi
        if ((SECONDS - last_report >= 3)); then
            say "waiting for /readyz: ${waiting[*]}"
            last_report=$SECONDS
        fi
        sleep 0.3
    done
}

# --- commands ------------------------------------------------------------------------------

cmd_start() {
    require_installed
    local t0=$SECONDS svc services
    services="$(services_to_run)" || exit 1
    # shellcheck disable=SC2206  # service names have no spaces
    services=($services)
    mkdir -p "$DATA/conf" "$DATA/logs" "$DATA/pids"
    if [[ $MONGO_PER_SERVICE == 1 ]]; then
        touch "$DATA/conf/mongo-per-service"
    else
        rm -f "$DATA/conf/mongo-per-service"
    fi
    export_settings
    check_ports_distinct
    check_ports_free "${INFRA[@]}" "${services[@]}"
    say "data in $DATA"

    bring_up zookeeper "port $ZOOKEEPER_PORT" zookeeper_ready
    bring_up kafka "broker started on $KAFKA_PORT" kafka_started
    bring_up mongo "port $MONGO_PORT" mongo_ready
    local own
    for own in "${OWN_MONGO[@]}"; do
        if running_pid "$own" >/dev/null; then
            say "$own: already running (pid $(running_pid "$own"))"
        else
            start_own_mongo "$own"
        fi
        wait_for "$own" "port ${PORT[$own]}" listens "$own" "${PORT[$own]}"
        say "$own: ready (port ${PORT[$own]})"
    done
    running_pid bearerbox >/dev/null || render_kannel_conf
    bring_up bearerbox "admin port $KANNEL_ADMIN_PORT" bearerbox_ready
    bring_up smsbox "sendsms port $KANNEL_SENDSMS_PORT" smsbox_ready
    bring_up fakesmsc "SMSC online" fakesmsc_ready
    bring_up smtp "port $SMTP_PORT" smtp_ready
    create_topics

    if ((${#services[@]})); then
        for svc in "${services[@]}"; do
            if running_pid "$svc" >/dev/null; then
                say "$svc: already running (pid $(running_pid "$svc"))"
            else
                start_service "$svc"
            fi
        done
        wait_for_services "${services[@]}"
        say "services ready: ${services[*]}"
    fi
    say "stack up in $((SECONDS - t0)) s"
}

# TERM, a grace period, then KILL; only ever a PID this data folder's stack started.
# Several names are signalled together and then awaited, so the five services stop in parallel.
stop_components() {
    local grace=$1 name pid
    shift
    local -A pids=()
    for name in "$@"; do
        if pid="$(running_pid "$name")"; then
            kill -TERM "$pid" 2>/dev/null || true
            pids[$name]=$pid
        fi
    done
    local deadline=$((SECONDS + grace))
    for name in "$@"; do
        [[ -n ${pids[$name]:-} ]] || { rm -f "$(pid_file "$name")"; continue; }
        while running_pid "$name" >/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
        if running_pid "$name" >/dev/null; then
            warn "$name (pid ${pids[$name]}) did not stop in ${grace}s: KILL"
            kill -KILL "${pids[$name]}" 2>/dev/null || true
            while running_pid "$name" >/dev/null; do sleep 0.1; done
        fi
        rm -f "$(pid_file "$name")"
        say "$name: stopped"
    done
}

# Newest first: services before what they use, Kafka before ZooKeeper (a broker's
# controlled shutdown needs ZooKeeper), Kannel's boxes before bearerbox.
cmd_stop() {
    stop_components 20 "${SERVICES[@]}"
    stop_components 10 smtp fakesmsc
    stop_components 20 smsbox
    stop_components 20 bearerbox
    stop_components 20 mongo "${OWN_MONGO[@]}"
    stop_components 60 kafka
    stop_components 20 zookeeper
    rm -f "$DATA"/mongo*/nx-27017.pid
    say "stopped (data kept in $DATA)"
}

cmd_status() {
    local name pid all_up=0 detail
    for name in "${INFRA[@]}" "${SERVICES[@]}"; do
        detail=""
        if [[ -n ${SERVICE_PORT[$name]:-} ]]; then
            detail=" /readyz $(http_status "${SERVICE_PORT[$name]}" /readyz || true)"
        fi
        if pid="$(running_pid "$name")"; then
            printf '%-18s running  pid %-7s port %-6s%s\n' "$name" "$pid" "${PORT[$name]:--}" "$detail"
        else
            printf '%-18s stopped  %-11s port %s\n' "$name" "" "${PORT[$name]:--}"
            all_up=3
        fi
    done
    printf 'data: %s\n' "$DATA"
    return "$all_up"
}

cmd_env() {
    export_settings
    local name
    for name in "${EXPORTED[@]}"; do
        printf 'export %s=%q\n' "$name" "${!name}"
    done
}

main() {
    # Services run from the repository root, where `services` is a package.
    cd "$ROOT"
    case "${1:-}" in
        start) cmd_start ;;
        stop) cmd_stop ;;
        status) cmd_status ;;
        env) cmd_env ;;
        *)
            printf 'usage: %s start|stop|status|env\n' "$0" >&2
            exit 2
            ;;
    esac
}

main "$@"
