#!/usr/bin/env bash
# Make sure the services the tests use answer on this machine:
#   PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth, database "test")
#   Redis      on 127.0.0.1:6379
#   RabbitMQ   on 127.0.0.1:5672 (guest/guest; one pipeline test runs on it)
# A service that is not reachable is started; one that is not installed is installed from
# Debian's packages first (root or sudo needed). A service that cannot be had is reported
# here and again, by name, by the tests that need it.
set -uo pipefail

PG_PORT=${PG_PORT:-5432}
REDIS_PORT=${REDIS_PORT:-6379}
AMQP_PORT=${AMQP_PORT:-5672}
STATE_DIR=${MEMTASKS_SERVICES_DIR:-/tmp/memtasks-services}

say() { printf 'services: %s\n' "$*" >&2; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {
    for _ in $(seq 1 100); do port_open "$1" && return 0; sleep 0.1; done
    return 1
}

if [ "$(id -u)" -eq 0 ]; then SUDO=(); elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO=(sudo -n); else SUDO=(false); fi
as_root() { "${SUDO[@]}" "$@"; }

APT_UPDATED=0
apt_install() {
    if ! command -v apt-get >/dev/null 2>&1; then say "no apt-get here: install $* yourself"; return 1; fi
    if [ "$APT_UPDATED" -eq 0 ]; then as_root apt-get update -qq >/dev/null || return 1; APT_UPDATED=1; fi
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

ensure_redis() {
    if port_open "$REDIS_PORT"; then say "Redis answers on 127.0.0.1:$REDIS_PORT"; return 0; fi
    if ! command -v redis-server >/dev/null 2>&1; then
        say "installing Redis (Debian package redis-server)"
        apt_install redis-server || { say "MISSING: Redis could not be installed"; return 1; }
    fi
    mkdir -p "$STATE_DIR"
    redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" \
        --appendonly no --dir "$STATE_DIR" --logfile "$STATE_DIR/redis.log" >/dev/null
    if wait_port "$REDIS_PORT"; then say "started Redis on 127.0.0.1:$REDIS_PORT"; return 0; fi
    say "MISSING: Redis did not start (see $STATE_DIR/redis.log)"; return 1
}

ensure_rabbitmq() {
    if port_open "$AMQP_PORT"; then say "RabbitMQ answers on 127.0.0.1:$AMQP_PORT"; return 0; fi
    if ! command -v rabbitmq-server >/dev/null 2>&1; then
        say "installing RabbitMQ (Debian package rabbitmq-server)"
        apt_install rabbitmq-server || { say "MISSING: RabbitMQ could not be installed"; return 1; }
    fi
    as_root rabbitmq-server -detached >/dev/null 2>&1 || true
    for _ in $(seq 1 600); do port_open "$AMQP_PORT" && break; sleep 0.1; done
    if port_open "$AMQP_PORT"; then say "started RabbitMQ on 127.0.0.1:$AMQP_PORT"; return 0; fi
    say "MISSING: RabbitMQ did not start"; return 1
}

pg_version() { ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1; }

ensure_postgres() {
    if ! port_open "$PG_PORT"; then
        if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ -z "$(pg_version)" ]; then
            say "installing PostgreSQL (Debian package postgresql)"
            apt_install postgresql || { say "MISSING: PostgreSQL could not be installed"; return 1; }
        fi
        local ver; ver=$(pg_version)
        if ! as_root pg_lsclusters -h 2>/dev/null | grep -q "^$ver *main"; then
            as_root pg_createcluster "$ver" main >/dev/null || true
        fi
        as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main start 2>/dev/null || true
        wait_port "$PG_PORT" || { say "MISSING: PostgreSQL did not start"; return 1; }
        say "started PostgreSQL $ver on 127.0.0.1:$PG_PORT"
    else
        say "PostgreSQL answers on 127.0.0.1:$PG_PORT"
    fi
    if ! command -v psql >/dev/null 2>&1; then
        say "no psql client: cannot check the 'test' database; the tests will say if it is missing"
        return 0
    fi
    if ! psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -tAc 'select 1' >/dev/null 2>&1; then
        # A fresh Debian cluster asks for passwords on TCP: trust loopback, as the tests expect.
        local ver hba; ver=$(pg_version); hba="/etc/postgresql/$ver/main/pg_hba.conf"
        if [ -n "$ver" ] && as_root test -w "$hba"; then
            say "allowing trust authentication on loopback in $hba"
            as_root sed -i -E 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/' "$hba"
            as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main reload >/dev/null 2>&1 || true
            sleep 0.5
        fi
    fi
    if ! psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -tAc 'select 1' >/dev/null 2>&1; then
        say "MISSING: cannot log in to PostgreSQL as postgres on 127.0.0.1:$PG_PORT (trust auth expected)"
        return 1
    fi
    if [ "$(psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -tAc "select 1 from pg_database where datname='test'")" != "1" ]; then
        psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -qc 'create database test' && say "created database test"
    fi
}

ensure_initdb() {
    # The chaos tier crashes a private PostgreSQL cluster of its own: it needs initdb.
    if command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
        return 0
    fi
    say "installing initdb for the chaos tier's private cluster (Debian package postgresql)"
    apt_install postgresql || { say "MISSING: initdb could not be installed (the chaos tier will fail)"; return 1; }
}

ensure_faketime() {
    # The clock-skew test runs workers, a beat and a producer under libfaketime.
    if ls /usr/lib/*/faketime/libfaketimeMT.so.1 >/dev/null 2>&1; then return 0; fi
    say "installing libfaketime for the clock-skew test (Debian package faketime)"
    apt_install faketime || { say "MISSING: libfaketime could not be installed (the clock-skew test will fail)"; return 1; }
}

ensure_netns_tools() {
    # The partition test simulates hosts with network namespaces joined by socat relays.
    command -v ip >/dev/null 2>&1 || apt_install iproute2 || { say "MISSING: iproute2 (the partition test will fail)"; return 1; }
    command -v socat >/dev/null 2>&1 && return 0
    say "installing socat for the partition test (Debian package socat)"
    apt_install socat || { say "MISSING: socat could not be installed (the partition test will fail)"; return 1; }
}

ensure_chromium() {
    # The web console's browser tests drive Debian's headless Chromium through its chromedriver.
    if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then return 0; fi
    say "installing Chromium and its driver for the console's browser tests (Debian packages chromium, chromium-driver)"
    apt_install chromium chromium-driver || { say "MISSING: chromium could not be installed (the browser tests will fail)"; return 1; }
}

if [ "${1:-}" = "--install-redis" ]; then
    # `make run` starts its own Redis when none answers: it only needs the binary.
    command -v redis-server >/dev/null 2>&1 && exit 0
    say "installing Redis (Debian package redis-server)"
    apt_install redis-server || { say "MISSING: Redis could not be installed"; exit 1; }
    exit 0
fi

status=0
ensure_redis || status=1
ensure_postgres || status=1
ensure_rabbitmq || status=1
ensure_initdb || status=1
ensure_faketime || status=1
ensure_netns_tools || status=1
ensure_chromium || status=1
command -v systemd-analyze >/dev/null 2>&1 || apt_install systemd || { say "MISSING: systemd-analyze (the deploy tests will fail)"; status=1; }
if [ "$status" -ne 0 ]; then
    say "some services are missing; the tests that need them will fail and name them"
fi
exit 0
