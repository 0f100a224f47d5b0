#!/bin/bash
# STAND-IN for AWS's efa_installer.sh (tests only): the offline stack's trees
# (payload/opt/amazon/{efa,ofi-nccl}, copied out of efakit/pytorch:ci) installed the way the
# real installer's documented behaviour says, so the production Dockerfile can be built here.
# Reproduces: the flags (-y, --skip-kmod, --skip-limit-conf, --no-verify, --disable-ngc,
# --disable-build-ngc, --mpi=openmpi4|openmpi5|openmpi4,openmpi5; anything else is a usage
# error); its own `apt install` of third-party dependencies without `apt-get update`
# (vanderlei-filho/efa-installer @ f45e1ea7 install_dependencies/install_cmd: "failed to
# install third-party dependencies, exiting"); NGC detection by
# /opt/nvidia/nvidia_entrypoint.sh from 1.48 (field notes section 5): the NGC plugin
# package (libnccl-net-ofi.so only, awsome setup_nccl_ep_efa.sh @ eff9dea2) unless
# --disable-ngc, and the NGC-build mode that skips rdma-core unless --disable-build-ngc
# (awsome-distributed-ai PR #1153); the /opt/amazon layout on Ubuntu >= 1.44
# (/opt/amazon/efa, /opt/amazon/ofi-nccl/lib, /opt/amazon/openmpi[5]) and
# /opt/amazon/efa_installed_packages.  Open MPI is the distro's, linked into
# /opt/amazon/openmpi (the real installer ships its own 4.1 build).
set -u
here="$(cd "$(dirname "$0")" && pwd)"
yes=0 ngc=1 build_ngc=1 mpi="openmpi4,openmpi5"
for arg in "$@"; do
  case "$arg" in
    -y|--yes) yes=1 ;;
    --skip-kmod|--skip-limit-conf|--no-verify|-g) ;;
    --disable-ngc) ngc=0 ;;
    --disable-build-ngc) build_ngc=0 ;;
    --mpi=*) mpi="${arg#--mpi=}" ;;
    *) echo "Unknown option: $arg" >&2; echo "usage: efa_installer.sh [-y] [--skip-kmod] ..." >&2; exit 1 ;;
  esac
done
[ "$yes" = 1 ] || { echo "efa_installer.sh: not run with -y and no terminal to ask" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "efa_installer.sh must be run as root" >&2; exit 1; }
marker=0; [ -e /opt/nvidia/nvidia_entrypoint.sh ] && marker=1
# The NGC-build mode trusts the image's rdma-core: its state before our own dependencies
# (which pull verbs in) decides, after those dependencies, as in the real installer.
verbs=0; dpkg -s libibverbs1 ibverbs-providers >/dev/null 2>&1 && verbs=1
echo "== Installing third-party dependencies"
if ! apt install -y --no-install-recommends environment-modules tcl libnl-3-200 libnl-route-3-200 \
        pciutils openmpi-bin libopenmpi-dev; then
  echo "Error: failed to install third-party dependencies, exiting" >&2; exit 1
fi
if [ "$marker" = 1 ] && [ "$build_ngc" = 1 ]; then
  echo "== NGC build image detected: skipping rdma-core"
  if [ "$verbs" = 0 ]; then
    echo "dpkg: dependency problems prevent configuration of libfabric1-aws:" >&2
    echo " libfabric1-aws depends on ibverbs-providers (>= 59); however: not installed" >&2
    exit 1
  fi
fi
mkdir -p /opt/amazon
cp -a "$here/payload/opt/amazon/efa" /opt/amazon/
if [ "$marker" = 1 ] && [ "$build_ngc" = 1 ]; then
  rm -f /opt/amazon/efa/lib/libefa.so* /opt/amazon/efa/lib/libibverbs.so*
fi
mkdir -p /opt/amazon/ofi-nccl
cp -a "$here/payload/opt/amazon/ofi-nccl/." /opt/amazon/ofi-nccl/
if [ "$marker" = 1 ] && [ "$ngc" = 1 ]; then
  echo "== NGC image detected: installing libnccl-ofi-ngc"
  rm -f /opt/amazon/ofi-nccl/lib/libnccl-net.so
fi
for flavour in ${mpi//,/ }; do
  dir=/opt/amazon/openmpi; [ "$flavour" = openmpi5 ] && dir=/opt/amazon/openmpi5
  mkdir -p "$dir/bin"
  ln -sfn /usr/lib/x86_64-linux-gnu/openmpi/lib "$dir/lib"
  ln -sfn /usr/lib/x86_64-linux-gnu/openmpi/include "$dir/include"
  mkdir -p "$dir/share" && ln -sfn /usr/share/openmpi "$dir/share/openmpi"
  ln -sfn /etc/openmpi "$dir/etc"  # a whole tree under the prefix, so OPAL_PREFIX=$dir works
  for tool in mpirun mpiexec mpicc orted; do
    [ -e "/usr/bin/$tool" ] && ln -sfn "/usr/bin/$tool" "$dir/bin/$tool"
  done
done
cat > /opt/amazon/efa_installed_packages <<REC
# EFA installer version: 1.50.0 (efakit stand-in)
libfabric-aws 2.6.0amzn1.0
rdma-core 64.0
libnccl-ofi 1.21.1$([ "$marker" = 1 ] && [ "$ngc" = 1 ] && echo " (ngc)")
openmpi ${mpi}
REC
ldconfig
echo "== EFA installer (stand-in) done"
