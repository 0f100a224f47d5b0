# Rendered by efakit 0.1.0 from images/pytorch.yaml (variant sagemaker, base pytorch-runtime).
# Do not edit: change the spec or the templates and re-render.
FROM nvidia/cuda:13.0.2-devel-ubuntu24.04@sha256:5dc1bca23d05bd37b011be68ec470c03b403a5da07ec3a86e41af9470e9d0cc6 AS builder
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
        python3-pip \
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

# NCCL 2.29.7 headers and library from the pinned wheel the image runs (the base's
# own NCCL is another version): nccl-tests compile against the one libnccl.so.2 they will load.
# --target leaves the system's packages alone, but older pips (Debian 12's 23.0) apply PEP 668 to it too.
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=bind,source=artifacts,target=/artifacts \
    --mount=type=secret,id=ca-bundle \
    PIP_BREAK_SYSTEM_PACKAGES=1 efakit-with-ca python3 -m pip install --no-compile --target /opt/efakit-nccl-wheel nvidia-nccl-cu13==2.29.7 \
 && nccl_lib=/opt/efakit-nccl-wheel/nvidia/nccl/lib \
 && { test -e "$nccl_lib/libnccl.so.2" || { echo "efakit: nvidia-nccl-cu13==2.29.7 has no $nccl_lib/libnccl.so.2" >&2; exit 1; }; } \
 && ln -sf libnccl.so.2 "$nccl_lib/libnccl.so" \
 && ln -sfn "$(dirname "$nccl_lib")" /opt/efakit-nccl

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
FROM pytorch/pytorch:2.13.0-cuda13.0-cudnn9-runtime@sha256:db80a41f8428644cebcb3d75b0b62df334ab6c0e75785951eb25f48bfbd42407 AS sagemaker-wheels
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PIP_BREAK_SYSTEM_PACKAGES=1
COPY efakit/with-ca.sh /usr/local/bin/efakit-with-ca
RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \
    --mount=type=cache,target=/var/lib/apt/lists,sharing=locked \
    --mount=type=cache,target=/root/.cache/pip \
    --mount=type=secret,id=ca-bundle \
    rm -f /etc/apt/apt.conf.d/docker-clean \
 && apt-get update && apt-get install -y --no-install-recommends build-essential \
 && efakit-with-ca /usr/bin/python3 -m pip wheel --no-deps --wheel-dir /wheels sagemaker-training==5.1.4

FROM pytorch/pytorch:2.13.0-cuda13.0-cudnn9-runtime@sha256:db80a41f8428644cebcb3d75b0b62df334ab6c0e75785951eb25f48bfbd42407
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

# Remove what conflicts with the EFA stack: a second libnccl.so.2 makes the NCCL in use depend on link order.
RUN { dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' libnccl-dev libnccl2 2>/dev/null || true; } | awk '/^[hi]i/ {print $2}' | xargs -r apt-get remove -y --purge \
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
 && ./efa_installer.sh -y --skip-kmod --skip-limit-conf --no-verify --mpi=openmpi4 \
 && { test -e /opt/amazon/ofi-nccl/lib/libnccl-net.so || { echo "efakit: the EFA installer left no /opt/amazon/ofi-nccl/lib/libnccl-net.so (the file NCCL opens): $(ls /opt/amazon/ofi-nccl/lib 2>&1)" >&2; exit 1; }; } \
 && cd / && rm -rf /tmp/efa /var/lib/apt/lists/*

# The stack compiled in the builder stages: only the installed trees (stripped, with their licenses).
COPY --from=gdrcopy /opt/gdrcopy /opt/gdrcopy
COPY --from=nccl-tests /opt/nccl-tests /opt/nccl-tests
# The loader finds each installed tree's libraries.  nccl-tests link libcudart.so.N;
# aws-ofi-nccl and libfabric dlopen the unversioned libcudart.so, a link runtime-only
# CUDA layouts lack (here: the nvidia.cu13 wheel's lib, no /usr/local/cuda).  No fallback: without it NCCL would use sockets.
RUN printf '%s\n' /opt/gdrcopy/lib > /etc/ld.so.conf.d/efakit-stack.conf \
 && cudart_dir="$(/usr/bin/python3 -c 'import nvidia.cu13, os; print(os.path.join(list(nvidia.cu13.__path__)[0], "lib"))')" \
 && cudart="$(find "$cudart_dir/" -maxdepth 1 -name 'libcudart.so.[0-9]*' | sort | head -n1)" \
 && { test -n "$cudart" || { echo "efakit: no libcudart.so.N in $cudart_dir" >&2; exit 1; }; } \
 && if [ ! -e "$cudart_dir/libcudart.so" ]; then ln -s "$(basename "$cudart")" "$cudart_dir/libcudart.so"; fi \
 && echo "$cudart_dir" > /etc/ld.so.conf.d/efakit-cuda.conf \
 && ldconfig

# NCCL 2.29.7: keep the base's (nvidia-nccl-cu13==2.29.7, which torch 2.13.0+cu130 requires (DLC PyTorch 2.13 ships the same wheel)) and make it the one libnccl.so.2
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

# SageMaker training: the toolkit (its C extension compiled apart: no compiler here),
# /opt/ml, and `train` on PATH.
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=bind,source=artifacts,target=/artifacts \
    --mount=type=secret,id=ca-bundle \
    --mount=type=bind,from=sagemaker-wheels,source=/wheels,target=/wheels \
    efakit-with-ca /usr/bin/python3 -m pip install --no-compile --find-links /wheels sagemaker-training==5.1.4 mpi4py==4.1.2 \
 && mkdir -p /opt/ml/code /opt/ml/input/config /opt/ml/output /opt/ml/model \
 && command -v train

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
    LD_LIBRARY_PATH=/opt/amazon/ofi-nccl/lib:/opt/amazon/efa/lib:/opt/amazon/openmpi/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
ENTRYPOINT ["/usr/local/bin/efakit-entrypoint"]
CMD ["train"]

# Build-time checks: what would otherwise show only on a GPU cluster (torch that does not
# import, a libcudart the plugin cannot dlopen, nccl-tests with an unresolved library).
RUN /usr/bin/python3 -c 'import torch' \
 && /usr/bin/python3 -c 'import ctypes; ctypes.CDLL("libcudart.so")' \
 && { ! ldd /opt/nccl-tests/*_perf | grep 'not found' || { echo "efakit: nccl-tests have unresolved libraries" >&2; exit 1; }; } \
 && echo "efakit: build-time checks passed"

# Every component version, for the gate and for people reading `docker inspect`.
LABEL \
    org.opencontainers.image.title="efakit pytorch (sagemaker)" \
    org.opencontainers.image.base.name="pytorch/pytorch:2.13.0-cuda13.0-cudnn9-runtime@sha256:db80a41f8428644cebcb3d75b0b62df334ab6c0e75785951eb25f48bfbd42407" \
    dev.efakit.framework="pytorch" \
    dev.efakit.variant="sagemaker" \
    dev.efakit.profile="default" \
    dev.efakit.version.torch="2.13.0" \
    dev.efakit.version.cuda="13.0" \
    dev.efakit.version.efa-installer="1.50.0" \
    dev.efakit.version.rdma-core="64.0" \
    dev.efakit.version.libfabric="2.6.0amzn1.0" \
    dev.efakit.version.aws-ofi-nccl="1.21.1" \
    dev.efakit.version.nccl="2.29.7" \
    dev.efakit.version.gdrcopy="2.6" \
    dev.efakit.version.nccl-tests="2.19.6" \
    dev.efakit.gpu-archs="sm_80,sm_90,sm_100"
