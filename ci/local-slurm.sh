#!/usr/bin/env bash
# ci/local-slurm.sh - a real single-node Slurm cluster on this machine, for the cluster test tier.
#
#   ci/local-slurm.sh up      install the Debian packages when missing (slurm-wlm 22.05, munge,
#                             slurmdbd, MariaDB), write the configs, start munged, mariadbd,
#                             slurmdbd, slurmctld and slurmd, create the cluster and the account,
#                             wait until the node is idle. Safe to run again (a no-op when up).
#   ci/local-slurm.sh down    cancel the cluster's jobs, then stop exactly the daemons `up` started
#                             (by the pid it recorded, checked against the process start time).
#   ci/local-slurm.sh status  the daemons and the node; exit 0 only when every daemon is ours and up.
#
# Needs root and apt-get (Debian 12). No systemd and no cgroup plugin: works in containers.
# Config files under /etc are written only when absent or carrying this script's marker line;
# anything else is left alone and `up` stops with an error.
#
# Environment (all optional):
#   S3A_SLURM_STATE      pid records and daemon output             [/var/tmp/s3a-local-slurm]
#   S3A_SLURM_CPUS       CPUs the node advertises (more than the machine has is fine: jobs
#                        asking for 2 threads must fit on a 2-core CI box)                    [4]
#   S3A_SLURM_MEM_MB     node memory in MB                                  [85% of MemTotal]
#   S3A_SLURM_GPUS       fake GPUs to advertise as gres/gpu (char devices aliasing /dev/null) [0]
#   S3A_SLURM_PARTITION  partition                                                       [debug]
#   S3A_SLURM_ACCOUNT    account created for the calling user                            [s3a-ci]
#   S3A_SLURM_CLUSTER    ClusterName                                                  [s3a-local]
set -euo pipefail

STATE=${S3A_SLURM_STATE:-/var/tmp/s3a-local-slurm}
CPUS=${S3A_SLURM_CPUS:-4}
GPUS=${S3A_SLURM_GPUS:-0}
PARTITION=${S3A_SLURM_PARTITION:-debug}
ACCOUNT=${S3A_SLURM_ACCOUNT:-s3a-ci}
CLUSTER=${S3A_SLURM_CLUSTER:-s3a-local}
ETC=/etc/slurm
MARKER="# written by s3a ci/local-slurm.sh; edits are overwritten"
DB_PASS=s3a-local-slurm
NODE=$(hostname -s)
PACKAGES=(munge slurm-client slurmctld slurmd slurmdbd mariadb-server)
# start order; `down` stops in reverse
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)
CHANGED=0 # set when a config file was (re)written: running daemons of ours are restarted

say() { printf '[local-slurm %s] %s\n' "$(date +%T)" "$*" >&2; }
die() {
  say "ERROR: $*"
  exit 1
}

# poll SECONDS CMD...: run CMD every half second until it succeeds
poll() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
}

# --- pid records: "<pid> <start time in clock ticks>" per daemon, so a reused pid is never ours ---
start_time() { [[ -r /proc/$1/stat ]] && sed 's/^.*) //' "/proc/$1/stat" | cut -d' ' -f20; }

ours() { # ours NAME: the daemon we recorded is still that same process
  local rec=$STATE/$1.pid pid t
  [[ -s $rec ]] || return 1
  read -r pid t <"$rec"
  [[ -n $pid && "$(start_time "$pid" 2>/dev/null)" == "$t" ]]
}

# launch NAME CMD...: run a daemon in the foreground of its own session, record its pid
launch() {
  local name=$1 pid
  shift
  setsid "$@" </dev/null >>"$STATE/$name.out" 2>&1 &
  pid=$!
  sleep 0.3
  [[ -d /proc/$pid ]] || die "$name exited at once: $(tail -n 5 "$STATE/$name.out")"
  echo "$pid $(start_time "$pid")" >"$STATE/$name.pid"
  say "started $name (pid $pid, output in $STATE/$name.out)"
}

stop() { # stop NAME: TERM, then KILL after 30 s, the recorded process only
  local rec=$STATE/$1.pid pid t
  if ours "$1"; then
    read -r pid t <"$rec"
    say "stopping $1 (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    if ! poll 30 bash -c "[[ ! -d /proc/$pid ]]"; then
      say "$1 (pid $pid) ignored TERM: sending KILL"
      kill -KILL "$pid" 2>/dev/null || true
      poll 10 bash -c "[[ ! -d /proc/$pid ]]" || say "WARNING: $1 (pid $pid) still running"
    fi
  fi
  rm -f "$rec"
}

# --- installation and configuration ---
install_packages() {
  local p missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  command -v apt-get >/dev/null || die "apt-get not found: install ${missing[*]} (Debian names) yourself"
  say "installing ${missing[*]} (log: $STATE/apt.log)"
  {
    DEBIAN_FRONTEND=noninteractive apt-get update -q &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  } >"$STATE/apt.log" 2>&1 || {
    tail -n 15 "$STATE/apt.log" >&2
    die "apt-get install ${missing[*]} failed"
  }
}

# write_config PATH MODE OWNER < content: only files that are absent or carry our marker
write_config() {
  local path=$1 mode=$2 owner=$3 new
  new=$(mktemp)
  { echo "$MARKER"; cat; } >"$new"
  if [[ -e $path ]] && ! grep -qxF "$MARKER" "$path"; then
    rm -f "$new"
    die "$path exists and was not written by this script; refusing to overwrite it (move it away to use this script)"
  fi
  if [[ -e $path ]] && cmp -s "$new" "$path"; then
    rm -f "$new"
    return 0
  fi
  install -m "$mode" -o "${owner%:*}" -g "${owner#*:}" "$new" "$path"
  rm -f "$new"
  CHANGED=1
  say "wrote $path"
}

remove_config() { # a config we wrote earlier that the current settings do not need
  if [[ -e $1 ]] && grep -qxF "$MARKER" "$1"; then
    rm -f "$1"
    CHANGED=1
    say "removed $1"
  fi
}

write_configs() {
  local mem gres_types="" gres="" i devices
  mem=${S3A_SLURM_MEM_MB:-$(awk '/^MemTotal:/ {print int($2 * 0.85 / 1024)}' /proc/meminfo)}
  install -d -m 0755 "$ETC"
  install -d -o slurm -g slurm -m 0755 /var/lib/slurm /var/lib/slurm/ctld /var/lib/slurm/d /var/log/slurm
  getent hosts "$NODE" >/dev/null || die "host name '$NODE' does not resolve: add '127.0.0.1 $NODE' to /etc/hosts"

  if ((GPUS > 0)); then
    # gres/gpu needs device files; fake ones (same device numbers as /dev/null) let the
    # scheduler hand out GPUs on a machine without any
    install -d -m 0755 "$STATE/gpu"
    for ((i = 0; i < GPUS; i++)); do
      [[ -c $STATE/gpu/gpu$i ]] || mknod "$STATE/gpu/gpu$i" c 1 3 || die "mknod failed: set S3A_SLURM_GPUS=0"
    done
    devices="$STATE/gpu/gpu[0-$((GPUS - 1))]"
    ((GPUS == 1)) && devices=$STATE/gpu/gpu0
    write_config "$ETC/gres.conf" 0644 root:root <<<"NodeName=$NODE Name=gpu File=$devices"
    gres_types="GresTypes=gpu"
    gres="Gres=gpu:$GPUS"
  else
    remove_config "$ETC/gres.conf"
  fi

  write_config "$ETC/slurm.conf" 0644 root:root <<EOF
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=/var/lib/slurm/ctld
SlurmdSpoolDir=/var/lib/slurm/d
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
MailProg=/bin/true
MpiDefault=none
# no cgroups and no systemd: plain process tracking, no task confinement
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/none
# accounting in slurmdbd: sacct sees every job, with the comment Snakemake sets
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageEnforce=associations
AccountingStoreFlags=job_comment
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
ReturnToService=2
# finished jobs stay visible to squeue for an hour
MinJobAge=3600
# trust the CPU count below, although the machine may have fewer cores
SlurmdParameters=config_overrides
$gres_types
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS Boards=1 SocketsPerBoard=1 CoresPerSocket=$CPUS ThreadsPerCore=1 RealMemory=$mem $gres State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  # slurmd 22.05 loads a cgroup plugin even with the settings above; without systemd it must not ask it
  write_config "$ETC/cgroup.conf" 0644 root:root <<<$'CgroupPlugin=autodetect\nIgnoreSystemd=yes'
  write_config "$ETC/slurmdbd.conf" 0600 slurm:slurm <<EOF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=slurm
LogFile=/var/log/slurm/slurmdbd.log
PidFile=$STATE/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=s3a_slurm_acct
EOF
}

# --- the daemons, in start order ---
munge_works() { munge -n | unmunge; }
up_munged() {
  if ours munged; then return 0; fi
  if munge_works >/dev/null 2>&1; then
    say "using the munged already running (not started here, so never stopped here)"
    return 0
  fi
  install -d -o munge -g munge -m 0700 /etc/munge
  install -d -o munge -g munge -m 0755 /run/munge /var/lib/munge /var/log/munge
  if [[ ! -s /etc/munge/munge.key ]]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    say "created /etc/munge/munge.key"
  fi
  chown munge:munge /etc/munge/munge.key
  chmod 0400 /etc/munge/munge.key
  launch munged setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged --foreground
  poll 20 munge_works || die "munge does not work: $(tail -n 5 "$STATE/munged.out")"
}

db_works() { mariadb -e 'select 1'; }
up_mariadbd() {
  if ! ours mariadbd; then
    if db_works >/dev/null 2>&1; then
      say "using the MariaDB already running (not started here, so never stopped here)"
    else
      install -d -o mysql -g root -m 0755 /run/mysqld
      if [[ ! -d /var/lib/mysql/mysql ]]; then
        mariadb-install-db --user=mysql --datadir=/var/lib/mysql >>"$STATE/mariadbd.out" 2>&1 ||
          die "mariadb-install-db failed: $(tail -n 5 "$STATE/mariadbd.out")"
      fi
      launch mariadbd /usr/sbin/mariadbd --user=mysql --datadir=/var/lib/mysql --skip-networking \
        --socket=/run/mysqld/mysqld.sock --pid-file=/run/mysqld/mysqld.pid
      poll 60 db_works || die "MariaDB does not answer: $(tail -n 5 "$STATE/mariadbd.out")"
    fi
  fi
  mariadb -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
              ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
              GRANT ALL ON s3a_slurm_acct.* TO 'slurm'@'localhost';" ||
    die "cannot create the database user 'slurm'"
}

# restart_if_changed NAME: a daemon of ours reads its config at start; restart it after a change
restart_if_changed() {
  if ours "$1" && ((CHANGED)); then
    say "configuration changed: restarting $1"
    stop "$1"
  fi
}

up_slurmdbd() {
  restart_if_changed slurmdbd
  if ! ours slurmdbd; then
    sacctmgr -n show cluster >/dev/null 2>&1 && die "a slurmdbd not started by this script is answering; stop it first"
    launch slurmdbd /usr/sbin/slurmdbd -D
  fi
  poll 60 sacctmgr -n show cluster || die "slurmdbd does not answer: $(tail -n 5 /var/log/slurm/slurmdbd.log)"
  if ! sacctmgr -n -P show cluster "$CLUSTER" format=cluster | grep -qx "$CLUSTER"; then
    sacctmgr -i add cluster "$CLUSTER" >/dev/null
  fi
}

ctld_up() { scontrol ping | grep -q 'is UP'; }
up_slurmctld() {
  restart_if_changed slurmctld
  if ! ours slurmctld; then
    ctld_up 2>/dev/null && die "a slurmctld not started by this script is answering; stop it first"
    launch slurmctld /usr/sbin/slurmctld -D
  fi
  poll 60 ctld_up || die "slurmctld is not UP: $(tail -n 5 /var/log/slurm/slurmctld.log)"
}

up_slurmd() {
  restart_if_changed slurmd
  ours slurmd || launch slurmd /usr/sbin/slurmd -D
}

node_state() { sinfo -h -n "$NODE" -o %T 2>/dev/null; }
wait_node_idle() {
  local state i
  for ((i = 0; i < 120; i++)); do
    state=$(node_state || true)
    case $state in
      idle | mixed | allocated) return 0 ;;
      # left over from an earlier configuration of this cluster: bring it back
      *drain* | down* | *fail* | inval*) scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true ;;
    esac
    sleep 0.5
  done
  scontrol show node "$NODE" >&2 || true
  die "node $NODE is '$state', not idle: see /var/log/slurm/slurmd.log"
}

add_account() {
  local user
  user=$(id -un)
  sacctmgr -n -P show account "$ACCOUNT" format=account | grep -qx "$ACCOUNT" ||
    sacctmgr -i add account "$ACCOUNT" cluster="$CLUSTER" Description="s3a CI" Organization=s3a >/dev/null
  sacctmgr -n -P show assoc cluster="$CLUSTER" user="$user" account="$ACCOUNT" format=user | grep -qx "$user" ||
    sacctmgr -i add user "$user" account="$ACCOUNT" cluster="$CLUSTER" DefaultAccount="$ACCOUNT" >/dev/null
}

cmd_up() {
  local t0=$SECONDS
  [[ $(id -u) == 0 ]] || die "must run as root (it installs packages and starts system daemons)"
  install -d -m 0755 "$STATE"
  install_packages
  # the daemons' own pid files (written after they drop to the slurm user; this script uses $STATE/*.pid)
  install -d -o slurm -g slurm -m 0755 "$STATE/run"
  write_configs
  up_munged
  up_mariadbd
  up_slurmdbd
  up_slurmctld
  up_slurmd
  wait_node_idle
  add_account
  say "up in $((SECONDS - t0)) s: cluster $CLUSTER, node $NODE ($CPUS CPUs, $GPUS GPUs), partition $PARTITION, account $ACCOUNT"
}

cmd_down() {
  local jobs d
  if [[ $(id -u) != 0 ]]; then
    for d in "${DAEMONS[@]}"; do ours "$d" && die "must run as root to stop the daemons 'up' started"; done
    return 0
  fi
  if ours slurmctld; then
    jobs=$(squeue -h -o %i 2>/dev/null | tr '\n' ' ')
    if [[ -n ${jobs// /} ]]; then
      say "cancelling jobs $jobs"
      scancel $jobs 2>/dev/null || true
      poll 30 bash -c '[[ -z $(squeue -h -t PD,R,CG -o %i) ]]' || say "WARNING: jobs still listed: $(squeue -h -o %i | tr '\n' ' ')"
    fi
  fi
  local i
  for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do stop "${DAEMONS[i]}"; done
  say "down (configs stay in $ETC; the next 'up' reuses them)"
}

cmd_status() {
  local d rc=0 pid t
  for d in "${DAEMONS[@]}"; do
    if ours "$d"; then
      read -r pid t <"$STATE/$d.pid"
      echo "$d: running, pid $pid"
    else
      echo "$d: not running from this script"
      rc=1
    fi
  done
  if ((rc == 0)); then
    sinfo -N -o '%N %P %T %c %m %G' || rc=1
  fi
  return $rc
}

case ${1:-} in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  *)
    echo "usage: $0 up|down|status" >&2
    exit 2
    ;;
esac
