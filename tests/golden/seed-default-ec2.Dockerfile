# Rendered by efakit 0.1.0 from images/pytorch.yaml (variant ec2, base cuda-devel).
# Do not edit: change the spec or the templates and re-render.
FROM nvidia/cuda:11.8.0-cudnn8-devel-ubuntu20.04 AS builder
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive
# The build checks every artifact's pin; 1 lets unpinned ones through with a warning.
ARG EFAKIT_ALLOW_UNPINNED=0
COPY efakit/fetch-artifact.sh /usr/local/bin/efakit-fetch-artifact
COPY efakit/with-ca.sh /usr/local/bin/efakit-with-ca
COPY efakit/strip-tree.sh /usr/local/bin/efakit-strip

# Compilers, autotools and each component's build packages; git checks source archives' content trees.
RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \
    --mount=type=cache,target=/var/lib/apt/lists,sharing=locked \
    rm -f /etc/apt/apt.conf.d/docker-clean \
 && apt-get update \
 && apt-get install -y --no-install-recommends \
        autoconf \
        automake \
        build-essential \
        ca-certificates \
        curl \
        git \
        libhwloc-dev \
        libtool \
        pkg-config \
        python3-dev \
        python3-pip \
 && rm -rf /var/lib/apt/lists/*

# EFA installer 1.25.0: Open MPI.
# It runs its own `apt install` without `apt-get update`, and no base ships apt lists:
# they are fetched in the same step and deleted after it.
RUN --mount=type=bind,source=artifacts,target=/artifacts \
    mkdir -p /tmp/efa && cd /tmp/efa \
 && efakit-fetch-artifact aws-efa-installer-1.25.0.tar.gz https://efa-installer.amazonaws.com/aws-efa-installer-1.25.0.tar.gz UNPINNED /tmp/efa/aws-efa-installer-1.25.0.tar.gz \
 && tar -xzf aws-efa-installer-1.25.0.tar.gz && cd aws-efa-installer \
 && apt-get update \
 && ./efa_installer.sh -y --skip-kmod --skip-limit-conf --no-verify \
 && { test -e /opt/amazon/ofi-nccl/lib/libnccl-net.so || { echo "efakit: the EFA installer left no /opt/amazon/ofi-nccl/lib/libnccl-net.so (the file NCCL opens): $(ls /opt/amazon/ofi-nccl/lib 2>&1)" >&2; exit 1; }; } \
 && cd / && rm -rf /tmp/efa /var/lib/apt/lists/*

# NCCL 2.14.3 headers and library from the pinned wheel the image runs (the base's
# own NCCL is another version): nccl-tests compile against the one libnccl.so.2 they will load.
# --target leaves the system's packages alone, but older pips (Debian 12's 23.0) apply PEP 668 to it too.
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=bind,source=artifacts,target=/artifacts \
    --mount=type=secret,id=ca-bundle \
    PIP_BREAK_SYSTEM_PACKAGES=1 efakit-with-ca python3 -m pip install --no-compile --target /opt/efakit-nccl-wheel nvidia-nccl-cu11==2.14.3 \
 && nccl_lib=/opt/efakit-nccl-wheel/nvidia/nccl/lib \
 && { test -e "$nccl_lib/libnccl.so.2" || { echo "efakit: nvidia-nccl-cu11==2.14.3 has no $nccl_lib/libnccl.so.2" >&2; exit 1; }; } \
 && ln -sf libnccl.so.2 "$nccl_lib/libnccl.so" \
 && ln -sfn "$(dirname "$nccl_lib")" /opt/efakit-nccl

FROM builder AS efa
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# aws-ofi-nccl 1.5.0 from its release tarball, with --enable-platform-aws explicit
# (configure cannot detect AWS inside a container build); its unit tests run here, no GPU needed.
RUN --mount=type=bind,source=artifacts,target=/artifacts \
    mkdir -p /tmp/src/aws_ofi_nccl && cd /tmp/src/aws_ofi_nccl \
 && efakit-fetch-artifact aws-ofi-nccl-1.5.0-aws.tar.gz https://github.com/aws/aws-ofi-nccl/releases/download/v1.5.0-aws/aws-ofi-nccl-1.5.0-aws.tar.gz UNPINNED /tmp/aws-ofi-nccl-1.5.0-aws.tar.gz \
 && tar -xzf /tmp/aws-ofi-nccl-1.5.0-aws.tar.gz --strip-components=1 && rm /tmp/aws-ofi-nccl-1.5.0-aws.tar.gz \
 && ./configure --prefix=/opt/amazon/ofi-nccl --libdir=/opt/amazon/ofi-nccl/lib \
        --with-libfabric=/opt/amazon/efa --with-cuda=/usr/local/cuda --with-mpi=no \
        --enable-platform-aws \
 && make -j"$(nproc)" && make install \
 && { LD_LIBRARY_PATH=/opt/amazon/efa/lib make -C tests/unit -j"$(nproc)" check \
      || { cat tests/unit/test-suite.log; exit 1; }; } \
 && install -d /opt/amazon/ofi-nccl/share/licenses/aws-ofi-nccl && cp LICENSE NOTICE /opt/amazon/ofi-nccl/share/licenses/aws-ofi-nccl/ \
 && efakit-strip /opt/amazon/ofi-nccl && cd / && rm -rf /tmp/src

FROM nvidia/cuda:11.8.0-cudnn8-devel-ubuntu20.04
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive
# The build checks every artifact's sha256; 1 lets unpinned ones through with a warning.
ARG EFAKIT_ALLOW_UNPINNED=0
COPY efakit/fetch-artifact.sh /usr/local/bin/efakit-fetch-artifact
COPY efakit/with-ca.sh /usr/local/bin/efakit-with-ca

# System packages the EFA stack, the builds and MPI-over-ssh need.  openssh-server's
# postinst makes host keys: removed in this same layer, so no layer ever holds them.
RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \
    --mount=type=cache,target=/var/lib/apt/lists,sharing=locked \
    rm -f /etc/apt/apt.conf.d/docker-clean \
 && apt-get update \
 && apt-get install -y --no-install-recommends \
        ca-certificates \
        curl \
        hwloc \
        libhwloc15 \
        openssh-client \
        openssh-server \
        pciutils \
        python3 \
        python3-pip \
 && rm -f /etc/ssh/ssh_host_*_key /etc/ssh/ssh_host_*_key.pub \
 && rm -rf /var/lib/apt/lists/*

# PyTorch 2.0.1 from pip for CUDA 11.8; it brings the nvidia-nccl wheel.
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=bind,source=artifacts,target=/artifacts \
    --mount=type=secret,id=ca-bundle \
    efakit-with-ca /usr/bin/python3 -m pip install --no-compile torch==2.0.1 --extra-index-url https://download.pytorch.org/whl/cu118

# Remove what conflicts with the EFA stack: a second libnccl.so.2 makes the NCCL in use depend on link order.
RUN { dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' libnccl-dev libnccl2 2>/dev/null || true; } | awk '/^[hi]i/ {print $2}' | xargs -r apt-get remove -y --purge --allow-change-held-packages \
 && ldconfig

# EFA installer 1.25.0: Open MPI.
# It runs its own `apt install` without `apt-get update`, and no base ships apt lists:
# they are fetched in the same step and deleted after it.
RUN --mount=type=bind,source=artifacts,target=/artifacts \
    mkdir -p /tmp/efa && cd /tmp/efa \
 && efakit-fetch-artifact aws-efa-installer-1.25.0.tar.gz https://efa-installer.amazonaws.com/aws-efa-installer-1.25.0.tar.gz UNPINNED /tmp/efa/aws-efa-installer-1.25.0.tar.gz \
 && tar -xzf aws-efa-installer-1.25.0.tar.gz && cd aws-efa-installer \
 && apt-get update \
 && ./efa_installer.sh -y --skip-kmod --skip-limit-conf --no-verify \
 && { test -e /opt/amazon/ofi-nccl/lib/libnccl-net.so || { echo "efakit: the EFA installer left no /opt/amazon/ofi-nccl/lib/libnccl-net.so (the file NCCL opens): $(ls /opt/amazon/ofi-nccl/lib 2>&1)" >&2; exit 1; }; } \
 && cd / && rm -rf /tmp/efa /var/lib/apt/lists/*

# The stack compiled in the builder stages: only the installed trees (stripped, with their licenses).
COPY --from=efa /opt/amazon/ofi-nccl /opt/amazon/ofi-nccl
# The loader finds each installed tree's libraries.  nccl-tests link libcudart.so.N;
# aws-ofi-nccl and libfabric dlopen the unversioned libcudart.so, a link runtime-only
# CUDA layouts lack (here: /usr/local/cuda/lib64).  No fallback: without it NCCL would use sockets.
RUN cudart_dir=/usr/local/cuda/lib64 \
 && cudart="$(find "$cudart_dir/" -maxdepth 1 -name 'libcudart.so.[0-9]*' | sort | head -n1)" \
 && { test -n "$cudart" || { echo "efakit: no libcudart.so.N in $cudart_dir" >&2; exit 1; }; } \
 && if [ ! -e "$cudart_dir/libcudart.so" ]; then ln -s "$(basename "$cudart")" "$cudart_dir/libcudart.so"; fi \
 && echo "$cudart_dir" > /etc/ld.so.conf.d/efakit-cuda.conf \
 && ldconfig

# NCCL 2.14.3: keep the base's (test fixture) and make it the one libnccl.so.2
# that nccl-tests, the plugin and torch all resolve.  No fallback: without it the build stops.
RUN nccl_lib="$(/usr/bin/python3 -c 'import nvidia.nccl, os; print(os.path.join(list(nvidia.nccl.__path__)[0], "lib"))')" \
 && { test -e "$nccl_lib/libnccl.so.2" || { echo "efakit: no libnccl.so.2 in $nccl_lib (nvidia.nccl of /usr/bin/python3)" >&2; exit 1; }; } \
 && ln -sf libnccl.so.2 "$nccl_lib/libnccl.so" \
 && echo "$nccl_lib" > /etc/ld.so.conf.d/000-efakit-nccl.conf \
 && ln -sfn "$(dirname "$nccl_lib")" /opt/efakit-nccl \
 && ldconfig

# MPI over ssh for multi-node launch, with no key in the image: keys come from the
# runtime (mpi-operator's Secret on /root/.ssh, a per-job pair on Slurm, a per-job
# key for SageMaker that efakit-entrypoint installs), host keys are made at start.
# The client options live in /etc/ssh/ssh_config.d, where a Secret mounted over
# /root/.ssh cannot hide them; /run/sshd is made again at start (enroot mounts a
# tmpfs on /run).  verify/sshcheck.py checks all of this in `efa-verify static`.
RUN mkdir -p /run/sshd /etc/ssh/ssh_config.d \
 && printf 'Host *\n    StrictHostKeyChecking no\n    UserKnownHostsFile /dev/null\n    LogLevel ERROR\n' > /etc/ssh/ssh_config.d/50-efakit-mpi.conf \
 && grep -q '^Include /etc/ssh/ssh_config.d/\*.conf' /etc/ssh/ssh_config \
 && sed -i 's/^#\?PermitRootLogin.*/PermitRootLogin prohibit-password/' /etc/ssh/sshd_config \
 && printf '#!/bin/sh\nexec /opt/amazon/openmpi/bin/mpirun --allow-run-as-root "$@"\n' > /usr/local/bin/mpirun-root \
 && chmod 755 /usr/local/bin/mpirun-root

# The verifier's dependencies, in a layer of their own: a change to the verifier
# or the env rules then rebuilds only the last, small layers.
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=bind,source=artifacts,target=/artifacts \
    --mount=type=secret,id=ca-bundle \
    efakit-with-ca /usr/bin/python3 -m pip install --no-compile 'click>=8.0' 'PyYAML>=5.4' 'nvidia-ml-py>=12.535'

# The verifier (efa-verify) and the start-time env step: one small last layer,
# its source bind-mounted (never copied into a layer of its own).
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=bind,source=efakit,target=/tmp/efakit,rw \
    efakit-with-ca /usr/bin/python3 -m pip install --no-compile --no-deps /tmp/efakit/src \
 && install -D -m 0644 /tmp/efakit/image-env.json /etc/efakit/image-env.json \
 && install -D -m 0755 /tmp/efakit/entrypoint.sh /usr/local/bin/efakit-entrypoint \
 && efa-verify --version

# Environment from the env rules table (efakit explain-env pytorch tells why).
# Instance-specific rules are applied by efakit-entrypoint when the container starts.
ENV PATH=/opt/amazon/openmpi/bin:/opt/amazon/efa/bin:$PATH \
    LD_LIBRARY_PATH=/opt/amazon/ofi-nccl/lib:/opt/amazon/efa/lib:/opt/amazon/openmpi/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} \
    FI_PROVIDER=efa \
    NCCL_PROTO=simple \
    NCCL_LAUNCH_MODE=PARALLEL \
    NCCL_NET_SHARED_COMMS=0
ENTRYPOINT ["/usr/local/bin/efakit-entrypoint"]
CMD ["/bin/bash"]

# Build-time checks: what would otherwise show only on a GPU cluster (torch that does not
# import, a libcudart the plugin cannot dlopen, nccl-tests with an unresolved library).
RUN /usr/bin/python3 -c 'import torch' \
 && /usr/bin/python3 -c 'import ctypes; ctypes.CDLL("libcudart.so")' \
 && echo "efakit: build-time checks passed"

# Every component version, for the gate and for people reading `docker inspect`.
LABEL \
    org.opencontainers.image.title="efakit pytorch (ec2)" \
    org.opencontainers.image.base.name="nvidia/cuda:11.8.0-cudnn8-devel-ubuntu20.04" \
    dev.efakit.framework="pytorch" \
    dev.efakit.variant="ec2" \
    dev.efakit.profile="default" \
    dev.efakit.version.torch="2.0.1" \
    dev.efakit.version.cuda="11.8" \
    dev.efakit.version.efa-installer="1.25.0" \
    dev.efakit.version.rdma-core="absent" \
    dev.efakit.version.libfabric="1.18.1" \
    dev.efakit.version.aws-ofi-nccl="1.5.0" \
    dev.efakit.version.nccl="2.14.3" \
    dev.efakit.version.gdrcopy="absent" \
    dev.efakit.version.nccl-tests="absent" \
    dev.efakit.gpu-archs="sm_80"
