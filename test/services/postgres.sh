#!/usr/bin/env bash
# A throw-away PostgreSQL server (Debian's postgresql package) for tests and
# the benchmark, in its own folder, on loopback.
#
#   postgres.sh start DIR PORT     initdb + start; prints the connection URL
#   postgres.sh restart DIR        fast restart (drops every connection)
#   postgres.sh pause DIR          stop the server, keep the data (an outage)
#   postgres.sh resume DIR         start it again
#   postgres.sh stop DIR           immediate stop, delete DIR
set -euo pipefail

cmd=${1:?start, restart or stop}
dir=${2:?cluster folder}

bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$bin" ] || { echo "PostgreSQL server binaries not found (apt-get install postgresql)" >&2; exit 1; }

# initdb and postgres refuse to run as root.
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "$cmd" in
  start)
    port=${3:?port}
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres "$dir"
    as_pg "$bin/initdb" -D "$dir/data" -A trust -U postgres --no-sync -E UTF8 --locale=C.UTF-8 >/dev/null
    # fsync off: a test server that loses data on power loss is fine, and much faster.
    echo "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=400" > "$dir/options"
    as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 -o "$(cat "$dir/options")" start >/dev/null
    echo "postgres://postgres@127.0.0.1:$port/postgres"
    ;;
  restart)
    as_pg "$bin/pg_ctl" -D "$dir/data" -w -t 30 -m fast restart >/dev/null
    ;;
  pause)
    as_pg "$bin/pg_ctl" -D "$dir/data" -w -t 30 -m fast stop >/dev/null
    ;;
  resume)
    as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 -o "$(cat "$dir/options")" start >/dev/null
    ;;
  stop)
    [ -d "$dir/data" ] && as_pg "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$dir"
    ;;
  *)
    echo "unknown command $cmd" >&2
    exit 2
    ;;
esac
