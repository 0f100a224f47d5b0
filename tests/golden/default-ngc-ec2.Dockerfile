# Rendered by efakit 0.1.0 from images/pytorch.yaml (variant ec2, base ngc).
# Do not edit: change the spec or the templates and re-render.
FROM nvcr.io/nvidia/pytorch:26.09-py3 AS builder
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
        gnupg \
        libhwloc-dev \
        libtool \
        pkg-config \
        python3-dev \
 && rm -rf /var/lib/apt/lists/*

# EFA installer 1.50.0: Open MPI, aws-ofi-nccl.
# It runs its own `apt install` without `apt-get update`, and no base ships apt lists:
# they are fetched in the same step and deleted after it.
RUN --mount=type=bind,source=artifacts,target=/artifacts \
    --mount=type=bind,source=efakit/verify-signature.sh,target=/usr/local/bin/efakit-verify-signature \
    mkdir -p /tmp/efa && cd /tmp/efa \
 && efakit-fetch-artifact aws-efa-installer-1.50.0.tar.gz https://efa-installer.amazonaws.com/aws-efa-installer-1.50.0.tar.gz sha256:fa6dff8593d866866c13cb4640d9059835cd4efa427971f100ab40c97bef2841 /tmp/efa/aws-efa-installer-1.50.0.tar.gz \
 && efakit-fetch-artifact aws-efa-installer-1.50.0.tar.gz.sig https://efa-installer.amazonaws.com/aws-efa-installer-1.50.0.tar.gz.sig SIGNATURE /tmp/efa/aws-efa-installer-1.50.0.tar.gz.sig \
 && efakit-fetch-artifact aws-efa-installer.key https://efa-installer.amazonaws.com/aws-efa-installer.key SIGNING-KEY /tmp/efa/aws-efa-installer.key \
 && efakit-verify-signature /tmp/efa/aws-efa-installer-1.50.0.tar.gz /tmp/efa/aws-efa-installer-1.50.0.tar.gz.sig /tmp/efa/aws-efa-installer.key 4E9091BCBB97A96B26B15E59A05480B1DD2D3CCC \
 && tar -xzf aws-efa-installer-1.50.0.tar.gz && cd aws-efa-installer \
 && apt-get update \
 && ./efa_installer.sh -y --skip-kmod --skip-limit-conf --no-verify --mpi=openmpi4 --disable-ngc --disable-build-ngc \
 && { test -e /opt/amazon/ofi-nccl/lib/libnccl-net.so || { echo "efakit: the EFA installer left no /opt/amazon/ofi-nccl/lib/libnccl-net.so (the file NCCL opens): $(ls /opt/amazon/ofi-nccl/lib 2>&1)" >&2; exit 1; }; } \
 && cd / && rm -rf /tmp/efa /var/lib/apt/lists/*

# NCCL: keep base ngc's own libnccl.so.2 (its system package, images/base-facts.yaml)
# as the one that nccl-tests, the plugin and torch resolve.  No fallback: without it the build stops.
RUN ldconfig \
 && nccl_lib="$(ldconfig -p | awk '/libnccl\.so\.2 / {print $NF; exit}')" \
 && { test -n "$nccl_lib" || { echo "efakit: the base has no libnccl.so.2 in the loader cache" >&2; exit 1; }; } \
 && ln -sfn /usr /opt/efakit-nccl

FROM builder AS gdrcopy
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# GDRCopy 2.6 from its source archive (content tree pinned): user-space library only; the kernel module is the host's.
RUN --mount=type=bind,source=artifacts,target=/artifacts \
    mkdir -p /tmp/src/gdrcopy && cd /tmp/src/gdrcopy \
 && efakit-fetch-artifact gdrcopy-2.6.tar.gz https://github.com/NVIDIA/gdrcopy/archive/refs/tags/v2.6.tar.gz tree:6116cf78e9ea934379af84c15b4b61c12deba554 /tmp/gdrcopy-2.6.tar.gz \
 && tar -xzf /tmp/gdrcopy-2.6.tar.gz --strip-components=1 && rm /tmp/gdrcopy-2.6.tar.gz \
 && make -j"$(nproc)" prefix=/opt/gdrcopy CUDA=/usr/local/cuda lib lib_install \
 && install -d /opt/gdrcopy/share/licenses/gdrcopy && cp LICENSE /opt/gdrcopy/share/licenses/gdrcopy/ \
 && efakit-strip /opt/gdrcopy && cd / && rm -rf /tmp/src

FROM builder AS nccl-tests
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# nccl-tests 2.19.6 from its source archive (content tree pinned), over MPI, for every targeted GPU arch;
# the collectives efa-verify runs (all_reduce, all_gather, reduce_scatter, alltoall, broadcast).
RUN --mount=type=bind,source=artifacts,target=/artifacts \
    mkdir -p /tmp/src/nccl_tests && cd /tmp/src/nccl_tests \
 && efakit-fetch-artifact nccl-tests-2.19.6.tar.gz https://github.com/NVIDIA/nccl-tests/archive/refs/tags/v2.19.6.tar.gz tree:9becab77026c39199b89e9d94921cbf590dbc6cf /tmp/nccl-tests-2.19.6.tar.gz \
 && tar -xzf /tmp/nccl-tests-2.19.6.tar.gz --strip-components=1 && rm /tmp/nccl-tests-2.19.6.tar.gz \
 && make -j"$(nproc)" MPI=1 MPI_HOME=/opt/amazon/openmpi NCCL_HOME=/opt/efakit-nccl CUDA_HOME=/usr/local/cuda \
        NVCC_GENCODE="-gencode=arch=compute_80,code=sm_80 -gencode=arch=compute_90,code=sm_90 -gencode=arch=compute_100,code=sm_100" BIN_FILES_LIST="all_reduce all_gather reduce_scatter alltoall broadcast" \
 && install -d /opt/nccl-tests && cp build/*_perf /opt/nccl-tests/ \
 && install -d /opt/nccl-tests/share/licenses/nccl-tests && cp LICENSE.txt /opt/nccl-tests/share/licenses/nccl-tests/ \
 && efakit-strip /opt/nccl-tests && cd / && rm -rf /tmp/src

FROM nvcr.io/nvidia/pytorch:26.09-py3
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive
# The base's python is externally managed (PEP 668): pip installs into it on purpose.
ENV PIP_BREAK_SYSTEM_PACKAGES=1
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
        gnupg \
        hwloc \
        libhwloc15 \
        openssh-client \
        openssh-server \
        pciutils \
 && rm -f /etc/ssh/ssh_host_*_key /etc/ssh/ssh_host_*_key.pub \
 && rm -rf /var/lib/apt/lists/*

# Remove what conflicts with the EFA stack: a second libnccl.so.2 makes the NCCL in use depend on link order; MOFED verbs shadow the EFA installer's rdma-core, and HPC-X's NCCL net plugin is a second libnccl-net.so (the rest of HPC-X stays: NGC torch links it).
RUN rm -rf /opt/hpcx/nccl_rdma_sharp_plugin \
 && { dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' ibverbs-providers libibverbs1 2>/dev/null || true; } | awk '/^[hi]i/ {print $2}' | xargs -r apt-get remove -y --purge \
 && ldconfig

# EFA installer 1.50.0: Open MPI, aws-ofi-nccl.
# It runs its own `apt install` without `apt-get update`, and no base ships apt lists:
# they are fetched in the same step and deleted after it.
RUN --mount=type=bind,source=artifacts,target=/artifacts \
    --mount=type=bind,source=efakit/verify-signature.sh,target=/usr/local/bin/efakit-verify-signature \
    mkdir -p /tmp/efa && cd /tmp/efa \
 && efakit-fetch-artifact aws-efa-installer-1.50.0.tar.gz https://efa-installer.amazonaws.com/aws-efa-installer-1.50.0.tar.gz sha256:fa6dff8593d866866c13cb4640d9059835cd4efa427971f100ab40c97bef2841 /tmp/efa/aws-efa-installer-1.50.0.tar.gz \
 && efakit-fetch-artifact aws-efa-installer-1.50.0.tar.gz.sig https://efa-installer.amazonaws.com/aws-efa-installer-1.50.0.tar.gz.sig SIGNATURE /tmp/efa/aws-efa-installer-1.50.0.tar.gz.sig \
 && efakit-fetch-artifact aws-efa-installer.key https://efa-installer.amazonaws.com/aws-efa-installer.key SIGNING-KEY /tmp/efa/aws-efa-installer.key \
 && efakit-verify-signature /tmp/efa/aws-efa-installer-1.50.0.tar.gz /tmp/efa/aws-efa-installer-1.50.0.tar.gz.sig /tmp/efa/aws-efa-installer.key 4E9091BCBB97A96B26B15E59A05480B1DD2D3CCC \
 && tar -xzf aws-efa-installer-1.50.0.tar.gz && cd aws-efa-installer \
 && apt-get update \
 && ./efa_installer.sh -y --skip-kmod --skip-limit-conf --no-verify --mpi=openmpi4 --disable-ngc --disable-build-ngc \
 && { test -e /opt/amazon/ofi-nccl/lib/libnccl-net.so || { echo "efakit: the EFA installer left no /opt/amazon/ofi-nccl/lib/libnccl-net.so (the file NCCL opens): $(ls /opt/amazon/ofi-nccl/lib 2>&1)" >&2; exit 1; }; } \
 && cd / && rm -rf /tmp/efa /var/lib/apt/lists/*

# The stack compiled in the builder stages: only the installed trees (stripped, with their licenses).
COPY --from=gdrcopy /opt/gdrcopy /opt/gdrcopy
COPY --from=nccl-tests /opt/nccl-tests /opt/nccl-tests
# The loader finds each installed tree's libraries.  nccl-tests link libcudart.so.N;
# aws-ofi-nccl and libfabric dlopen the unversioned libcudart.so, a link runtime-only
# CUDA layouts lack (here: /usr/local/cuda/lib64).  No fallback: without it NCCL would use sockets.
RUN printf '%s\n' /opt/gdrcopy/lib > /etc/ld.so.conf.d/efakit-stack.conf \
 && cudart_dir=/usr/local/cuda/lib64 \
 && cudart="$(find "$cudart_dir/" -maxdepth 1 -name 'libcudart.so.[0-9]*' | sort | head -n1)" \
 && { test -n "$cudart" || { echo "efakit: no libcudart.so.N in $cudart_dir" >&2; exit 1; }; } \
 && if [ ! -e "$cudart_dir/libcudart.so" ]; then ln -s "$(basename "$cudart")" "$cudart_dir/libcudart.so"; fi \
 && echo "$cudart_dir" > /etc/ld.so.conf.d/efakit-cuda.conf \
 && ldconfig

# NCCL: keep base ngc's own libnccl.so.2 (its system package, images/base-facts.yaml)
# as the one that nccl-tests, the plugin and torch resolve.  No fallback: without it the build stops.
RUN ldconfig \
 && nccl_lib="$(ldconfig -p | awk '/libnccl\.so\.2 / {print $NF; exit}')" \
 && { test -n "$nccl_lib" || { echo "efakit: the base has no libnccl.so.2 in the loader cache" >&2; exit 1; }; } \
 && ln -sfn /usr /opt/efakit-nccl

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
ENV PATH=/opt/amazon/openmpi/bin:/opt/amazon/efa/bin:/opt/nccl-tests:$PATH \
    LD_LIBRARY_PATH=/opt/amazon/ofi-nccl/lib:/opt/amazon/efa/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}:/opt/amazon/openmpi/lib \
    OPAL_PREFIX=/opt/amazon/openmpi
ENTRYPOINT ["/usr/local/bin/efakit-entrypoint"]
CMD ["/bin/bash"]

# Build-time checks: what would otherwise show only on a GPU cluster (torch that does not
# import, a libcudart the plugin cannot dlopen, nccl-tests with an unresolved library).
RUN /usr/bin/python3 -c 'import torch' \
 && /usr/bin/python3 -c 'import ctypes; ctypes.CDLL("libcudart.so")' \
 && { ! ldd /opt/nccl-tests/*_perf | grep 'not found' || { echo "efakit: nccl-tests have unresolved libraries" >&2; exit 1; }; } \
 && echo "efakit: build-time checks passed"

# Every component version, for the gate and for people reading `docker inspect`.
LABEL \
    org.opencontainers.image.title="efakit pytorch (ec2)" \
    org.opencontainers.image.base.name="nvcr.io/nvidia/pytorch:26.09-py3" \
    dev.efakit.framework="pytorch" \
    dev.efakit.variant="ec2" \
    dev.efakit.profile="default" \
    dev.efakit.version.torch="2.13.0a0" \
    dev.efakit.version.cuda="13.0" \
    dev.efakit.version.efa-installer="1.50.0" \
    dev.efakit.version.rdma-core="64.0" \
    dev.efakit.version.libfabric="2.6.0amzn1.0" \
    dev.efakit.version.aws-ofi-nccl="1.21.1" \
    dev.efakit.version.nccl="2.29.7" \
    dev.efakit.version.gdrcopy="2.6" \
    dev.efakit.version.nccl-tests="2.19.6" \
    dev.efakit.gpu-archs="sm_80,sm_90,sm_100"
