#!/usr/bin/env bash
# A real single-node Slurm (slurmctld + slurmd + munged) on 127.0.0.1, for the
# job-array tests of `fute transfer slurm`.
#
#   scripts/slurm-local.sh install   apt-get install -y slurm-wlm munge (once; needs root)
#   scripts/slurm-local.sh start     install if needed, write the config, start the daemons,
#                                    wait until the node is idle; prints the config folder
#   scripts/slurm-local.sh stop      stop the daemons this script started
#   scripts/slurm-local.sh env       print `export SLURM_CONF=…` for a shell
#
# Everything (slurm.conf, munge key and socket, state, logs, pid files) lives in
# $FUTE_SLURM_DIR (default ~/.cache/fute/slurm), outside the repository. The
# daemons run as the invoking user; jobs run on this machine with its CPUs.
set -euo pipefail

DIR="${FUTE_SLURM_DIR:-$HOME/.cache/fute/slurm}"
CONF="$DIR/slurm.conf"

log() { echo "slurm-local: $*" >&2; }

install() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null; then
    return 0
  fi
  if [ "$(id -u)" != 0 ]; then
    log "slurm-wlm and munge are missing and installing them needs root: sudo apt-get install -y slurm-wlm munge"
    exit 1
  fi
  log "installing slurm-wlm and munge with apt-get (once)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >"$DIR/apt.log" 2>&1 || {
    apt-get update -q >>"$DIR/apt.log" 2>&1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >>"$DIR/apt.log" 2>&1 || {
      log "apt-get install failed; see $DIR/apt.log"; exit 1; }
  }
}

write_config() {
  local user cpus mem
  user="$(id -un)"
  cpus="$(nproc)"
  # Slurm refuses a node that reports less memory than configured: leave a margin.
  mem="$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)"
  mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log" "$DIR/run" "$DIR/munge"
  chmod 700 "$DIR/munge"
  if [ ! -s "$DIR/munge/munge.key" ]; then
    (umask 077; head -c 1024 /dev/urandom >"$DIR/munge/munge.key")
  fi
  cat >"$CONF.tmp" <<CONF
# Written by scripts/slurm-local.sh: one node, this machine, on 127.0.0.1.
ClusterName=fute-local
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=16817
SlurmdPort=16818
SlurmUser=$user
SlurmdUser=$user
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=5
Waittime=0
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=local Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
  mv "$CONF.tmp" "$CONF"
}

running() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start() {
  mkdir -p "$DIR"
  install
  write_config
  export SLURM_CONF="$CONF"
  if ! running "$DIR/run/munged.pid"; then
    munged --force --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.socket" \
      --pid-file="$DIR/run/munged.pid" --log-file="$DIR/log/munged.log" \
      --seed-file="$DIR/munge/munged.seed"
  fi
  if ! running "$DIR/run/slurmctld.pid"; then
    slurmctld -f "$CONF" -i
  fi
  if ! running "$DIR/run/slurmd.pid"; then
    slurmd -f "$CONF" -N localhost
  fi
  local i
  for i in $(seq 1 60); do
    if sinfo -h -N -o '%T' 2>/dev/null | grep -Eq '^(idle|mixed|allocated)'; then
      log "node idle; export SLURM_CONF=$CONF"
      echo "$DIR"
      return 0
    fi
    sleep 1
  done
  log "the node did not become idle within 60 s; logs in $DIR/log"
  sinfo -N -l >&2 || true
  exit 1
}

stop() {
  local name pid
  for name in slurmd slurmctld munged; do
    if running "$DIR/run/$name.pid"; then
      pid="$(cat "$DIR/run/$name.pid")"
      kill "$pid"
      for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    fi
    rm -f "$DIR/run/$name.pid"
  done
}

case "${1:-}" in
  install) mkdir -p "$DIR"; install ;;
  start) start ;;
  stop) stop ;;
  env) echo "export SLURM_CONF=$CONF" ;;
  *) echo "usage: $0 install|start|stop|env" >&2; exit 2 ;;
esac
