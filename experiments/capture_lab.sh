#!/usr/bin/env bash
# Records flowjax's lab dataset: benign traffic and bounded attacks between four hosts in
# network namespaces, captured with tcpdump, turned into flows and labelled by attack window.
#
# Usage (root; Debian packages and the flow meter as in flowjax/datasets/lab/README.md):
#   PYTHON=.venv/bin/python experiments/capture_lab.sh [OUTDIR]     # about 6 minutes
# Writes OUTDIR/{lab.pcap, windows.csv, flows.csv, flows.csv.gz, versions.txt, logs/}.
#
# Containment: the hosts live in namespaces fjlab-{srv,cli1,cli2,atk}, each joined by a veth
# pair to a bridge in namespace fjlab-sw. Both ends of every veth are created inside those
# namespaces; the host's own interfaces and routes are never touched. Addresses are 10.66.0.0/24
# with no default route, and each namespace resolves names with the lab's own DNS server, so
# no packet can leave. Every loop is bounded by a count and a time limit, every tool runs under
# `timeout`, and an EXIT trap kills what the script started (by PID and by namespace) and
# deletes the namespaces, the per-namespace resolv.conf files and the lab's user account.
set -euo pipefail

OUT=$(realpath -m "${1:-lab_capture}")
PY=${PYTHON:-python3}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SEED=${SEED:-6}
BENIGN_LEAD_S=20      # benign-only traffic before the first attack
GAP_S=10              # benign-only traffic between attacks, and after the last one
CLIENT_MAX_S=420      # hard cap on each benign client's run time
CLIENT_MAX_ACTIONS=600
export TZ=UTC LC_ALL=C

NET=10.66.0
SRV=$NET.10 CLI1=$NET.21 CLI2=$NET.22 ATK=$NET.66
HOSTS=(srv cli1 cli2 atk)
declare -A ADDR=([srv]=$SRV [cli1]=$CLI1 [cli2]=$CLI2 [atk]=$ATK)
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
  printf '%s www.lab ssh.lab ftp.lab files.lab intranet.lab\n%s cli1.lab\n%s cli2.lab\n' \
    "$SRV" "$CLI1" "$CLI2" > "$T/dns/hosts"
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
benign_client() {
  local seed=$1 stop=$2 max_s=$3 max_n=$4 n=0 end page
  end=$((SECONDS + max_s))
  local ssh_opts=(-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR
                  -o ConnectTimeout=5 -o PubkeyAuthentication=no)
  RANDOM=$seed
  while ((SECONDS < end && n < max_n)) && [[ ! -e $stop ]]; do
    n=$((n + 1))
    page="p$((RANDOM % 24 + 1)).html"
    case $((RANDOM % 12)) in
      0 | 1 | 2) timeout 20 curl -s -o /dev/null -m 15 "http://www.lab/$page" ;;
      3) timeout 20 curl -s -o /dev/null -o /dev/null -o /dev/null -m 15 "http://www.lab/" \
           "http://www.lab/$page" "http://intranet.lab/p$((RANDOM % 24 + 1)).html" ;;
      4) timeout 20 curl -s -o /dev/null -m 15 "http://www.lab/missing$RANDOM.html" ;;
      5) timeout 5 dig +tries=1 +time=2 "$(echo www ssh ftp files intranet cli1 cli2 \
           | tr ' ' '\n' | sed -n "$((RANDOM % 7 + 1))p").lab" ;;
      6) timeout 5 dig +tries=1 +time=2 "host$RANDOM.lab" ;;
      7 | 8) timeout 20 sshpass -p "$LAB_PASS" ssh "${ssh_opts[@]}" "$LAB_USER@ssh.lab" \
           "ls -l files; cat notes.txt; uptime" ;;
      9) timeout 30 sshpass -p "$LAB_PASS" scp "${ssh_opts[@]}" \
           "$LAB_USER@ssh.lab:files/f$((RANDOM % 5 + 1)).bin" /dev/null ;;
      10 | 11) timeout 30 curl -s -o /dev/null -m 25 \
           "ftp://$LAB_USER:$LAB_PASS@ftp.lab/files/f$((RANDOM % 5 + 1)).bin" ;;
    esac > /dev/null 2>&1 || true
    sleep "$((RANDOM % 2)).$((RANDOM % 10))"
  done
}
export -f benign_client
export LAB_USER LAB_PASS

# attack LABEL LIMIT_S CMD...: runs one bounded attack from the attacker host, records its window.
attack() {
  local label=$1 limit=$2 start end
  shift 2
  log "attack $label: $*"
  start=$(date +%s.%N)
  (cd "$T" && ns atk timeout "$limit" "$@") > "$OUT/logs/$label.log" 2>&1 || true
  end=$(date +%s.%N)
  echo "$label,$ATK,$start,$end" >> "$OUT/windows.csv"
  log "attack $label done in $(awk "BEGIN { printf \"%.1f\", $end - $start }") s"
  sleep "$GAP_S"
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
  log "output $OUT, work dir $T"
  build_network
  make_content
  start_services
  log "services up; capturing on srv eth0"
  ip netns exec fjlab-srv tcpdump -i eth0 -n -s 0 -U -Z root -w "$OUT/lab.pcap" ip \
    2> "$OUT/logs/tcpdump.log" & local tcpdump_pid=$!
  PIDS+=("$tcpdump_pid")
  sleep 2
  local stop="$T/stop-benign" clients=()
  local h u
  for h in cli1 cli2; do
    for u in 1 2; do  # two users on each client host
      ip netns exec "fjlab-$h" bash -c \
        "benign_client $u${h: -1}$SEED $stop $CLIENT_MAX_S $CLIENT_MAX_ACTIONS" & clients+=($!)
    done
  done
  PIDS+=("${clients[@]}")
  sleep "$BENIGN_LEAD_S"
  echo "label,host,start,end" > "$OUT/windows.csv"
  attack PortScan 90 bash -c "nmap -n -Pn -sS -T4 --max-retries 1 -p 1-1000 $SRV;
    nmap -n -Pn -sT -sV --version-light -T4 --top-ports 200 $SRV"
  attack SYNFlood 30 hping3 -q -S -p 80 -i u1000 -c 1000 "$SRV"
  attack BruteForce-SSH 75 hydra -I -f -t 8 -l "$LAB_USER" -P "$T/words.txt" "ssh://$SRV"
  attack BruteForce-FTP 75 hydra -I -f -t 8 -l "$LAB_USER" -P "$T/words.txt" "ftp://$SRV"
  attack SlowHTTP 70 slowhttptest -H -c 200 -r 50 -i 10 -l 45 -x 24 -p 3 -u "http://$SRV/"
  touch "$stop"
  log "attacks done; waiting for the benign clients"
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
