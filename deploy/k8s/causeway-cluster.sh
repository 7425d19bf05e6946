#!/bin/sh
# Entry point of `causeway run` in the StatefulSet (statefulset.yaml): one
# timely process per pod. Derives this process's index from the pod ordinal
# (pod causeway-3 is process 3), writes the timely hostfile from the pods'
# stable DNS names behind the headless Service, and execs
#   causeway run -w $CAUSEWAY_WORKERS -n $CAUSEWAY_PROCESSES -p ORDINAL -h HOSTFILE
#
# Environment (set by the StatefulSet):
#   POD_NAME            metadata.name, e.g. causeway-3
#   CAUSEWAY_PROCESSES  replicas; every pod must agree on it
#   CAUSEWAY_WORKERS    worker threads per process (default 1)
#   HEADLESS_SERVICE    the headless Service's name (default causeway-cluster)
#   POD_NAMESPACE       the namespace
#   CLUSTER_DOMAIN      default cluster.local
#   TIMELY_PORT         default 2101
#   METRICS_PORT        default 9464
#   CAUSEWAY_CONFIG     default /etc/causeway/causeway.toml
#   HOSTFILE            default /tmp/causeway-hosts
#   CAUSEWAY_BIN        default causeway
set -eu

name="${POD_NAME:?POD_NAME is required (fieldRef metadata.name)}"
ordinal="${name##*-}"
base="${name%-*}"
case "$ordinal" in
  ''|*[!0-9]*) echo "causeway-cluster: cannot read an ordinal from pod name $name" >&2; exit 2 ;;
esac
processes="${CAUSEWAY_PROCESSES:?CAUSEWAY_PROCESSES is required}"
if [ "$ordinal" -ge "$processes" ]; then
  echo "causeway-cluster: pod $name is ordinal $ordinal but CAUSEWAY_PROCESSES is $processes; set it to the replica count" >&2
  exit 2
fi
service="${HEADLESS_SERVICE:-causeway-cluster}"
namespace="${POD_NAMESPACE:?POD_NAMESPACE is required (fieldRef metadata.namespace)}"
domain="${CLUSTER_DOMAIN:-cluster.local}"
port="${TIMELY_PORT:-2101}"
metrics_port="${METRICS_PORT:-9464}"
hostfile="${HOSTFILE:-/tmp/causeway-hosts}"

# Line i is process i. This process listens on its own line, so it binds every
# interface there: its DNS record may not be published yet when it starts.
# Timely retries connecting to the others until their names resolve.
: > "$hostfile"
i=0
while [ "$i" -lt "$processes" ]; do
  if [ "$i" -eq "$ordinal" ]; then
    echo "0.0.0.0:$port" >> "$hostfile"
  else
    echo "$base-$i.$service.$namespace.svc.$domain:$port" >> "$hostfile"
  fi
  i=$((i + 1))
done

# `causeway run` serves /metrics on metrics.bind's port + process index (so that
# processes can share a host). Each pod is its own host: offset the configured
# port so every pod serves on METRICS_PORT.
if [ "$ordinal" -ge "$metrics_port" ]; then
  echo "causeway-cluster: ordinal $ordinal exceeds METRICS_PORT $metrics_port" >&2
  exit 2
fi
export CAUSEWAY__METRICS__BIND="0.0.0.0:$((metrics_port - ordinal))"

exec "${CAUSEWAY_BIN:-causeway}" run \
  --config "${CAUSEWAY_CONFIG:-/etc/causeway/causeway.toml}" \
  -w "${CAUSEWAY_WORKERS:-1}" \
  -n "$processes" -p "$ordinal" -h "$hostfile"
