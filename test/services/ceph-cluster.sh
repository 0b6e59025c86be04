#!/usr/bin/env bash
# A throw-away single-node Ceph (one monitor, one memstore OSD, one radosgw)
# giving a real, SigV4-checking S3 endpoint on loopback, for tests and the
# benchmark. Everything lives under DIR and runs as daemons; `stop` kills them
# by their pid files and deletes DIR.
#
#   ceph-cluster.sh start DIR RGW_PORT MON_PORT ACCESS_KEY SECRET_KEY
#   ceph-cluster.sh stop DIR
#   ceph-cluster.sh add-rgw DIR NAME PORT    (another radosgw on the same cluster)
#   ceph-cluster.sh stop-rgw DIR NAME        (that S3 endpoint goes away; the data stays)
#   ceph-cluster.sh start-rgw DIR NAME       (and comes back)
#
# Needs Debian's ceph-mon, ceph-osd and radosgw packages.
set -euo pipefail

cmd=${1:?start or stop}
dir=${2:?cluster folder}

stop_cluster() {
  for pidfile in "$dir"/run/*.pid; do
    [ -e "$pidfile" ] || continue
    pid=$(cat "$pidfile" 2>/dev/null || true)
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null || true
  done
  # Give them a moment, then make sure.
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
    [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null || true
  done
  rm -rf "$dir"
}

# The port of radosgw NAME, from its section of ceph.conf.
rgw_port_of() {
  awk -v sec="[client.rgw.$1]" '$0 == sec { found = 1; next } /^\[/ { found = 0 }
    found && /^rgw frontends/ { sub(/.*:/, ""); print; exit }' "$dir/ceph.conf"
}

wait_rgw() {
  local port=$1
  for _ in $(seq 1 600); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "radosgw did not open port $port" >&2
  tail -20 "$dir"/log/client.rgw.*.log >&2
  return 1
}

case "$cmd" in
  stop)
    stop_cluster
    exit 0
    ;;
  add-rgw)
    name=${3:?name}
    port=${4:?port}
    printf '[client.rgw.%s]\nrgw frontends = beast endpoint=127.0.0.1:%s\nms mon client mode = crc\n' \
      "$name" "$port" >> "$dir/ceph.conf"
    radosgw -c "$dir/ceph.conf" -n "client.rgw.$name"
    wait_rgw "$port"
    exit 0
    ;;
  stop-rgw)
    name=${3:?name}
    pid=$(cat "$dir/run/client.rgw.$name.pid")
    kill -KILL "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
    exit 0
    ;;
  start-rgw)
    name=${3:?name}
    radosgw -c "$dir/ceph.conf" -n "client.rgw.$name"
    wait_rgw "$(rgw_port_of "$name")"
    exit 0
    ;;
esac

rgw_port=${3:?radosgw port}
mon_port=${4:?monitor port}
access_key=${5:?access key}
secret_key=${6:?secret key}

mkdir -p "$dir"/{mon,osd,run,log}
conf="$dir/ceph.conf"
fsid=$(cat /proc/sys/kernel/random/uuid)
cat > "$conf" <<CONF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$mon_port
mon initial members = a
auth cluster required = none
auth service required = none
auth client required = none
ms bind ipv4 = true
ms bind ipv6 = false
public addr = 127.0.0.1
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
osd objectstore = memstore
memstore device bytes = ${CEPH_MEMSTORE_BYTES:-4294967296}
run dir = $dir/run
log file = $dir/log/\$name.log
pid file = $dir/run/\$name.pid
admin socket = $dir/run/\$name.asok
mon data = $dir/mon/\$name
osd data = $dir/osd/\$name
keyring = $dir/keyring
[client.rgw.test]
rgw frontends = beast endpoint=127.0.0.1:$rgw_port
rgw data = $dir/rgw
# With cephx off, radosgw still asks the monitor for "secure" mode and loops
# on "get_initial_auth_request returned -13" without ever opening its port.
ms mon client mode = crc
CONF
touch "$dir/keyring"
C=(-c "$conf")

monmaptool --create --addv a "[v2:127.0.0.1:$mon_port]" --fsid "$fsid" "$dir/monmap" >/dev/null
ceph-mon "${C[@]}" --mkfs -i a --monmap "$dir/monmap" >/dev/null
ceph-mon "${C[@]}" -i a

osd_uuid=$(cat /proc/sys/kernel/random/uuid)
osd_id=$(ceph "${C[@]}" osd new "$osd_uuid")
mkdir -p "$dir/osd/osd.$osd_id"
ceph-osd "${C[@]}" -i "$osd_id" --mkfs --osd-uuid "$osd_uuid" >/dev/null 2>&1
ceph "${C[@]}" osd crush add-bucket node1 host >/dev/null 2>&1
ceph "${C[@]}" osd crush move node1 root=default >/dev/null 2>&1
ceph "${C[@]}" osd crush add "osd.$osd_id" 1.0 host=node1 >/dev/null 2>&1
ceph-osd "${C[@]}" -i "$osd_id"

for _ in $(seq 1 300); do
  ceph "${C[@]}" osd dump 2>/dev/null | grep -q "^osd.$osd_id up" && break
  sleep 0.1
done
ceph "${C[@]}" osd dump | grep -q "^osd.$osd_id up" || { echo "OSD did not come up" >&2; exit 1; }

radosgw "${C[@]}" -n client.rgw.test
wait_rgw "$rgw_port"

radosgw-admin "${C[@]}" user create --uid=s3dedup-test --display-name=s3dedup-test \
  --access-key="$access_key" --secret-key="$secret_key" >/dev/null
echo "radosgw ready on 127.0.0.1:$rgw_port"
