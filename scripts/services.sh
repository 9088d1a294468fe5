#!/usr/bin/env bash
# Provisions throwaway PostgreSQL and MariaDB servers for the test suite, on loopback, in a temporary
# directory, and exports their URLs:
#   BACKFILL_TEST_PG_URL     postgres://backfill:backfill@127.0.0.1:<port>/backfill
#   BACKFILL_TEST_MYSQL_URL  mysql://backfill:backfill@127.0.0.1:<port>/backfill
#   BACKFILL_TEST_KAFKA_BROKERS  127.0.0.1:<port> (a Kafka-protocol broker, scripts/kafka-broker.sh)
#   BACKFILL_TEST_PYICEBERG  <venv>/bin/python with PyIceberg, the independent reader of Iceberg tables
#   BACKFILL_TEST_PG_RESTART, BACKFILL_TEST_MYSQL_RESTART  commands that restart a server abruptly
# Installs Debian's packages when the server binaries are missing. Source it (`. scripts/services.sh`)
# and call `services_start`; `services_stop` (also run on EXIT) stops the servers and removes the data.
# A URL already set in the environment is used as it is and nothing is started for it.

BACKFILL_SERVICES_DIR="${BACKFILL_SERVICES_DIR:-}"

_svc_log() { printf '[services] %s\n' "$*" >&2; }

_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

_apt_install() {
  if ! command -v apt-get >/dev/null 2>&1; then
    _svc_log "apt-get not available; cannot install $*"
    return 1
  fi
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  _svc_log "installing $* from Debian's packages"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "$@" >/dev/null 2>&1 || {
    $sudo apt-get update >/dev/null 2>&1 &&
      DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "$@" >/dev/null 2>&1
  }
}

_pg_bindir() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && { echo "$d"; return 0; }
  done
  command -v initdb >/dev/null 2>&1 && { dirname "$(command -v initdb)"; return 0; }
  return 1
}

_start_pg() {
  local bindir
  bindir="$(_pg_bindir)" || { _apt_install postgresql && bindir="$(_pg_bindir)"; } || return 1
  local dir="$BACKFILL_SERVICES_DIR/pg" port
  port="$(_free_port)"
  mkdir -p "$dir"
  local as=()
  if [ "$(id -u)" -eq 0 ]; then
    chown -R postgres "$dir"
    as=(runuser -u postgres --)
  fi
  "${as[@]}" "$bindir/initdb" -D "$dir/data" -U backfill --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1 || {
    cat "$dir/initdb.log" >&2; return 1; }
  "${as[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
    start >/dev/null || { cat "$dir/server.log" >&2; return 1; }
  "${as[@]}" "$bindir/createdb" -h 127.0.0.1 -p "$port" -U backfill backfill || return 1
  export BACKFILL_TEST_PG_URL="postgres://backfill:backfill@127.0.0.1:$port/backfill"
  _BACKFILL_PG_STOP="${as[*]} $bindir/pg_ctl -D $dir/data -m immediate stop"
  # An immediate restart (no shutdown checkpoint: crash recovery on start), for scripts/chaos.sh.
  export BACKFILL_TEST_PG_RESTART="${as[*]} $bindir/pg_ctl -D $dir/data -l $dir/server.log -w -t 60 -m immediate restart"
  _svc_log "PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') on 127.0.0.1:$port"
}

_start_mariadb() {
  command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || _apt_install mariadb-server || return 1
  local server=/usr/sbin/mariadbd
  [ -x "$server" ] || server="$(command -v mariadbd)"
  local dir="$BACKFILL_SERVICES_DIR/mariadb" port
  port="$(_free_port)"
  mkdir -p "$dir"
  local user
  user="$(id -un)"
  mariadb-install-db --no-defaults --datadir="$dir/data" --user="$user" \
    --auth-root-authentication-method=socket >"$dir/install.log" 2>&1 || { cat "$dir/install.log" >&2; return 1; }
  # start.sh starts the server and waits until it answers; restart.sh kills it (-9) and starts it
  # again (scripts/chaos.sh restarts the server under running workers).
  cat >"$dir/start.sh" <<START
"$server" --no-defaults --datadir="$dir/data" --socket="$dir/sock" --port="$port" --bind-address=127.0.0.1 \\
  --user="$user" --pid-file="$dir/pid" --innodb-flush-log-at-trx-commit=0 --innodb-doublewrite=0 \\
  --max-connections=300 --log-error="$dir/server.log" >/dev/null 2>&1 &
for i in \$(seq 1 120); do
  mariadb --no-defaults --socket="$dir/sock" -u root -e 'SELECT 1' >/dev/null 2>&1 && exit 0
  sleep 0.5
done
exit 1
START
  cat >"$dir/restart.sh" <<RESTART
pid="\$(cat "$dir/pid" 2>/dev/null)"
[ -n "\$pid" ] && kill -9 "\$pid" 2>/dev/null
while [ -n "\$pid" ] && kill -0 "\$pid" 2>/dev/null; do sleep 0.1; done
rm -f "$dir/sock" "$dir/pid"
bash "$dir/start.sh"
RESTART
  bash "$dir/start.sh" || { cat "$dir/server.log" >&2; return 1; }
  mariadb --no-defaults --socket="$dir/sock" -u root -e "
    CREATE DATABASE backfill;
    CREATE USER 'backfill'@'127.0.0.1' IDENTIFIED BY 'backfill';
    CREATE USER 'backfill'@'localhost' IDENTIFIED BY 'backfill';
    GRANT ALL ON *.* TO 'backfill'@'127.0.0.1';
    GRANT ALL ON *.* TO 'backfill'@'localhost';" || { cat "$dir/server.log" >&2; return 1; }
  export BACKFILL_TEST_MYSQL_URL="mysql://backfill:backfill@127.0.0.1:$port/backfill"
  export BACKFILL_TEST_MYSQL_RESTART="bash $dir/restart.sh"
  _BACKFILL_MARIADB_STOP="mariadb-admin --no-defaults --socket=$dir/sock -u root shutdown"
  _svc_log "MariaDB $("$server" --version | awk '{print $3}') on 127.0.0.1:$port"
}

# What backfill-kafka's build needs on a fresh Debian: rdkafka compiles its bundled librdkafka with
# the C toolchain and links the system zlib.
services_build_prereqs() {
  local missing=()
  command -v gcc >/dev/null 2>&1 || missing+=(gcc)
  command -v make >/dev/null 2>&1 || missing+=(make)
  command -v perl >/dev/null 2>&1 || missing+=(perl)
  command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
  [ -f /usr/include/zlib.h ] || missing+=(zlib1g-dev)
  [ "${#missing[@]}" -eq 0 ] || _apt_install "${missing[@]}"
}

_start_kafka() {
  # kcat is the independent Kafka reader/writer of the tests; librdkafka's bundled build needs a C
  # toolchain, make and zlib's headers.
  command -v kcat >/dev/null 2>&1 || _apt_install kcat || return 1
  local dir="$BACKFILL_SERVICES_DIR/kafka" port line
  port="$(_free_port)"
  line="$(bash "$(dirname "${BASH_SOURCE[0]}")/kafka-broker.sh" "$port" "$dir")" || return 1
  export BACKFILL_TEST_KAFKA_BROKERS="127.0.0.1:$port"
  _BACKFILL_KAFKA_STOP="kill $(cat "$dir/broker.pid")"
  _svc_log "Kafka-protocol broker (noida-db) on 127.0.0.1:$port ($line)"
}

# PyIceberg, the independent reader of the Iceberg tables the Rust code writes, in a virtual
# environment kept between runs at ${BACKFILL_PYICEBERG_VENV:-$HOME/.cache/backfill/pyiceberg-venv}.
# Exports BACKFILL_TEST_PYICEBERG (the venv's python); returns non-zero when it cannot be installed.
BACKFILL_PYICEBERG_SPEC="pyiceberg[sql-sqlite,pyarrow]==0.12.0"
services_pyiceberg() {
  local venv="${BACKFILL_PYICEBERG_VENV:-$HOME/.cache/backfill/pyiceberg-venv}"
  local py="$venv/bin/python"
  if [ -x "$py" ] && "$py" -c 'import pyiceberg, pyarrow, sqlalchemy, sys; sys.exit(pyiceberg.__version__ != "0.12.0")' >/dev/null 2>&1; then
    export BACKFILL_TEST_PYICEBERG="$py"
    _svc_log "PyIceberg 0.12.0 in $venv"
    return 0
  fi
  command -v python3 >/dev/null 2>&1 || _apt_install python3 || { _svc_log "no python3"; return 1; }
  if [ ! -x "$py" ] || ! "$py" -m pip --version >/dev/null 2>&1; then
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv" >/dev/null 2>&1 || {
      rm -rf "$venv"
      _apt_install python3-venv && python3 -m venv "$venv" >/dev/null 2>&1
    } || { _svc_log "python3 -m venv $venv failed"; return 1; }
  fi
  _svc_log "installing $BACKFILL_PYICEBERG_SPEC into $venv"
  "$py" -m pip install --quiet --disable-pip-version-check "$BACKFILL_PYICEBERG_SPEC" >"$venv/pip.log" 2>&1 || {
    tail -n 20 "$venv/pip.log" >&2
    _svc_log "pip install $BACKFILL_PYICEBERG_SPEC failed"
    return 1
  }
  "$py" -c 'import pyiceberg.catalog.sql, pyarrow' >/dev/null 2>&1 || { _svc_log "PyIceberg does not import"; return 1; }
  export BACKFILL_TEST_PYICEBERG="$py"
  _svc_log "PyIceberg 0.12.0 in $venv"
}

services_start() {
  if [ -z "$BACKFILL_SERVICES_DIR" ]; then
    BACKFILL_SERVICES_DIR="$(mktemp -d /tmp/backfill-services.XXXXXX)"
    chmod 755 "$BACKFILL_SERVICES_DIR"
  fi
  trap services_stop EXIT
  # The sqlite3 shell is the independent reader of SQLite output in the tests.
  command -v sqlite3 >/dev/null 2>&1 || _apt_install sqlite3 || _svc_log "the sqlite3 shell could not be installed"
  if [ -z "${BACKFILL_TEST_PG_URL:-}" ]; then
    _start_pg || _svc_log "PostgreSQL could not be started"
  fi
  if [ -z "${BACKFILL_TEST_MYSQL_URL:-}" ]; then
    _start_mariadb || _svc_log "MariaDB could not be started"
  fi
  if [ -z "${BACKFILL_TEST_KAFKA_BROKERS:-}" ]; then
    _start_kafka || _svc_log "the Kafka broker could not be started"
  fi
  if [ -z "${BACKFILL_TEST_PYICEBERG:-}" ]; then
    services_pyiceberg || _svc_log "PyIceberg could not be installed"
  fi
}

services_stop() {
  [ -n "${_BACKFILL_PG_STOP:-}" ] && { eval "$_BACKFILL_PG_STOP" >/dev/null 2>&1 || true; }
  [ -n "${_BACKFILL_MARIADB_STOP:-}" ] && { eval "$_BACKFILL_MARIADB_STOP" >/dev/null 2>&1 || true; }
  [ -n "${_BACKFILL_KAFKA_STOP:-}" ] && { eval "$_BACKFILL_KAFKA_STOP" >/dev/null 2>&1 || true; }
  _BACKFILL_KAFKA_STOP=""
  _BACKFILL_PG_STOP=""
  _BACKFILL_MARIADB_STOP=""
  if [ -n "$BACKFILL_SERVICES_DIR" ] && [ -d "$BACKFILL_SERVICES_DIR" ]; then
    rm -rf "$BACKFILL_SERVICES_DIR"
  fi
}
