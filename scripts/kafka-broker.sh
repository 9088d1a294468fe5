#!/usr/bin/env bash
# Installs (from PyPI, pinned) and starts a loopback-only Kafka-protocol broker for the tests:
# noida-db 0.2.3, a single-binary reimplementation of the Kafka protocol (not Apache Kafka). It keeps
# data in memory, ignores fetch size limits, filters aborted transactions on the server and creates
# auto-created topics with one partition, so tests create their topics through the admin API and
# assert what also holds on real Kafka.
# Usage: scripts/kafka-broker.sh PORT WORKDIR
#   prints "BROKER=127.0.0.1:PORT PID=<pid>" once the broker answers an ApiVersions request.
set -euo pipefail
PORT="${1:?port}"
WORK="${2:?workdir}"
VERSION="0.2.3"
mkdir -p "$WORK"
BIN="$WORK/pkg/noida_db/noida-db"
if [ ! -x "$BIN" ]; then
  PIP_ROOT_USER_ACTION=ignore python3 -m pip install -q --disable-pip-version-check --no-deps \
    --target "$WORK/pkg" "noida-db==${VERSION}"
  chmod +x "$BIN"
fi
nohup "$BIN" start --host 127.0.0.1 --only kafka --kafka-port "$PORT" --data-dir "$WORK/data" \
  >"$WORK/broker.log" 2>&1 &
PID=$!
echo "$PID" >"$WORK/broker.pid"
for _ in $(seq 1 150); do
  if python3 - "$PORT" <<'PY' 2>/dev/null
import socket, struct, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1)
req = struct.pack(">hhih", 18, 0, 1, 5) + b"ready"  # ApiVersions v0, correlation id 1, client "ready"
s.sendall(struct.pack(">i", len(req)) + req)
assert struct.unpack(">i", s.recv(4))[0] > 6
PY
  then
    echo "BROKER=127.0.0.1:${PORT} PID=${PID}"
    exit 0
  fi
  kill -0 "$PID" 2>/dev/null || { echo "broker exited:" >&2; cat "$WORK/broker.log" >&2; exit 1; }
  sleep 0.1
done
echo "broker not ready after 15 s" >&2; cat "$WORK/broker.log" >&2; kill "$PID" || true; exit 1
