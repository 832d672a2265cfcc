#!/usr/bin/env bash
# Installs everything peerlb needs to build, test and run its demo on Debian 12.
# Idempotent: apt-get skips what is already there.
#   --bench   also the benchmark suite's baselines and plotting (tools/bench/)
set -euo pipefail

bench=0
case ${1:-} in
"") ;;
--bench) bench=1 ;;
*) echo "usage: install-deps.sh [--bench]" >&2; exit 2 ;;
esac

if [[ $EUID -ne 0 ]]; then
    echo "install-deps: run as root (apt-get needs it)" >&2
    exit 1
fi

packages=(
    # build
    cmake make g++ clang llvm pkg-config
    libbpf-dev libxdp-dev libelf-dev zlib1g-dev bpftool
    libfmt-dev libcli11-dev nlohmann-json3-dev libtomlplusplus-dev libssl-dev
    libspdlog-dev libcpp-httplib-dev libnl-route-3-dev
    libgtest-dev
    # fuzzing (tools/fuzz.sh): clang's libFuzzer and sanitizer runtimes
    libclang-rt-14-dev
    # tests and demo: namespaces, real servers and clients
    iproute2 ethtool nftables nginx-light curl wrk util-linux procps python3
    # shared addresses (DESIGN 5b): BGP to the namespace router; the tests
    # run their own BIRD in each namespace, not the package's service
    bird2
)
# The benchmarks' baselines (a central HAProxy, keepalived's VRRP) and plots.
# The suite runs its own instances inside namespaces; the packages' own
# services are not used.
((bench)) && packages+=(haproxy keepalived gnuplot-nox)

export DEBIAN_FRONTEND=noninteractive
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "install-deps: installing ${missing[*]}"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
