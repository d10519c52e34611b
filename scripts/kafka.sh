#!/usr/bin/env bash
# Apache Kafka in KRaft mode on loopback, run by the machine's JDK from the jars that
# scripts/kafka/pom.xml names (fetched once from Maven Central into the state directory).
#
#   scripts/kafka.sh install         fetch the jars (once; cached per Kafka version)
#   scripts/kafka.sh up              the broker `make run` uses: one combined broker and
#                                    controller on 127.0.0.1:$COMMERCE_KAFKA_PORT
#   scripts/kafka.sh cluster-up      the cluster `make test` uses: three combined nodes on
#                                    $COMMERCE_KAFKA_CLUSTER_PORTS, replication factor 3,
#                                    min.insync.replicas 2
#   scripts/kafka.sh cluster-clean   delete every topic but Kafka's own from that cluster
#   scripts/kafka.sh down | cluster-down | status
#
# Each node keeps its log directory under $COMMERCE_STATE_DIR/kafka, so topics, records
# and committed offsets survive a restart; storage is formatted once.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

TEMPLATE=scripts/kafka/server.properties

install_kafka() {
  [ -f "$KAFKA_LIBS/.complete" ] && return 0
  command -v java >/dev/null || die "Apache Kafka needs a JDK (17 or newer): install openjdk-17-jre-headless"
  command -v mvn >/dev/null || die "fetching Apache Kafka needs Maven: install maven"
  log "fetching Apache Kafka $KAFKA_VERSION from Maven Central (once)"
  rm -rf "$KAFKA_LIBS"
  mvn -q -B -f scripts/kafka/pom.xml dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIBS" >"$LOG_DIR/kafka-fetch.log" 2>&1 \
    || die "fetching Apache Kafka failed; see $LOG_DIR/kafka-fetch.log"
  touch "$KAFKA_LIBS/.complete"
}

# The JVM as Kafka's own start script sets it up, with a heap that fits beside the shop.
KAFKA_JVM=(java -Xms128m -Xmx"$KAFKA_HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError
  -Djava.awt.headless=true -Dlog4j2.configurationFile="$PWD/scripts/kafka/log4j2.yaml" -cp "$KAFKA_LIBS/*")
kafka_java() { "${KAFKA_JVM[@]}" "$@"; }

# node_config ID BROKER_PORT CONTROLLER_PORT VOTERS DIR REPLICATION MIN_ISR > file
node_config() {
  sed -e "s|@NODE_ID@|$1|g" -e "s|@BROKER_PORT@|$2|g" -e "s|@CONTROLLER_PORT@|$3|g" \
    -e "s|@VOTERS@|$4|g" -e "s|@LOG_DIR@|$5/data|g" -e "s|@REPLICATION@|$6|g" \
    -e "s|@MIN_ISR@|$7|g" "$TEMPLATE"
}

# start_node NAME ID BROKER_PORT VOTERS DIR REPLICATION MIN_ISR CLUSTER_ID
start_node() {
  local name=$1 id=$2 port=$3 voters=$4 dir=$5 replication=$6 min_isr=$7 cluster_id=$8
  mkdir -p "$dir"
  node_config "$id" "$port" "$((port + 1))" "$voters" "$dir" "$replication" "$min_isr" >"$dir/server.properties"
  if [ ! -f "$dir/data/meta.properties" ]; then
    kafka_java kafka.tools.StorageTool format --ignore-formatted -t "$cluster_id" \
      -c "$dir/server.properties" >>"$LOG_DIR/$name.log" 2>&1 \
      || die "formatting $name's storage failed; see $LOG_DIR/$name.log"
  fi
  # GC log as Kafka's own start script keeps one: heap pressure shows there first.
  start_daemon "$name" "${KAFKA_JVM[@]}" \
    -Xlog:gc:file="$LOG_DIR/$name-gc.log":time,uptime:filecount=2,filesize=10m \
    kafka.Kafka "$dir/server.properties"
}

# The id a data set was formatted with, made once and kept beside it.
cluster_id() {
  local file="$1/cluster-id"
  if [ ! -s "$file" ]; then
    mkdir -p "$1"
    kafka_java kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1 >"$file"
  fi
  cat "$file"
}

up() {
  install_kafka
  if daemon_running kafka; then
    log "Kafka already running on $COMMERCE_KAFKA_PORT"; return 0
  fi
  port_open "$COMMERCE_KAFKA_PORT" && die "port $COMMERCE_KAFKA_PORT is taken by another process; set COMMERCE_KAFKA_PORT"
  local dir="$COMMERCE_STATE_DIR/kafka/run"
  start_node kafka 1 "$COMMERCE_KAFKA_PORT" "1@127.0.0.1:$((COMMERCE_KAFKA_PORT + 1))" "$dir" 1 1 "$(cluster_id "$dir")"
  wait_for_port "$COMMERCE_KAFKA_PORT" Kafka 300
  log "Apache Kafka $KAFKA_VERSION started on 127.0.0.1:$COMMERCE_KAFKA_PORT (KRaft, one node; log: $dir/data)"
}

cluster_up() {
  install_kafka
  local ports=($COMMERCE_KAFKA_CLUSTER_PORTS) voters="" id
  [ ${#ports[@]} = 3 ] || die "COMMERCE_KAFKA_CLUSTER_PORTS must name three broker ports"
  for id in 1 2 3; do
    voters+="${voters:+,}$id@127.0.0.1:$((ports[id - 1] + 1))"
  done
  local root="$COMMERCE_STATE_DIR/kafka/cluster" cluster; cluster=$(cluster_id "$root")
  for id in 1 2 3; do
    if daemon_running "kafka-$id"; then continue; fi
    port_open "${ports[id - 1]}" && die "port ${ports[id - 1]} is taken by another process; set COMMERCE_KAFKA_CLUSTER_PORTS"
    start_node "kafka-$id" "$id" "${ports[id - 1]}" "$voters" "$root/node-$id" 3 2 "$cluster"
  done
  for id in 1 2 3; do
    wait_for_port "${ports[id - 1]}" "Kafka node $id" 600
  done
  log "Apache Kafka $KAFKA_VERSION cluster started: brokers $(cluster_brokers) (KRaft, three combined nodes)"
}

# Deletes every topic but Kafka's own (`__consumer_offsets`, ...) from the test cluster:
# each test makes topics of its own, and a broker's heap grows with the partitions it
# holds. Their consumer groups' offsets go with them.
cluster_clean() {
  daemon_running kafka-1 || return 0
  kafka_java org.apache.kafka.tools.TopicCommand --bootstrap-server "$(cluster_brokers)" \
    --delete --if-exists --topic '[^_].*' >>"$LOG_DIR/kafka-clean.log" 2>&1 \
    || die "deleting the test cluster's topics failed; see $LOG_DIR/kafka-clean.log"
}

cluster_brokers() {
  local port out=""
  for port in $COMMERCE_KAFKA_CLUSTER_PORTS; do out+="${out:+,}127.0.0.1:$port"; done
  echo "$out"
}

mkdir -p "$COMMERCE_STATE_DIR" "$LOG_DIR"
case "${1:-}" in
  install) install_kafka ;;
  up) up ;;
  # A broker moves its partitions' leadership away before it exits: give it time.
  down) stop_daemon kafka 300 ;;
  cluster-up) cluster_up ;;
  cluster-clean) cluster_clean ;;
  cluster-down) stop_daemons 300 kafka-1 kafka-2 kafka-3 ;;
  brokers) cluster_brokers ;;
  status)
    for name in kafka kafka-1 kafka-2 kafka-3; do
      if daemon_running "$name"; then echo "$name  running"; else echo "$name  stopped"; fi
    done ;;
  *) die "usage: $0 install|up|down|cluster-up|cluster-clean|cluster-down|status" ;;
esac
