#!/usr/bin/env bash
# Bring up a real single-node SLURM cluster on this machine for the tests: munge, MariaDB +
# slurmdbd (accounting: without it `sacct` fails and snakemake-executor-plugin-slurm loses jobs),
# slurmctld and slurmd with one fake GPU (gres File=/dev/null).
# Runs as root without systemd. Does nothing when a cluster already answers.
#
#   tests/slurm/start_cluster.sh            install if missing, configure, start, wait until idle
#   tests/slurm/start_cluster.sh --install  only install the Debian packages
#
# Daemons it starts are listed (by pid file) in $STATE_DIR/started; tests/slurm/stop_cluster.sh
# stops exactly those.
set -euo pipefail

STATE_DIR=${CODEPARROT_SLURM_STATE:-/run/codeparrot-slurm}
CLUSTER=codeparrot-test
ACCOUNT=codeparrot           # the account profiles/slurm names
PARTITIONS=(cpu gpu)         # the partitions profiles/slurm names
TIMEOUT=${CODEPARROT_SLURM_TIMEOUT:-90}
PACKAGES=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)
MARKER="# written by codeparrot tests/slurm/start_cluster.sh"

log() { echo "[start_cluster] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

install_packages() {
    local missing=()
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [[ ${#missing[@]} -eq 0 ]] && return
    [[ $(id -u) -eq 0 ]] || die "installing ${missing[*]} needs root (run: sudo $0 --install)"
    log "installing ${missing[*]}"
    apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
}

# wait_for SECONDS DESCRIPTION COMMAND...: poll until COMMAND succeeds or fail naming what hung.
wait_for() {
    local limit=$1 what=$2; shift 2
    local deadline=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || die "$what did not come up within ${limit}s (logs: /var/log/slurm, /var/log/munge, $STATE_DIR)"
        sleep 0.5
    done
}

cluster_answers() { timeout 10 sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; }

# start_daemon NAME PIDFILE COMMAND...: start unless its pid file names a live process; record it.
start_daemon() {
    local name=$1 pidfile=$2; shift 2
    if [[ -s $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        log "$name already running (pid $(cat "$pidfile"))"
        return
    fi
    log "starting $name"
    "$@"
    wait_for 30 "$name pid file $pidfile" test -s "$pidfile"
    echo "$name $pidfile" >>"$STATE_DIR/started"
}

write_configs() {
    local host mem_mb cpus
    host=$(hostname -s)
    cpus=$(nproc)
    # RealMemory must stay below what the node reports or slurmd is drained.
    mem_mb=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.8}' /proc/meminfo)
    if [[ -f /etc/slurm/slurm.conf ]] && ! grep -qF "$MARKER" /etc/slurm/slurm.conf; then
        die "/etc/slurm/slurm.conf exists and was not written by this script; start that cluster yourself or move the file away"
    fi
    mkdir -p /etc/slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /var/log/slurm
    # The plugin strips SLURM_* variables inside jobs, so slurm.conf must be at the default path.
    cat >/etc/slurm/slurm.conf.new <<EOF
$MARKER
ClusterName=$CLUSTER
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
SchedulerParameters=sched_interval=2
# Refuse at submission what no partition can run (as production clusters do), instead of
# leaving it pending forever.
EnforcePartLimits=ALL
SlurmctldPidFile=$STATE_DIR/slurmctld.pid
SlurmdPidFile=$STATE_DIR/slurmd.pid
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
# Record GPUs in accounting so `sacct` shows which job got the (fake) GPU.
AccountingStorageTRES=gres/gpu
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/none
ReturnToService=2
MinJobAge=300
# Jobs without --mem must not take the whole node's memory (they would run one at a time).
DefMemPerCPU=512
NodeName=$host CPUs=$cpus RealMemory=$mem_mb Gres=gpu:1 State=UNKNOWN
PartitionName=${PARTITIONS[0]} Nodes=$host Default=YES MaxTime=INFINITE State=UP
PartitionName=${PARTITIONS[1]} Nodes=$host MaxTime=INFINITE State=UP
EOF
    # One device file per fake GPU.
    cat >/etc/slurm/gres.conf.new <<EOF
$MARKER
NodeName=$host Name=gpu File=/dev/null
EOF
    # slurmdbd runs as root and reaches MariaDB through its socket with unix_socket
    # authentication: no database password exists anywhere.
    cat >/etc/slurm/slurmdbd.conf.new <<EOF
$MARKER
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
PidFile=$STATE_DIR/slurmdbd.pid
LogFile=/var/log/slurm/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=slurm_acct_db
EOF
    chmod 600 /etc/slurm/slurmdbd.conf.new
    # Replace atomically: SLURM clients running meanwhile never read a half-written file.
    for f in slurm.conf gres.conf slurmdbd.conf; do mv /etc/slurm/$f.new /etc/slurm/$f; done
}

add_association() {
    # Idempotent: sacctmgr answers "Nothing new added" when it exists.
    timeout 30 sacctmgr -i add cluster "$CLUSTER" >/dev/null 2>&1 || true
    timeout 30 sacctmgr -i add account "$ACCOUNT" cluster="$CLUSTER" >/dev/null 2>&1 || true
    timeout 30 sacctmgr -i add user root account="$ACCOUNT" cluster="$CLUSTER" >/dev/null 2>&1 || true
    timeout 30 sacctmgr -n -s list user root format=account%64 | grep -qw "$ACCOUNT" \
        || die "could not register account $ACCOUNT in slurmdbd"
}

main() {
    install_packages
    [[ ${1:-} == --install ]] && exit 0
    if [[ -f /etc/slurm/slurm.conf ]] && cluster_answers; then
        log "a SLURM cluster already answers; leaving it as it is"
        exit 0
    fi
    [[ $(id -u) -eq 0 ]] || die "starting the test cluster needs root"
    mkdir -p "$STATE_DIR"
    : >>"$STATE_DIR/started"
    write_configs

    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    [[ -s /etc/munge/munge.key ]] || { mungekey --create --keyfile /etc/munge/munge.key; chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }
    start_daemon munged /run/munge/munged.pid runuser -u munge -- /usr/sbin/munged
    wait_for 20 munge sh -c 'munge -n | unmunge'

    mkdir -p /run/mysqld && chown mysql:root /run/mysqld
    # mariadbd drops to the mysql user before writing its pid file, so it lives in /run/mysqld.
    start_daemon mariadbd /run/mysqld/codeparrot-mariadbd.pid sh -c \
        "nohup /usr/sbin/mariadbd --user=mysql --pid-file=/run/mysqld/codeparrot-mariadbd.pid >$STATE_DIR/mariadbd.log 2>&1 &"
    wait_for "$TIMEOUT" MariaDB mariadb-admin ping

    start_daemon slurmdbd "$STATE_DIR/slurmdbd.pid" /usr/sbin/slurmdbd
    wait_for "$TIMEOUT" slurmdbd timeout 5 sacctmgr -n list cluster
    add_association

    start_daemon slurmctld "$STATE_DIR/slurmctld.pid" /usr/sbin/slurmctld
    start_daemon slurmd "$STATE_DIR/slurmd.pid" /usr/sbin/slurmd
    wait_for "$TIMEOUT" "node $(hostname -s) (idle)" cluster_answers
    log "cluster $CLUSTER is up: $(sinfo -h -o '%P %D %T %G' | tr '\n' ';')"
}

main "$@"
