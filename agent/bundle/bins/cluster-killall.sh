#!/bin/sh
# cluster-killall.sh: stop the cluster process of THIS data dir and
# everything its node started: containers and their shims, mounts, pod
# interfaces and firewall rules. It lives in <data-dir>/data/<hash>/bin, so it
# knows its data dir and leaves other nodes on the same host alone (their
# interfaces and rules live in their own network namespaces).
set -u
[ "$(id -u)" -eq 0 ] || exec sudo "$0" "$@"
bin_dir=$(cd "$(dirname "$0")" && pwd -P)
DATA_DIR=${CLUSTER_DATA_DIR:-$(cd "$bin_dir/../../.." && pwd -P)}
[ -f "$DATA_DIR/.cluster-data-dir" ] || { echo "cluster-killall: $DATA_DIR is not a cluster data dir" >&2; exit 1; }
echo "cluster-killall: stopping everything of $DATA_DIR"

# The cluster process holding the data dir (containerd runs inside it).
pid=$(head -n1 "$DATA_DIR/.lock" 2>/dev/null)
if [ -n "$pid" ] && [ -d "/proc/$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q cluster; then
    kill -TERM "$pid" 2>/dev/null
    i=0
    while [ -d "/proc/$pid" ] && [ $i -lt 30 ]; do sleep 0.5; i=$((i + 1)); done
    kill -KILL "$pid" 2>/dev/null
fi
# containerd of this node as a child process (versions before it ran in-process),
# if it outlived its parent.
for p in $(pgrep -f "cluster containerd -c $DATA_DIR/" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done

# Shims of this node (their -address names our socket) and their containers.
for shim in $(pgrep -f "containerd-shim-runc-v2 .*-address $DATA_DIR/" 2>/dev/null); do
    pkill -KILL -P "$shim" 2>/dev/null
    kill -KILL "$shim" 2>/dev/null
done

# Mounts below the data dir (kubelet volumes, overlay rootfs, netns), deepest first.
awk -v d="$DATA_DIR/" 'index($2, d) == 1 {print $2}' /proc/self/mounts | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null
done

# Interfaces and rules the node made in this network namespace.
for link in cni0 flannel.1; do ip link delete "$link" 2>/dev/null; done
for save in iptables-save ip6tables-save; do
    command -v "$save" >/dev/null 2>&1 || continue
    restore=$(echo "$save" | sed 's/-save$/-restore/')
    # -c keeps the packet counters of every rule that stays.
    "$save" -c | grep -v -E 'KUBE-|CNI-|FLANNEL|flanneld|CLUSTER-NOLEAK' | "$restore" -c 2>/dev/null
done
# The unreachable route for the pod network (agent/noleak marks its routes).
ip route flush proto 239 2>/dev/null
if command -v nft >/dev/null 2>&1; then
    for table in "ip kube-proxy" "ip6 kube-proxy" "ip flannel-ipv4" "ip6 flannel-ipv6" "ip cluster-noleak"; do
        # shellcheck disable=SC2086 # "family name" is two words on purpose
        nft delete table $table 2>/dev/null
    done
fi
# The node's own cgroup tree (nodes with a non-default data dir have one;
# the default's pods live in the host's /kubepods, which stays), deepest
# first; cgroups of processes still exiting are tried again.
root=$(cat "$DATA_DIR/agent/cgroup-root" 2>/dev/null)
if echo "$root" | grep -qxE '/cluster-[0-9a-f]{12}'; then
    for dir in /sys/fs/cgroup"$root" /sys/fs/cgroup/*"$root"; do
        i=0
        while [ -d "$dir" ] && [ $i -lt 20 ]; do
            find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null || sleep 0.1
            i=$((i + 1))
        done
        [ -d "$dir" ] && echo "cluster-killall: could not remove $dir (processes left in it?)" >&2
    done
fi
rm -rf "$DATA_DIR/agent/cni" "$DATA_DIR/agent/flannel/subnet.env"
echo "cluster-killall: done"
exit 0
