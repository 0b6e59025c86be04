#!/usr/bin/env bash
# A throw-away OpenStack Swift (one account, container and object server, one
# proxy with the s3api middleware, memcached) giving a second real S3
# implementation on loopback, for tests. Everything lives under DIR; the
# daemons are stopped by their pid files and DIR is deleted by `stop`.
#
#   swift-cluster.sh start DIR PROXY_PORT ACCOUNT_PORT CONTAINER_PORT OBJECT_PORT MEMCACHED_PORT
#   swift-cluster.sh stop DIR
#
# S3 credentials: access key "test:tester", secret "testing", path-style.
# Needs Debian's swift swift-proxy swift-account swift-container swift-object
# memcached packages.
set -euo pipefail

cmd=${1:?start or stop}
dir=${2:?cluster folder}

stop_cluster() {
  for pidfile in "$dir"/run/*.pid; do
    [ -e "$pidfile" ] || continue
    pid=$(cat "$pidfile" 2>/dev/null || true)
    # Each daemon leads its own session (setsid): signal the whole group.
    [ -n "$pid" ] && kill -TERM -- "-$pid" 2>/dev/null || true
  done
  for _ in $(seq 1 50); do
    alive=0
    for pidfile in "$dir"/run/*.pid; do
      [ -e "$pidfile" ] || continue
      pid=$(cat "$pidfile" 2>/dev/null || true)
      [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && alive=1
    done
    [ $alive -eq 0 ] && break
    sleep 0.1
  done
  for pidfile in "$dir"/run/*.pid; do
    [ -e "$pidfile" ] || continue
    pid=$(cat "$pidfile" 2>/dev/null || true)
    [ -n "$pid" ] && kill -KILL -- "-$pid" 2>/dev/null || true
  done
  rm -rf "$dir"
}

if [ "$cmd" = stop ]; then
  stop_cluster
  exit 0
fi
[ "$cmd" = start ] || { echo "unknown command $cmd" >&2; exit 2; }

proxy_port=${3:?proxy port}
account_port=${4:?account port}
container_port=${5:?container port}
object_port=${6:?object port}
memcached_port=${7:?memcached port}
user=$(id -un)

mkdir -p "$dir"/{run,log,devices/d1}

cat > "$dir/swift.conf" <<CONF
[swift-hash]
swift_hash_path_suffix = s3dedup-test
[storage-policy:0]
name = Policy-0
default = yes
CONF

# One ring per server type, one device each, one replica.
for type in account container object; do
  port_var="${type}_port"
  swift-ring-builder "$dir/$type.builder" create 8 1 1 >/dev/null
  swift-ring-builder "$dir/$type.builder" add "r1z1-127.0.0.1:${!port_var}/d1" 100 >/dev/null
  swift-ring-builder "$dir/$type.builder" rebalance >/dev/null
done

common() {
  cat <<CONF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $1
workers = 0
user = $user
swift_dir = $dir
devices = $dir/devices
mount_check = false
disable_fallocate = true
log_level = WARNING
CONF
}

for type in account container object; do
  port_var="${type}_port"
  {
    common "${!port_var}"
    printf '[pipeline:main]\npipeline = %s-server\n[app:%s-server]\nuse = egg:swift#%s\n' "$type" "$type" "$type"
    printf '[%s-replicator]\n[%s-auditor]\n' "$type" "$type"
  } > "$dir/$type-server.conf"
done

{
  common "$proxy_port"
  cat <<CONF
[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats s3api tempauth copy slo dlo proxy-logging proxy-server
[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true
[filter:catch_errors]
use = egg:swift#catch_errors
[filter:gatekeeper]
use = egg:swift#gatekeeper
[filter:healthcheck]
use = egg:swift#healthcheck
[filter:proxy-logging]
use = egg:swift#proxy_logging
[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:$memcached_port
[filter:listing_formats]
use = egg:swift#listing_formats
[filter:s3api]
use = egg:swift#s3api
location = us-east-1
[filter:tempauth]
use = egg:swift#tempauth
user_test_tester = testing .admin
[filter:copy]
use = egg:swift#copy
[filter:slo]
use = egg:swift#slo
[filter:dlo]
use = egg:swift#dlo
CONF
} > "$dir/proxy-server.conf"

# Daemons in sessions of their own, so `stop` can end each with its children.
daemon() {
  local name=$1
  shift
  setsid "$@" > "$dir/log/$name.log" 2>&1 < /dev/null &
  echo $! > "$dir/run/$name.pid"
}

daemon memcached memcached -u "$user" -l 127.0.0.1 -p "$memcached_port" -U 0 -m 64
daemon account swift-account-server "$dir/account-server.conf"
daemon container swift-container-server "$dir/container-server.conf"
daemon object swift-object-server "$dir/object-server.conf"
daemon proxy swift-proxy-server "$dir/proxy-server.conf"

# The proxy answers GET /healthcheck with 200 once it serves (no curl on a bare machine).
healthy() {
  local status
  # timeout: a port that accepts and never answers must not hang the start.
  status=$(timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$proxy_port &&
    printf 'GET /healthcheck HTTP/1.0\\r\\n\\r\\n' >&3 && head -c 12 <&3" 2>/dev/null) || return 1
  [ "$status" = "HTTP/1.1 200" ] || [ "$status" = "HTTP/1.0 200" ]
}

for _ in $(seq 1 300); do
  if healthy; then
    exit 0
  fi
  for name in memcached account container object proxy; do
    if ! kill -0 "$(cat "$dir/run/$name.pid")" 2>/dev/null; then
      echo "swift $name server exited:" >&2
      tail -20 "$dir/log/$name.log" >&2
      exit 1
    fi
  done
  sleep 0.1
done
echo "swift proxy did not answer on port $proxy_port" >&2
tail -20 "$dir"/log/*.log >&2
exit 1
