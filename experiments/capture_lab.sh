#!/usr/bin/env bash
# Records flowjax's lab datasets: benign traffic and bounded attacks between hosts in network
# namespaces, captured with tcpdump, turned into flows and labelled by attack window.
#
# Usage (root; Debian packages and the flow meter as in flowjax/datasets/lab/README.md):
#   PYTHON=.venv/bin/python experiments/capture_lab.sh [OUTDIR]     # `lab`, about 6 minutes
#   DATASET=lab-trace PYTHON=.venv/bin/python experiments/capture_lab.sh [OUTDIR]  # ~25 min
# Writes OUTDIR/{lab.pcap, windows.csv, flows.csv, flows.csv.gz, versions.txt, logs/}.
#
# DATASET=lab (the default): four hosts, srv, cli1, cli2 (two users each) and atk; the five
#   attacks run one after another, 10 s apart, in a capture of about 4 minutes.
# DATASET=lab-trace: eleven hosts, srv, cli1-cli8 (nine users, from heavy to light) and two
#   attackers atk1 and atk2; TRACE_S (default 1200) seconds of benign traffic, with ten
#   bounded attacks at seeded times spread across it. TRACE_S=120 is a short dry run (the
#   attacks then run back to back, so it takes about 7 minutes).
#
# Containment: the hosts live in namespaces fjlab-<host> (fjlab-srv, fjlab-cli1, ..., and
# fjlab-atk or fjlab-atk1 and fjlab-atk2), each joined by a veth pair to a bridge in namespace
# fjlab-sw. Both ends of every veth are created inside those namespaces; the host's own
# interfaces and routes are never touched. Addresses are 10.66.0.0/24 with no default route,
# and each namespace resolves names with the lab's own DNS server, so no packet can leave. Every loop is bounded by a count and a time limit, every tool runs under
# `timeout`, and an EXIT trap kills what the script started (by PID and by namespace) and
# deletes the namespaces, the per-namespace resolv.conf files and the lab's user account.
set -euo pipefail

OUT=$(realpath -m "${1:-lab_capture}")
PY=${PYTHON:-python3}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SEED=${SEED:-6}
DATASET=${DATASET:-lab}
export TZ=UTC LC_ALL=C

NET=10.66.0
SRV=$NET.10
declare -A ADDR=([srv]=$SRV)
case $DATASET in
  lab)
    BENIGN_LEAD_S=20      # benign-only traffic before the first attack
    GAP_S=10              # benign-only traffic between attacks, and after the last one
    CLIENT_MAX_S=420      # hard cap on each benign client's run time
    CLIENT_MAX_ACTIONS=600
    CLIENTS=(cli1 cli2)
    ATTACKERS=(atk)
    # One benign user per entry: host, profile (see benign_client), mean think time (empty:
    # uniform 0-1.9 s).
    USERS=("cli1 mixed" "cli1 mixed" "cli2 mixed" "cli2 mixed")
    ;;
  lab-trace)
    TRACE_S=${TRACE_S:-1200}  # capture length: benign traffic from start to end
    [[ $TRACE_S =~ ^[0-9]+$ ]] && ((TRACE_S >= 60 && TRACE_S <= 1800)) \
      || { echo "TRACE_S must be 60-1800 seconds" >&2; exit 2; }
    BENIGN_LEAD_S=$((TRACE_S / 20))  # benign-only traffic before the first attack's slot
    TAIL_S=$((TRACE_S / 20))         # and at least this much after the last attack
    MIN_GAP_S=3                      # at least this much between two attacks
    CLIENT_MAX_S=$((TRACE_S + 600))  # hard cap on each benign client's run time
    CLIENT_MAX_ACTIONS=3000
    CLIENTS=(cli1 cli2 cli3 cli4 cli5 cli6 cli7 cli8)
    ATTACKERS=(atk1 atk2)
    # Heavy to light: cli1 has two busy users, cli8 one who acts every 40 s or so.
    USERS=("cli1 mixed 0.8" "cli1 web 1.2" "cli2 web 1.0" "cli3 admin 4" "cli4 web 6"
           "cli5 files 10" "cli6 mixed 15" "cli7 web 25" "cli8 admin 40")
    ;;
  *) echo "DATASET must be lab or lab-trace" >&2; exit 2 ;;
esac
for i in "${!CLIENTS[@]}"; do ADDR[${CLIENTS[i]}]=$NET.$((21 + i)); done
for i in "${!ATTACKERS[@]}"; do ADDR[${ATTACKERS[i]}]=$NET.$((66 + i)); done
HOSTS=(srv "${CLIENTS[@]}" "${ATTACKERS[@]}")
LAB_USER=fjlab
LAB_PASS=wintergarden42
T=""  # work dir, made in main after the preflight checks
PIDS=()
CREATED_USER=0

log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$OUT/logs/run.log"; }
ns() { local h=$1; shift; ip netns exec "fjlab-$h" "$@"; }

cleanup() {
  set +e
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  sleep 1
  for h in "${HOSTS[@]}" sw; do
    if ip netns list | grep -qw "fjlab-$h"; then
      for p in $(ip netns pids "fjlab-$h"); do kill -9 "$p" 2>/dev/null; done
      ip netns del "fjlab-$h"
    fi
    rm -rf "/etc/netns/fjlab-$h"
  done
  rmdir /etc/netns 2>/dev/null
  if [[ $CREATED_USER == 1 ]]; then userdel -r "$LAB_USER" 2>/dev/null; fi
  [[ -n $T ]] && rm -rf "$T"
}

preflight() {
  [[ $EUID == 0 ]] || { echo "capture_lab.sh needs root (namespaces, raw sockets)" >&2; exit 2; }
  local missing=()
  for c in ip tcpdump nmap hping3 nginx dnsmasq sshd vsftpd hydra slowhttptest curl dig \
           sshpass ssh scp ethtool ss timeout useradd chpasswd gzip; do
    command -v "$c" >/dev/null || missing+=("$c")
  done
  ((${#missing[@]} == 0)) || { echo "missing commands: ${missing[*]}" >&2; exit 2; }
  (cd "$REPO" && "$PY" -c "from flowjax import pcap; pcap._load_meter()") \
    || { echo "$PY cannot import the flow meter (pip install 'flowjax[pcap]')" >&2; exit 2; }
  if ip netns list | grep -q '^fjlab-'; then echo "fjlab-* namespaces exist" >&2; exit 2; fi
  if getent passwd "$LAB_USER" >/dev/null; then echo "user $LAB_USER exists" >&2; exit 2; fi
}

build_network() {
  ip netns add fjlab-sw
  ip netns exec fjlab-sw ip link set lo up
  ip netns exec fjlab-sw ip link add br0 type bridge
  ip netns exec fjlab-sw ip link set br0 up
  for h in "${HOSTS[@]}"; do
    ip netns add "fjlab-$h"
    mkdir -p "/etc/netns/fjlab-$h"
    printf 'nameserver %s\nsearch lab\noptions timeout:1 attempts:1\n' "$SRV" \
      > "/etc/netns/fjlab-$h/resolv.conf"
    ip link add eth0 netns "fjlab-$h" type veth peer name "$h" netns fjlab-sw
    ip netns exec fjlab-sw ip link set "$h" master br0 up
    ns "$h" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
    ns "$h" ip link set lo up
    ns "$h" ip addr add "${ADDR[$h]}/24" dev eth0
    ns "$h" ip link set eth0 up
    # Segment in the stack so that tcpdump sees wire-sized packets, as on a real link.
    ns "$h" ethtool -K eth0 tso off gso off gro off >/dev/null 2>&1
    ip netns exec fjlab-sw ethtool -K "$h" tso off gso off gro off >/dev/null 2>&1
  done
  ip netns exec fjlab-sw sysctl -qw net.ipv6.conf.all.disable_ipv6=1
  if ns srv ip route | grep -q default; then echo "unexpected default route" >&2; exit 3; fi
}

make_content() {
  local i size
  mkdir -p "$T/www" "$T/nginx/tmp" "$T/ssh" "$T/dns" "$T/ftp"
  chmod 755 "$T" "$T/www"
  RANDOM=$SEED
  echo "<html><body>flowjax lab</body></html>" > "$T/www/index.html"
  for i in $(seq 1 24); do
    size=$(( (RANDOM % 64 + 1) * (RANDOM % 4 == 0 ? 4096 : 256) ))
    head -c "$size" < <(yes "flowjax lab page $i lorem ipsum dolor sit amet") > "$T/www/p$i.html"
  done
  useradd --create-home --shell /bin/bash "$LAB_USER"
  CREATED_USER=1
  echo "$LAB_USER:$LAB_PASS" | chpasswd
  mkdir -p "/home/$LAB_USER/files"
  for i in 1 2 3 4 5; do head -c $((i * i * 20000)) /dev/urandom > "/home/$LAB_USER/files/f$i.bin"; done
  echo "notes of the lab user" > "/home/$LAB_USER/notes.txt"
  chown -R "$LAB_USER:" "/home/$LAB_USER"
  # Brute-force word list: 100 common passwords and variants, the real one, 40 more.
  local w s
  for w in password 123456 qwerty letmein admin welcome dragon monkey sunshine princess \
           football shadow master hello freedom whatever trustno1 iloveyou starwars secret; do
    for s in "" 1 12 123 2024 ! 01; do echo "$w$s"; done
  done > "$T/all-words.txt"
  { head -n 100 "$T/all-words.txt"; echo "$LAB_PASS"; tail -n +101 "$T/all-words.txt"; } \
    > "$T/words.txt"
}

start_services() {
  cat > "$T/nginx/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $T/nginx/nginx.pid;
error_log $T/nginx/error.log;
events { worker_connections 1024; }
http {
  access_log $T/nginx/access.log;
  client_body_temp_path $T/nginx/tmp; proxy_temp_path $T/nginx/tmp;
  fastcgi_temp_path $T/nginx/tmp; uwsgi_temp_path $T/nginx/tmp; scgi_temp_path $T/nginx/tmp;
  types { text/html html; }
  keepalive_timeout 15;
  server { listen $SRV:80; server_name www.lab; root $T/www; }
}
EOF
  ssh-keygen -q -t ed25519 -N '' -f "$T/ssh/host_key"
  cat > "$T/ssh/sshd_config" <<EOF
ListenAddress $SRV
HostKey $T/ssh/host_key
PidFile $T/ssh/sshd.pid
UsePAM no
PasswordAuthentication yes
KbdInteractiveAuthentication no
PermitRootLogin no
AllowUsers $LAB_USER
MaxStartups 30:30:100
UseDNS no
Subsystem sftp internal-sftp
EOF
  mkdir -p /run/sshd /var/run/vsftpd/empty
  cat > "$T/ftp/vsftpd.conf" <<EOF
listen=YES
listen_ipv6=NO
listen_address=$SRV
background=NO
anonymous_enable=NO
local_enable=YES
write_enable=NO
pasv_enable=YES
pasv_address=$SRV
pasv_min_port=40000
pasv_max_port=40100
pam_service_name=vsftpd
secure_chroot_dir=/var/run/vsftpd/empty
seccomp_sandbox=NO
xferlog_enable=NO
EOF
  local h
  {
    echo "$SRV www.lab ssh.lab ftp.lab files.lab intranet.lab"
    for h in "${CLIENTS[@]}"; do echo "${ADDR[$h]} $h.lab"; done
  } > "$T/dns/hosts"
  # `ip netns exec` execs the command, so $! is the service's own PID.
  ip netns exec fjlab-srv nginx -p "$T/nginx" -c "$T/nginx/nginx.conf" -e "$T/nginx/error.log" \
    > "$OUT/logs/nginx.log" 2>&1 & PIDS+=($!)
  ip netns exec fjlab-srv /usr/sbin/sshd -D -e -f "$T/ssh/sshd_config" \
    > "$OUT/logs/sshd.log" 2>&1 & PIDS+=($!)
  ip netns exec fjlab-srv vsftpd "$T/ftp/vsftpd.conf" > "$OUT/logs/vsftpd.log" 2>&1 & PIDS+=($!)
  ip netns exec fjlab-srv dnsmasq --keep-in-foreground --no-resolv --no-hosts --addn-hosts="$T/dns/hosts" \
    --listen-address="$SRV" --bind-interfaces --local=/lab/ --domain-needed \
    --pid-file="$T/dns/dnsmasq.pid" --log-facility="$OUT/logs/dnsmasq.log" & PIDS+=($!)
  local i
  for i in $(seq 1 40); do
    if ns srv ss -ltnu | grep -q "$SRV:80 " && ns srv ss -ltn | grep -q "$SRV:22 " \
       && ns srv ss -ltn | grep -q "$SRV:21 " && ns srv ss -lun | grep -q "$SRV:53 "; then
      return 0
    fi
    sleep 0.25
  done
  echo "services did not start; see $OUT/logs" >&2
  exit 3
}

# One benign user: web pages (names resolved by the lab DNS), DNS look-ups, SSH sessions,
# scp and FTP downloads, with think times. Stops at the stop file, the time cap or the count.
# The profile weights the actions (12 draws: W page, K three pages on one connection, N a
# missing page, D a known name, X an unknown name, S ssh, C scp, F ftp); `mixed` is the `lab`
# user. Think time: uniform 0-1.9 s, or exponential with the given mean, capped at 8 means.
benign_client() {
  local seed=$1 stop=$2 max_s=$3 max_n=$4 profile=${5:-mixed} think=${6:-} n=0 end page acts
  local whole frac k
  end=$((SECONDS + max_s))
  local ssh_opts=(-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR
                  -o ConnectTimeout=5 -o PubkeyAuthentication=no)
  local names
  read -r -a names <<< "$DIG_NAMES"
  case $profile in
    mixed) acts=WWWKNDXSSCFF ;;
    web) acts=WWWWWKKKNDDX ;;
    admin) acts=SSSSSCCWDDXF ;;
    files) acts=FFFFFCCWWKDS ;;
    *) echo "unknown profile $profile" >&2; return 2 ;;
  esac
  RANDOM=$seed
  while ((SECONDS < end && n < max_n)) && [[ ! -e $stop ]]; do
    n=$((n + 1))
    page="p$((RANDOM % 24 + 1)).html"
    case ${acts:$((RANDOM % 12)):1} in
      W) timeout 20 curl -s -o /dev/null -m 15 "http://www.lab/$page" ;;
      K) timeout 20 curl -s -o /dev/null -o /dev/null -o /dev/null -m 15 "http://www.lab/" \
           "http://www.lab/$page" "http://intranet.lab/p$((RANDOM % 24 + 1)).html" ;;
      N) timeout 20 curl -s -o /dev/null -m 15 "http://www.lab/missing$RANDOM.html" ;;
      D) timeout 5 dig +tries=1 +time=2 "${names[RANDOM % ${#names[@]}]}.lab" ;;
      X) timeout 5 dig +tries=1 +time=2 "host$RANDOM.lab" ;;
      S) timeout 20 sshpass -p "$LAB_PASS" ssh "${ssh_opts[@]}" "$LAB_USER@ssh.lab" \
           "ls -l files; cat notes.txt; uptime" ;;
      C) timeout 30 sshpass -p "$LAB_PASS" scp "${ssh_opts[@]}" \
           "$LAB_USER@ssh.lab:files/f$((RANDOM % 5 + 1)).bin" /dev/null ;;
      F) timeout 30 curl -s -o /dev/null -m 25 \
           "ftp://$LAB_USER:$LAB_PASS@ftp.lab/files/f$((RANDOM % 5 + 1)).bin" ;;
    esac > /dev/null 2>&1 || true
    if [[ -z $think ]]; then
      sleep "$((RANDOM % 2)).$((RANDOM % 10))"
    else  # in whole seconds that look at the stop file, so that a long pause ends with it
      read -r whole frac < <(awk -v r=$RANDOM -v m="$think" 'BEGIN {
        t = -m * log((r + 1) / 32769); t = t < 8 * m ? t : 8 * m; printf "%d %.2f", t, t - int(t) }')
      sleep "$frac"
      for ((k = 0; k < whole; k++)); do [[ -e $stop ]] && break; sleep 1; done
    fi
  done
}
export -f benign_client
export LAB_USER LAB_PASS
export DIG_NAMES="www ssh ftp files intranet ${CLIENTS[*]}"

# attack LABEL HOST LIMIT_S CMD...: runs one bounded attack from an attacker host and
# records its window.
attack() {
  local label=$1 host=$2 limit=$3 start end
  shift 3
  log "attack $label from $host: $*"
  start=$(date +%s.%N)
  (cd "$T" && ns "$host" timeout "$limit" "$@") >> "$OUT/logs/$label-$host.log" 2>&1 || true
  end=$(date +%s.%N)
  echo "$label,${ADDR[$host]},$start,$end" >> "$OUT/windows.csv"
  log "attack $label from $host done in $(awk "BEGIN { printf \"%.1f\", $end - $start }") s"
}

# `lab`: the five attacks one after another from atk, GAP_S apart.
lab_attacks() {
  attack PortScan atk 90 bash -c "nmap -n -Pn -sS -T4 --max-retries 1 -p 1-1000 $SRV;
    nmap -n -Pn -sT -sV --version-light -T4 --top-ports 200 $SRV"
  sleep "$GAP_S"
  attack SYNFlood atk 30 hping3 -q -S -p 80 -i u1000 -c 1000 "$SRV"
  sleep "$GAP_S"
  attack BruteForce-SSH atk 75 hydra -I -f -t 8 -l "$LAB_USER" -P "$T/words.txt" "ssh://$SRV"
  sleep "$GAP_S"
  attack BruteForce-FTP atk 75 hydra -I -f -t 8 -l "$LAB_USER" -P "$T/words.txt" "ftp://$SRV"
  sleep "$GAP_S"
  attack SlowHTTP atk 70 slowhttptest -H -c 200 -r 50 -i 10 -l 45 -x 24 -p 3 -u "http://$SRV/"
  sleep "$GAP_S"
}

# `lab-trace`: ten attacks, each in its own slot of the capture after the benign lead, at a
# seeded offset inside the slot (so that it ends before the slot does if it takes its usual
# time), and never sooner than MIN_GAP_S after the previous one. Then benign traffic goes on
# to TRACE_S, and for at least TAIL_S after the last attack. Entries: label|host|limit s|
# usual duration s|command (run by bash inside the attacker's namespace, under timeout).
lab_trace_attacks() {
  local t0=$1 schedule=(
    "PortScan|atk1|90|10|nmap -n -Pn -sS -T4 --max-retries 1 -p 1-1000 $SRV; nmap -n -Pn -sT -sV --version-light -T4 --top-ports 200 $SRV"
    "BruteForce-SSH|atk2|75|70|hydra -I -f -t 8 -l $LAB_USER -P $T/words.txt ssh://$SRV"
    "SYNFlood|atk1|30|2|hping3 -q -S -p 80 -i u1000 -c 1000 $SRV"
    "SlowHTTP|atk2|70|50|slowhttptest -H -c 200 -r 50 -i 10 -l 45 -x 24 -p 3 -u http://$SRV/"
    "BruteForce-FTP|atk1|75|50|hydra -I -f -t 8 -l $LAB_USER -P $T/words.txt ftp://$SRV"
    "PortScan|atk2|90|20|nmap -n -Pn -sT -T3 --max-retries 1 --scan-delay 10ms -p 1-1500 $SRV"
    "SYNFlood|atk2|30|3|hping3 -q -S -p 21 -i u500 -c 2000 $SRV"
    "BruteForce-SSH|atk1|75|70|hydra -I -f -t 8 -l $LAB_USER -P $T/words.txt ssh://$SRV"
    "BruteForce-FTP|atk2|75|50|hydra -I -f -t 8 -l $LAB_USER -P $T/words.txt ftp://$SRV"
    "SlowHTTP|atk1|70|50|slowhttptest -H -c 200 -r 50 -i 10 -l 45 -x 24 -p 3 -u http://$SRV/"
  )
  local n=${#schedule[@]} slot i at label host limit usual cmd
  slot=$(((TRACE_S - BENIGN_LEAD_S - TAIL_S) / n))
  RANDOM=$((SEED * 1000 + 17))
  for i in "${!schedule[@]}"; do
    IFS='|' read -r label host limit usual cmd <<< "${schedule[i]}"
    at=$((t0 + BENIGN_LEAD_S + i * slot + RANDOM % (slot > usual ? slot - usual : 1)))
    ((at >= EPOCHSECONDS + MIN_GAP_S)) || at=$((EPOCHSECONDS + MIN_GAP_S))
    log "next: $label from $host at +$((at - t0)) s"
    sleep $((at - EPOCHSECONDS))
    attack "$label" "$host" "$limit" bash -c "$cmd"
  done
  at=$((t0 + TRACE_S))
  ((at >= EPOCHSECONDS + TAIL_S)) || at=$((EPOCHSECONDS + TAIL_S))
  log "attacks done; benign traffic until +$((at - t0)) s"
  sleep $((at - EPOCHSECONDS))
}

write_versions() {
  {
    echo "kernel $(uname -r)"
    dpkg-query -W -f='${Package} ${Version}\n' tcpdump nmap hping3 nginx-light dnsmasq-base \
      openssh-server openssh-client vsftpd hydra slowhttptest curl bind9-dnsutils sshpass \
      2>/dev/null
    "$PY" -c "import importlib.metadata as m, sys; print('python', sys.version.split()[0]);
[print(p, m.version(p)) for p in ('cicflowmeter', 'scapy', 'numpy', 'scipy')]"
  } > "$OUT/versions.txt"
}

main() {
  preflight
  mkdir -p "$OUT/logs"
  rm -f "$OUT/windows.csv" "$OUT/lab.pcap"
  trap cleanup EXIT INT TERM
  T=$(mktemp -d /tmp/fjlab.XXXXXX)
  log "dataset $DATASET, seed $SEED, output $OUT, work dir $T"
  build_network
  make_content
  start_services
  log "services up; capturing on srv eth0"
  ip netns exec fjlab-srv tcpdump -i eth0 -n -s 0 -U -Z root -w "$OUT/lab.pcap" ip \
    2> "$OUT/logs/tcpdump.log" & local tcpdump_pid=$!
  PIDS+=("$tcpdump_pid")
  sleep 2
  local stop="$T/stop-benign" clients=() t0=$EPOCHSECONDS
  local user h prof think
  local -A users_on=()
  for user in "${USERS[@]}"; do
    read -r h prof think <<< "$user"
    users_on[$h]=$((${users_on[$h]:-0} + 1))  # the seed: user number, host number, SEED
    ip netns exec "fjlab-$h" bash -c "benign_client ${users_on[$h]}${h#cli}$SEED $stop \
      $CLIENT_MAX_S $CLIENT_MAX_ACTIONS $prof $think" & clients+=($!)
  done
  PIDS+=("${clients[@]}")
  echo "label,host,start,end" > "$OUT/windows.csv"
  if [[ $DATASET == lab ]]; then
    sleep "$BENIGN_LEAD_S"
    lab_attacks
  else
    lab_trace_attacks "$t0"
  fi
  touch "$stop"
  log "stopping the benign clients"
  wait "${clients[@]}" || true
  sleep 2
  kill -INT "$tcpdump_pid"
  wait "$tcpdump_pid" || true
  log "tcpdump: $(grep -E 'captured|dropped' "$OUT/logs/tcpdump.log" | tr '\n' ' ')"
  write_versions
  cleanup
  trap - EXIT INT TERM
  log "extracting and labelling flows"
  (cd "$REPO" && "$PY" -m experiments.extract_flows --pcap="$OUT/lab.pcap" \
    --out="$OUT/flows.csv" --windows="$OUT/windows.csv" --logtostderr) 2>&1 \
    | tee -a "$OUT/logs/run.log"
  gzip -9 -n -c "$OUT/flows.csv" > "$OUT/flows.csv.gz"
  log "done: $OUT/flows.csv.gz ($(stat -c %s "$OUT/flows.csv.gz") bytes)"
}

main "$@"
