#!/bin/sh
# install.sh — install cluster as a service.
#
#   curl -sfL https://…/install.sh | sh -                      # server
#   curl -sfL https://…/install.sh | CLUSTER_URL=https://server:6443 CLUSTER_TOKEN=… sh -   # agent
#
# Environment (k3s-style):
#   CLUSTER_URL                    join this server: run `cluster agent` instead of `cluster server`
#   CLUSTER_TOKEN, CLUSTER_*       written to the service's env file (mode 0600), never the unit
#   INSTALL_CLUSTER_EXEC           extra flags, or a full "server …"/"agent …" command
#   INSTALL_CLUSTER_VERSION        release to download (default: latest)
#   INSTALL_CLUSTER_DOWNLOAD_URL   release base URL (default: https://github.com/cluster-io/cluster/releases)
#   INSTALL_CLUSTER_SKIP_DOWNLOAD  true: do not download; use INSTALL_CLUSTER_BIN_PATH
#   INSTALL_CLUSTER_BIN_PATH       local binary to install (air-gapped installs)
#   INSTALL_CLUSTER_SKIP_START     true: write the service but do not enable or start it
#   INSTALL_CLUSTER_BIN_DIR        where binaries and scripts go (default /usr/local/bin)
#   INSTALL_CLUSTER_DATA_DIR       data dir the uninstaller removes (default /var/lib/cluster)
# Air-gapped images: put *.tar image archives in <data-dir>/agent/images/ before starting.
set -eu

info() { echo "[INFO]  $*"; }
warn() { echo "[WARN]  $*" >&2; }
fatal() { echo "[ERROR] $*" >&2; exit 1; }

BIN_DIR=${INSTALL_CLUSTER_BIN_DIR:-/usr/local/bin}
DATA_DIR=${INSTALL_CLUSTER_DATA_DIR:-/var/lib/cluster}
SYSTEMD_DIR=/etc/systemd/system
OPENRC_DIR=/etc/init.d
SERVICE=cluster
DOWNLOAD_URL=${INSTALL_CLUSTER_DOWNLOAD_URL:-https://github.com/cluster-io/cluster/releases}

check_root() {
    [ "$(id -u)" -eq 0 ] || fatal "run as root (e.g. curl -sfL … | sudo sh -)"
}

detect_platform() {
    [ "$(uname -s)" = Linux ] || fatal "unsupported operating system $(uname -s): cluster runs on Linux only"
    case "$(uname -m)" in
        x86_64 | amd64) ARCH=amd64 ;;
        aarch64 | arm64) ARCH=arm64 ;;
        armv7l | armv7*) ARCH=arm ;;
        *) fatal "unsupported architecture $(uname -m): amd64, arm64 and arm are supported" ;;
    esac
}

# detect_init sets INIT to systemd, openrc, or none (systemd files are still written).
detect_init() {
    if [ -d /run/systemd/system ]; then
        INIT=systemd
    elif command -v openrc-run >/dev/null 2>&1 && command -v rc-update >/dev/null 2>&1; then
        INIT=openrc
    else
        INIT=none
    fi
}

download() { # url file
    if command -v curl >/dev/null 2>&1; then
        curl -fsSL -o "$2" "$1" || fatal "download $1 failed"
    elif command -v wget >/dev/null 2>&1; then
        wget -qO "$2" "$1" || fatal "download $1 failed"
    else
        fatal "neither curl nor wget is installed; install one, or use INSTALL_CLUSTER_SKIP_DOWNLOAD=true with INSTALL_CLUSTER_BIN_PATH"
    fi
}

sha256() { sha256sum "$1" | cut -d' ' -f1; }

# fetch_binary sets NEW_BIN to a verified binary to install.
fetch_binary() {
    if [ "${INSTALL_CLUSTER_SKIP_DOWNLOAD:-false}" = true ]; then
        [ -n "${INSTALL_CLUSTER_BIN_PATH:-}" ] || fatal "INSTALL_CLUSTER_SKIP_DOWNLOAD=true needs INSTALL_CLUSTER_BIN_PATH=/path/to/cluster"
        [ -f "$INSTALL_CLUSTER_BIN_PATH" ] || fatal "INSTALL_CLUSTER_BIN_PATH $INSTALL_CLUSTER_BIN_PATH does not exist"
        NEW_BIN=$INSTALL_CLUSTER_BIN_PATH
        return
    fi
    if [ -n "${INSTALL_CLUSTER_VERSION:-}" ]; then
        base="$DOWNLOAD_URL/download/$INSTALL_CLUSTER_VERSION"
    else
        base="$DOWNLOAD_URL/latest/download"
    fi
    TMP_DIR=$(mktemp -d)
    trap 'rm -rf "$TMP_DIR"' EXIT
    # The xz-compressed binary is a third of the size; take it where xz
    # (or busybox's unxz) can unpack it.
    file=cluster-$ARCH
    unpack=""
    if command -v xz >/dev/null 2>&1; then
        file=cluster-$ARCH.xz unpack="xz -dc"
    elif command -v unxz >/dev/null 2>&1; then
        file=cluster-$ARCH.xz unpack="unxz -c"
    fi
    info "downloading $file from $base"
    download "$base/sha256sum-$ARCH.txt" "$TMP_DIR/sha256sum.txt"
    download "$base/$file" "$TMP_DIR/$file"
    want=$(awk -v f="$file" '$2 == f || $2 == "*"f {print $1}' "$TMP_DIR/sha256sum.txt")
    [ -n "$want" ] || fatal "sha256sum-$ARCH.txt has no line for $file"
    got=$(sha256 "$TMP_DIR/$file")
    [ "$want" = "$got" ] || fatal "checksum mismatch for $file: expected $want, got $got (refusing to install)"
    if [ -n "$unpack" ]; then
        $unpack "$TMP_DIR/$file" >"$TMP_DIR/cluster" || fatal "unpacking $file failed"
        rm -f "$TMP_DIR/$file"
    else
        mv "$TMP_DIR/$file" "$TMP_DIR/cluster"
    fi
    NEW_BIN=$TMP_DIR/cluster
}

install_binary() {
    mkdir -p "$BIN_DIR"
    if [ -f "$BIN_DIR/cluster" ] && [ "$(sha256 "$BIN_DIR/cluster")" = "$(sha256 "$NEW_BIN")" ]; then
        info "$BIN_DIR/cluster is already up to date"
    else
        cp "$NEW_BIN" "$BIN_DIR/.cluster.new"
        chmod 0755 "$BIN_DIR/.cluster.new"
        mv -f "$BIN_DIR/.cluster.new" "$BIN_DIR/cluster"
        info "installed $BIN_DIR/cluster"
    fi
    for cmd in kubectl crictl ctr; do
        link="$BIN_DIR/$cmd"
        if [ -L "$link" ] && [ "$(readlink "$link")" = cluster ]; then
            continue
        fi
        if [ -e "$link" ] || command -v "$cmd" >/dev/null 2>&1; then
            info "skipping $cmd link: $(command -v "$cmd" || echo "$link") exists"
            continue
        fi
        ln -s cluster "$link"
        info "created $link -> cluster"
    done
}

# service_command sets CMD to the cluster subcommand and flags.
service_command() {
    exec_args=${INSTALL_CLUSTER_EXEC:-}
    case "$exec_args" in
        server* | agent*) CMD=$exec_args ;;
        *)
            if [ -n "${CLUSTER_URL:-}" ]; then
                CMD="agent $exec_args"
            else
                CMD="server $exec_args"
            fi
            ;;
    esac
    case "$CMD" in
        agent*) [ -n "${CLUSTER_URL:-}" ] || warn "agent without CLUSTER_URL: pass --server in INSTALL_CLUSTER_EXEC" ;;
    esac
    CMD=$(echo "$CMD" | sed 's/[[:space:]]*$//')
}

# write_env_file keeps CLUSTER_* variables (tokens!) readable by root only.
write_env_file() { # path
    umask 077
    env | grep '^CLUSTER_' | sort >"$1.tmp" || true
    chmod 0600 "$1.tmp"
    mv -f "$1.tmp" "$1"
    umask 022
}

write_killall() {
    cat >"$BIN_DIR/cluster-killall.sh" <<EOF
#!/bin/sh
# Stop cluster and everything the node started: containers, shims, mounts,
# interfaces and firewall rules. Written by install.sh.
set -x
[ "\$(id -u)" -eq 0 ] || exec sudo "\$0" "\$@"
DATA_DIR=$DATA_DIR

if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl stop $SERVICE 2>/dev/null
elif command -v rc-service >/dev/null 2>&1; then
    rc-service $SERVICE stop 2>/dev/null
fi

# Container shims and their children, then the cluster process itself.
for pid in \$(pgrep -f "containerd-shim.*\$DATA_DIR" 2>/dev/null); do
    pkill -KILL -P "\$pid" 2>/dev/null
    kill -KILL "\$pid" 2>/dev/null
done
pkill -KILL -x cluster 2>/dev/null

# Unmount everything below the node's directories, deepest first.
for dir in /run/cluster "\$DATA_DIR" /var/lib/kubelet/pods /run/netns/cni-; do
    awk -v d="\$dir" 'index(\$2, d) == 1 {print \$2}' /proc/self/mounts | sort -r | while read -r m; do
        umount -l "\$m" 2>/dev/null
    done
done

# Interfaces the node created.
for link in cni0 flannel.1 flannel-v6.1 flannel-wg kube-ipvs0; do
    ip link delete "\$link" 2>/dev/null
done
ip -o link show 2>/dev/null | awk -F': ' '\$2 ~ /^veth/ {split(\$2, a, "@"); print a[1]}' | while read -r v; do
    ip link delete "\$v" 2>/dev/null
done
rm -rf /var/lib/cni /run/flannel

# Firewall rules of kube-proxy, flannel and the CNI plugins.
for save in iptables-save ip6tables-save iptables-legacy-save; do
    restore=\$(echo "\$save" | sed 's/-save/-restore/')
    command -v "\$save" >/dev/null 2>&1 || continue
    "\$save" -c | grep -v -E 'KUBE-|CNI-|FLANNEL|flannel|cluster|CLUSTER-NOLEAK' | "\$restore" -c 2>/dev/null
done
ip route flush proto 239 2>/dev/null
if command -v nft >/dev/null 2>&1; then
    for t in "ip kube-proxy" "ip6 kube-proxy" "ip flannel-ipv4" "ip6 flannel-ipv6" "ip cluster-noleak"; do
        nft delete table \$t 2>/dev/null
    done
fi
exit 0
EOF
    chmod 0755 "$BIN_DIR/cluster-killall.sh"
}

write_uninstall() {
    cat >"$BIN_DIR/cluster-uninstall.sh" <<EOF
#!/bin/sh
# Remove cluster: stop everything, then delete the service, links, binary,
# /etc/cluster and the data dir. Written by install.sh.
set -x
[ "\$(id -u)" -eq 0 ] || exec sudo "\$0" "\$@"
"$BIN_DIR/cluster-killall.sh"

if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl disable $SERVICE 2>/dev/null
    systemctl reset-failed $SERVICE 2>/dev/null
fi
if command -v rc-update >/dev/null 2>&1; then
    rc-update delete $SERVICE default 2>/dev/null
fi
rm -f "$SYSTEMD_DIR/$SERVICE.service" "$SYSTEMD_DIR/$SERVICE.service.env" "$OPENRC_DIR/$SERVICE" "/etc/conf.d/$SERVICE"
command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ] && systemctl daemon-reload

for cmd in kubectl crictl ctr; do
    if [ -L "$BIN_DIR/\$cmd" ] && [ "\$(readlink "$BIN_DIR/\$cmd")" = cluster ]; then
        rm -f "$BIN_DIR/\$cmd"
    fi
done
rm -rf /etc/cluster "$DATA_DIR" /run/cluster /var/log/cluster.log
rm -f "$BIN_DIR/cluster" "$BIN_DIR/cluster-killall.sh"
rm -f "\$0" "$BIN_DIR/cluster-uninstall.sh"
EOF
    chmod 0755 "$BIN_DIR/cluster-uninstall.sh"
}

write_systemd_unit() {
    mkdir -p "$SYSTEMD_DIR"
    write_env_file "$SYSTEMD_DIR/$SERVICE.service.env"
    cat >"$SYSTEMD_DIR/$SERVICE.service.tmp" <<EOF
[Unit]
Description=cluster: lightweight Kubernetes
Documentation=https://github.com/cluster-io/cluster
Wants=network-online.target
After=network-online.target

[Service]
Type=exec
EnvironmentFile=-/etc/default/%N
EnvironmentFile=-/etc/sysconfig/%N
EnvironmentFile=-$SYSTEMD_DIR/$SERVICE.service.env
KillMode=process
Delegate=yes
LimitNOFILE=1048576
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
TimeoutStartSec=0
Restart=always
RestartSec=5s
ExecStart=$BIN_DIR/cluster $CMD

[Install]
WantedBy=multi-user.target
EOF
    chmod 0644 "$SYSTEMD_DIR/$SERVICE.service.tmp"
    mv -f "$SYSTEMD_DIR/$SERVICE.service.tmp" "$SYSTEMD_DIR/$SERVICE.service"
    info "wrote $SYSTEMD_DIR/$SERVICE.service and its env file (0600)"
}

write_openrc_service() {
    mkdir -p "$OPENRC_DIR" /etc/conf.d
    write_env_file "/etc/conf.d/$SERVICE.env"
    cat >"$OPENRC_DIR/$SERVICE.tmp" <<EOF
#!/sbin/openrc-run
# cluster: lightweight Kubernetes. Written by install.sh.
depend() {
    after network-online
    want cgroups
}

start_pre() {
    rm -f /tmp/cluster.*
}

supervisor=supervise-daemon
name=$SERVICE
command="$BIN_DIR/cluster"
command_args="$CMD >>/var/log/cluster.log 2>&1"
respawn_delay=5
respawn_max=0
set -o allexport
if [ -f /etc/environment ]; then . /etc/environment; fi
if [ -f /etc/conf.d/$SERVICE.env ]; then . /etc/conf.d/$SERVICE.env; fi
set +o allexport
EOF
    chmod 0755 "$OPENRC_DIR/$SERVICE.tmp"
    mv -f "$OPENRC_DIR/$SERVICE.tmp" "$OPENRC_DIR/$SERVICE"
    info "wrote $OPENRC_DIR/$SERVICE and /etc/conf.d/$SERVICE.env (0600)"
}

start_service() {
    if [ "${INSTALL_CLUSTER_SKIP_START:-false}" = true ]; then
        info "INSTALL_CLUSTER_SKIP_START=true: not starting $SERVICE"
        return
    fi
    case "$INIT" in
        systemd)
            systemctl daemon-reload
            systemctl enable "$SERVICE"
            systemctl restart "$SERVICE"
            info "started $SERVICE (systemctl status $SERVICE)"
            ;;
        openrc)
            rc-update add "$SERVICE" default
            rc-service "$SERVICE" restart
            info "started $SERVICE (rc-service $SERVICE status)"
            ;;
        none)
            warn "systemd is not running (and no openrc was found): the unit was written but not started."
            warn "start cluster by hand:  set -a; . $SYSTEMD_DIR/$SERVICE.service.env; set +a; $BIN_DIR/cluster $CMD"
            ;;
    esac
}

main() {
    check_root
    detect_platform
    detect_init
    fetch_binary
    install_binary
    service_command
    write_killall
    write_uninstall
    if [ "$INIT" = openrc ]; then
        write_openrc_service
    else
        write_systemd_unit
    fi
    start_service
}

main "$@"
