#!/usr/bin/env bash
# Single-node Slurm "cluster" for integration tests (Debian/Ubuntu, no systemd).
#
# Usage: tests/slurm/local_slurm.sh {start|stop|status|env}
#
#   start   install slurmctld/slurmd/munge/slurm-client via apt-get if missing,
#           write a munge key + slurm.conf + cgroup.conf into the state dir,
#           start munged, slurmctld and slurmd (each only if not already
#           running from this state dir) and wait until the node is idle.
#   stop    stop only the daemons that `start` started (recorded in the
#           state dir); daemons started by someone else are left alone.
#   status  print sinfo/squeue; exit 0 iff all three daemons run from this dir.
#   env     print `export SLURM_CONF=...` (and prepend $STATE_DIR/bin to PATH);
#           use: eval "$(tests/slurm/local_slurm.sh env)"
#
# Why $STATE_DIR/bin: snakemake-executor-plugin-slurm-jobstep runs each rule
# inside the batch job as `srun -n1 ... snakemake ...` with every SLURM_*
# variable except a few job-identity ones removed from the environment --
# including SLURM_CONF.  A nested srun then looks for /etc/slurm/slurm.conf,
# /run/slurm/conf/slurm.conf and DNS SRV records and fails ("Could not
# establish a configuration source").  `start` therefore writes tiny wrappers
# for the Slurm client commands into $STATE_DIR/bin that default SLURM_CONF to
# this cluster's config; with that directory on PATH (sbatch --export=ALL
# forwards PATH into the job) nested sruns find the config again, without
# writing anything outside the state directory.
#
# Everything (configs, munge key/socket, spool/state, logs, pid files) lives
# under $KDSTGCN_SLURM_DIR (default /tmp/kdstgcn-slurm).
# Optional knobs: KDSTGCN_SLURMCTLD_PORT (6817), KDSTGCN_SLURMD_PORT (6818),
# KDSTGCN_SLURM_TIMEOUT (seconds to wait for the node to become idle, 60),
# KDSTGCN_SLURM_NO_INSTALL=1 (never apt-get install; fail if packages are missing).
set -euo pipefail

STATE_DIR="${KDSTGCN_SLURM_DIR:-/tmp/kdstgcn-slurm}"
ETC_DIR="$STATE_DIR/etc"
MUNGE_DIR="$STATE_DIR/munge"
LOG_DIR="$STATE_DIR/log"
RUN_DIR="$STATE_DIR/run"
SPOOL_DIR="$STATE_DIR/spool"
SLURM_CONF_FILE="$ETC_DIR/slurm.conf"
CGROUP_CONF_FILE="$ETC_DIR/cgroup.conf"
MUNGE_KEY="$MUNGE_DIR/munge.key"
MUNGE_SOCKET="$MUNGE_DIR/munge.socket.2"
STARTED_FILE="$RUN_DIR/started-by-local_slurm"
BIN_DIR="$STATE_DIR/bin"
CLIENT_CMDS=(srun sbatch salloc squeue sinfo scontrol scancel sacct sstat sattach)
CTLD_PORT="${KDSTGCN_SLURMCTLD_PORT:-6817}"
SLURMD_PORT="${KDSTGCN_SLURMD_PORT:-6818}"
TIMEOUT="${KDSTGCN_SLURM_TIMEOUT:-60}"
DAEMONS=(munged slurmctld slurmd)

export SLURM_CONF="$SLURM_CONF_FILE"
# Debian installs the daemons under /usr/sbin, which may not be on PATH.
export PATH="$PATH:/usr/sbin:/sbin"

log() { echo "[local_slurm] $*" >&2; }
die() { echo "[local_slurm] ERROR: $*" >&2; exit 1; }

pidfile_of() {
    case "$1" in
        munged) echo "$MUNGE_DIR/munged.pid" ;;
        slurmctld) echo "$RUN_DIR/slurmctld.pid" ;;
        slurmd) echo "$RUN_DIR/slurmd.pid" ;;
    esac
}

logfile_of() {
    case "$1" in
        munged) echo "$LOG_DIR/munged.log" ;;
        *) echo "$LOG_DIR/$1.log" ;;
    esac
}

# PID of daemon $1 if it runs *from this state dir* (pid file alive, process
# name matches and its command line references the state dir), else empty.
running_pid() {
    local name="$1" pf pid cmdline comm
    pf="$(pidfile_of "$name")"
    [[ -s "$pf" ]] || return 0
    pid="$(tr -dc '0-9' <"$pf")"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
    comm="$(cat "/proc/$pid/comm" 2>/dev/null || true)"
    [[ "$comm" == "$name" ]] || return 0
    cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
    [[ "$cmdline" == *"$STATE_DIR"* ]] || return 0
    echo "$pid"
}

tail_logs() {
    local name lf
    for name in "${DAEMONS[@]}"; do
        lf="$(logfile_of "$name")"
        if [[ -f "$lf" ]]; then
            echo "----- tail of $lf -----" >&2
            tail -n 25 "$lf" >&2 || true
        fi
    done
    for lf in "$LOG_DIR"/*.stderr; do
        [[ -s "$lf" ]] || continue
        echo "----- $lf -----" >&2
        tail -n 25 "$lf" >&2 || true
    done
}

fail_start() {
    echo "[local_slurm] ERROR: $*" >&2
    tail_logs
    exit 1
}

ensure_packages() {
    local missing=()
    command -v munged >/dev/null 2>&1 || missing+=(munge)
    command -v slurmctld >/dev/null 2>&1 || missing+=(slurmctld)
    command -v slurmd >/dev/null 2>&1 || missing+=(slurmd)
    { command -v sbatch >/dev/null 2>&1 && command -v sinfo >/dev/null 2>&1 &&
        command -v squeue >/dev/null 2>&1; } || missing+=(slurm-client)
    [[ ${#missing[@]} -eq 0 ]] && return 0

    [[ "${KDSTGCN_SLURM_NO_INSTALL:-0}" != 1 ]] ||
        die "missing packages: ${missing[*]} (KDSTGCN_SLURM_NO_INSTALL=1, not installing)"
    command -v apt-get >/dev/null 2>&1 ||
        die "missing ${missing[*]} and apt-get is not available"
    local sudo=()
    if [[ "$(id -u)" != 0 ]]; then
        command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null ||
            die "missing ${missing[*]}; need root (or passwordless sudo) to apt-get install"
        sudo=(sudo -n)
    fi
    log "installing ${missing[*]} via apt-get"
    local apt_log="$LOG_DIR/apt-get.log"
    local install=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq
        --no-install-recommends -o Dpkg::Options::=--force-confdef
        -o Dpkg::Options::=--force-confold "${missing[@]}")
    if ! "${install[@]}" >"$apt_log" 2>&1; then
        log "apt-get install failed, running apt-get update and retrying"
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >>"$apt_log" 2>&1 || true
        if ! "${install[@]}" >>"$apt_log" 2>&1; then
            tail -n 20 "$apt_log" >&2
            die "apt-get install ${missing[*]} failed (log: $apt_log)"
        fi
    fi
    command -v munged >/dev/null && command -v slurmctld >/dev/null &&
        command -v slurmd >/dev/null && command -v sbatch >/dev/null ||
        die "packages installed but daemons/commands still not found on PATH"
}

write_munge_key() {
    [[ -s "$MUNGE_KEY" ]] && return 0
    log "creating munge key $MUNGE_KEY"
    if command -v mungekey >/dev/null 2>&1; then
        mungekey --create --keyfile="$MUNGE_KEY" --force >/dev/null 2>&1 || true
    fi
    if [[ ! -s "$MUNGE_KEY" ]]; then
        (umask 077 && dd if=/dev/urandom of="$MUNGE_KEY" bs=1024 count=1 status=none)
    fi
    chmod 0600 "$MUNGE_KEY"
}

write_configs() {
    local host cpus mem_kb real_mem user
    host="$(hostname -s)"
    cpus="$(nproc)"
    # RealMemory: currently available memory (MB) minus a small margin; it must
    # not exceed what slurmd detects, otherwise the node gets drained.
    mem_kb="$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)"
    [[ -n "$mem_kb" ]] || mem_kb="$(awk '/^MemFree:/ {print $2}' /proc/meminfo)"
    real_mem=$((mem_kb / 1024 * 9 / 10 / 512 * 512))
    ((real_mem >= 1024)) || real_mem=1024
    user="$(id -un)"

    cat >"$SLURM_CONF_FILE.tmp" <<EOF
# Generated by tests/slurm/local_slurm.sh -- single-node test cluster.
ClusterName=kdstgcn
SlurmctldHost=${host}(127.0.0.1)
SlurmctldPort=${CTLD_PORT}
SlurmdPort=${SLURMD_PORT}
SlurmUser=${user}
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=${MUNGE_SOCKET}
CredType=cred/munge
MpiDefault=none
MailProg=/bin/true
# No cgroups (containers without a delegated cgroup tree / systemd).
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
# No accounting database: sacct has nothing to report; status via squeue.
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# Keep finished jobs visible to squeue for 10 min (squeue-based status checks).
MinJobAge=600
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
SlurmctldTimeout=120
SlurmdTimeout=300
InactiveLimit=0
KillWait=30
Waittime=0
# GresTypes intentionally unset: this CPU-only cluster has no GPUs, so any
# --gres/--gpus request is rejected at submission time.
StateSaveLocation=${SPOOL_DIR}/ctld
SlurmdSpoolDir=${SPOOL_DIR}/d
SlurmctldPidFile=${RUN_DIR}/slurmctld.pid
SlurmdPidFile=${RUN_DIR}/slurmd.pid
SlurmctldLogFile=${LOG_DIR}/slurmctld.log
SlurmdLogFile=${LOG_DIR}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName=${host} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${real_mem} State=UNKNOWN
PartitionName=debug Nodes=${host} Default=YES MaxTime=INFINITE State=UP
EOF
    # Only replace the config when it changed (a running slurmctld keeps its own).
    if [[ -f "$SLURM_CONF_FILE" ]] && cmp -s "$SLURM_CONF_FILE" "$SLURM_CONF_FILE.tmp"; then
        rm -f "$SLURM_CONF_FILE.tmp"
    else
        mv -f "$SLURM_CONF_FILE.tmp" "$SLURM_CONF_FILE"
    fi
    # cgroup.conf is only read by cgroup plugins (none configured), but keep a
    # harmless one next to slurm.conf so nothing falls back to /etc/slurm.
    cat >"$CGROUP_CONF_FILE" <<EOF
# Generated by tests/slurm/local_slurm.sh -- cgroups are not used.
ConstrainCores=no
ConstrainRAMSpace=no
ConstrainDevices=no
EOF
}

write_client_wrappers() {
    local cmd real
    mkdir -p "$BIN_DIR"
    chmod 0755 "$BIN_DIR"
    for cmd in "${CLIENT_CMDS[@]}"; do
        real="$(PATH="${PATH//$BIN_DIR:/}" command -v "$cmd" 2>/dev/null || true)"
        [[ -n "$real" && "$real" != "$BIN_DIR/$cmd" ]] || continue
        {
            echo '#!/bin/sh'
            echo '# Generated by tests/slurm/local_slurm.sh: default SLURM_CONF to the'
            echo '# local test cluster (slurm-jobstep strips SLURM_* before nested srun).'
            printf ': "${SLURM_CONF:=%s}"\n' "$SLURM_CONF_FILE"
            echo 'export SLURM_CONF'
            printf 'exec %s "$@"\n' "$real"
        } >"$BIN_DIR/$cmd.tmp"
        chmod 0755 "$BIN_DIR/$cmd.tmp"
        mv -f "$BIN_DIR/$cmd.tmp" "$BIN_DIR/$cmd"
    done
}

print_env() {
    printf 'export SLURM_CONF=%q\n' "$SLURM_CONF_FILE"
    printf 'case ":$PATH:" in *:%q:*) ;; *) export PATH=%q:"$PATH" ;; esac\n' \
        "$BIN_DIR" "$BIN_DIR"
}

record_started() {
    local name="$1"
    touch "$STARTED_FILE"
    grep -qx "$name" "$STARTED_FILE" 2>/dev/null || echo "$name" >>"$STARTED_FILE"
}

wait_for_pid() {
    # wait until daemon $1 has a live pid file from this dir (max $2 s)
    local name="$1" limit="$2" i
    for ((i = 0; i < limit * 4; i++)); do
        [[ -n "$(running_pid "$name")" ]] && return 0
        sleep 0.25
    done
    return 1
}

start_munged() {
    if [[ -n "$(running_pid munged)" ]]; then
        log "munged already running from $STATE_DIR (pid $(running_pid munged))"
        return 0
    fi
    rm -f "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock"
    log "starting munged"
    # --force: run as root / tolerate /tmp-style directory permissions.
    munged --force \
        --key-file="$MUNGE_KEY" \
        --socket="$MUNGE_SOCKET" \
        --pid-file="$(pidfile_of munged)" \
        --log-file="$(logfile_of munged)" \
        --seed-file="$MUNGE_DIR/munged.seed" \
        >"$LOG_DIR/munged.stderr" 2>&1 ||
        fail_start "munged failed to start"
    wait_for_pid munged 10 || fail_start "munged did not write its pid file"
    record_started munged
    if command -v munge >/dev/null 2>&1 && command -v unmunge >/dev/null 2>&1; then
        munge -n -S "$MUNGE_SOCKET" | unmunge -S "$MUNGE_SOCKET" >/dev/null 2>&1 ||
            fail_start "munge credential round trip failed"
    fi
}

start_slurmctld() {
    if [[ -n "$(running_pid slurmctld)" ]]; then
        log "slurmctld already running from $STATE_DIR (pid $(running_pid slurmctld))"
        return 0
    fi
    log "starting slurmctld"
    # daemonizes itself; state from a previous run in this dir is recovered.
    slurmctld -f "$SLURM_CONF_FILE" >"$LOG_DIR/slurmctld.stderr" 2>&1 ||
        fail_start "slurmctld failed to start"
    wait_for_pid slurmctld 20 || fail_start "slurmctld did not come up"
    record_started slurmctld
}

start_slurmd() {
    if [[ -n "$(running_pid slurmd)" ]]; then
        log "slurmd already running from $STATE_DIR (pid $(running_pid slurmd))"
        return 0
    fi
    log "starting slurmd"
    slurmd -f "$SLURM_CONF_FILE" >"$LOG_DIR/slurmd.stderr" 2>&1 ||
        fail_start "slurmd failed to start"
    wait_for_pid slurmd 20 || fail_start "slurmd did not come up"
    record_started slurmd
}

node_state() {
    # short form: a trailing '*' means "not responding", '~' powered off, ...
    sinfo -h -N -n "$(hostname -s)" -o '%t' 2>/dev/null | head -n 1
}

wait_for_idle() {
    local host deadline state resumed=0
    host="$(hostname -s)"
    deadline=$((SECONDS + TIMEOUT))
    while ((SECONDS < deadline)); do
        state="$(node_state || true)"
        case "$state" in
            idle | mix | alloc | comp)
                log "node $host is $state (took ${SECONDS}s)"
                return 0
                ;;
            drain* | drng* | down* | fail*)
                # e.g. left drained by an earlier run in this state dir
                if ((resumed == 0)); then
                    log "node $host is '$state', trying scontrol update state=resume"
                    scontrol update NodeName="$host" State=RESUME >/dev/null 2>&1 || true
                    resumed=1
                fi
                ;;
        esac
        sleep 1
    done
    sinfo -N -l >&2 2>&1 || true
    scontrol show node "$host" >&2 2>&1 || true
    fail_start "node $host did not become idle within ${TIMEOUT}s (last state: '${state:-unknown}')"
}

cmd_start() {
    mkdir -p "$ETC_DIR" "$MUNGE_DIR" "$LOG_DIR" "$RUN_DIR" "$SPOOL_DIR/ctld" "$SPOOL_DIR/d"
    ensure_packages
    # munged refuses group/world-writable directories on its paths; the socket
    # dir must be searchable by everyone (clients of any user use the socket).
    chmod 0755 "$STATE_DIR" "$ETC_DIR" "$LOG_DIR" "$RUN_DIR" "$SPOOL_DIR" "$MUNGE_DIR"
    write_munge_key
    if [[ -f "$SLURM_CONF_FILE" && -n "$(running_pid slurmctld)$(running_pid slurmd)" ]]; then
        # keep the config the running daemons were started with
        log "slurm daemons already running from $STATE_DIR, keeping $SLURM_CONF_FILE"
    else
        write_configs
    fi
    start_munged
    start_slurmctld
    start_slurmd
    write_client_wrappers
    wait_for_idle
    print_env
}

stop_one() {
    local name="$1" pid i
    pid="$(running_pid "$name")"
    if [[ -z "$pid" ]]; then
        log "$name (ours) is not running"
        return 0
    fi
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 60; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.25
    done
    log "$name did not exit after SIGTERM, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
}

cmd_stop() {
    if [[ ! -s "$STARTED_FILE" ]]; then
        log "no daemons recorded as started by this script in $STATE_DIR"
        return 0
    fi
    local name
    # reverse start order: slurmd, slurmctld, munged
    for name in slurmd slurmctld munged; do
        grep -qx "$name" "$STARTED_FILE" || continue
        stop_one "$name"
        sed -i "/^${name}\$/d" "$STARTED_FILE"
    done
    [[ -s "$STARTED_FILE" ]] || rm -f "$STARTED_FILE"
}

cmd_status() {
    local name pid rc=0
    for name in "${DAEMONS[@]}"; do
        pid="$(running_pid "$name")"
        if [[ -n "$pid" ]]; then
            echo "$name: running (pid $pid)"
        else
            echo "$name: not running"
            rc=1
        fi
    done
    echo "SLURM_CONF=$SLURM_CONF_FILE"
    if [[ -f "$SLURM_CONF_FILE" ]] && command -v sinfo >/dev/null 2>&1; then
        sinfo -N -l 2>&1 || rc=1
        squeue 2>&1 || rc=1
    fi
    return "$rc"
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) print_env ;;
    *)
        echo "usage: $0 {start|stop|status|env}" >&2
        exit 2
        ;;
esac
