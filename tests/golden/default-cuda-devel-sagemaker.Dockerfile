# Rendered by efakit 0.1.0 from images/pytorch.yaml (variant sagemaker, base cuda-devel).
# Do not edit: change the spec or the templates and re-render.
FROM nvidia/cuda:12.4.1-cudnn-devel-ubuntu22.04
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
        autoconf \
        automake \
        build-essential \
        ca-certificates \
        curl \
        gnupg \
        hwloc \
        libhwloc-dev \
        libtool \
        openssh-client \
        openssh-server \
        pciutils \
        pkg-config \
        python3-dev \
 && rm -f /etc/ssh/ssh_host_*_key /etc/ssh/ssh_host_*_key.pub \
 && rm -rf /var/lib/apt/lists/*

# PyTorch 2.5.1 from pip for CUDA 12.4; it brings the nvidia-nccl wheel.
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=bind,source=artifacts,target=/artifacts \
    --mount=type=secret,id=ca-bundle \
    efakit-with-ca /usr/bin/python3 -m pip install --no-compile torch==2.5.1 --extra-index-url https://download.pytorch.org/whl/cu124

# Remove what conflicts with the EFA stack: HPC-X and MOFED verbs shadow the EFA installer's rdma-core; a second libnccl.so.2 makes the NCCL in use depend on link order.
RUN { dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' libnccl2 libnccl-dev 2>/dev/null || true; } | awk '/^ii/ {print $2}' | xargs -r apt-get remove -y --purge \
 && ldconfig

# EFA installer 1.41.0: libfabric (efa provider), rdma-core, Open MPI, aws-ofi-nccl.
RUN --mount=type=bind,source=artifacts,target=/artifacts \
    --mount=type=bind,source=efakit/verify-signature.sh,target=/usr/local/bin/efakit-verify-signature \
    mkdir -p /tmp/efa && cd /tmp/efa \
 && efakit-fetch-artifact aws-efa-installer-1.41.0.tar.gz https://efa-installer.amazonaws.com/aws-efa-installer-1.41.0.tar.gz 3506354cdfbe31ff552fe75f5d0d9bb7efd29cf79bd99457347d29c751c38f9f /tmp/efa/aws-efa-installer-1.41.0.tar.gz \
 && efakit-fetch-artifact aws-efa-installer-1.41.0.tar.gz.sig https://efa-installer.amazonaws.com/aws-efa-installer-1.41.0.tar.gz.sig SIGNATURE /tmp/efa/aws-efa-installer-1.41.0.tar.gz.sig \
 && efakit-fetch-artifact aws-efa-installer.key https://efa-installer.amazonaws.com/aws-efa-installer.key SIGNING-KEY /tmp/efa/aws-efa-installer.key \
 && efakit-verify-signature /tmp/efa/aws-efa-installer-1.41.0.tar.gz /tmp/efa/aws-efa-installer-1.41.0.tar.gz.sig /tmp/efa/aws-efa-installer.key UNPINNED \
 && tar -xzf aws-efa-installer-1.41.0.tar.gz && cd aws-efa-installer \
 && ./efa_installer.sh -y --skip-kmod --skip-limit-conf --no-verify \
 && cd / && rm -rf /tmp/efa /var/lib/apt/lists/*

# NCCL 2.21.5: keep the base's (nvidia-nccl-cu12 wheel that torch 2.5.1 depends on) and make it the one libnccl.so.2
# that nccl-tests, the plugin and torch all resolve.
RUN nccl_lib="$(/usr/bin/python3 -c 'import nvidia.nccl, os; print(os.path.join(list(nvidia.nccl.__path__)[0], "lib"))' 2>/dev/null || true)" \
 && if [ -n "$nccl_lib" ] && [ -e "$nccl_lib/libnccl.so.2" ]; then \
        ln -sf libnccl.so.2 "$nccl_lib/libnccl.so" \
     && echo "$nccl_lib" > /etc/ld.so.conf.d/000-efakit-nccl.conf \
     && ln -sfn "$(dirname "$nccl_lib")" /opt/efakit-nccl; \
    else ln -sfn /usr /opt/efakit-nccl; fi \
 && ldconfig

# aws-ofi-nccl 1.14.2 came with the EFA installer, in /opt/amazon/ofi-nccl/lib/x86_64-linux-gnu.
# The plugin dlopens the unversioned libcudart.so; runtime-only CUDA layouts lack that link.
RUN test -e /opt/amazon/ofi-nccl/lib/x86_64-linux-gnu/libnccl-net.so \
 && cudart="$(find /usr/local/cuda/lib64/ -maxdepth 1 -name 'libcudart.so.*' 2>/dev/null | sort | head -n1)" \
 && if [ -n "$cudart" ] && [ ! -e /usr/local/cuda/lib64/libcudart.so ]; then ln -s "$cudart" /usr/local/cuda/lib64/libcudart.so; fi

# GDRCopy 2.4.4: user-space library only; the kernel module comes from the host.
RUN --mount=type=bind,source=artifacts,target=/artifacts \
    mkdir -p /tmp/gdrcopy && cd /tmp/gdrcopy \
 && efakit-fetch-artifact v2.4.4.tar.gz https://github.com/NVIDIA/gdrcopy/archive/refs/tags/v2.4.4.tar.gz UNPINNED /tmp/gdrcopy/v2.4.4.tar.gz \
 && tar -xzf v2.4.4.tar.gz --strip-components=1 \
 && make -j"$(nproc)" prefix=/opt/gdrcopy CUDA=/usr/local/cuda lib lib_install \
 && echo /opt/gdrcopy/lib > /etc/ld.so.conf.d/efakit-gdrcopy.conf \
 && cd / && rm -rf /tmp/gdrcopy && ldconfig

# nccl-tests 2.13.11 over MPI, for every targeted GPU arch.
RUN --mount=type=bind,source=artifacts,target=/artifacts \
    mkdir -p /tmp/nccl-tests && cd /tmp/nccl-tests \
 && efakit-fetch-artifact v2.13.11.tar.gz https://github.com/NVIDIA/nccl-tests/archive/refs/tags/v2.13.11.tar.gz UNPINNED /tmp/nccl-tests/v2.13.11.tar.gz \
 && tar -xzf v2.13.11.tar.gz --strip-components=1 \
 && make -j"$(nproc)" MPI=1 MPI_HOME=/opt/amazon/openmpi NCCL_HOME=/opt/efakit-nccl CUDA_HOME=/usr/local/cuda \
        NVCC_GENCODE="-gencode=arch=compute_80,code=sm_80 -gencode=arch=compute_90,code=sm_90" \
 && mkdir -p /opt/nccl-tests && cp -a build/*_perf /opt/nccl-tests/ \
 && cd / && rm -rf /tmp/nccl-tests

# MPI over ssh for multi-node launch.  Host keys are generated when the container
# starts (never baked in).  The cluster-internal root key pair is generated per
# image build, as every anchor does: it only lets containers of this image reach
# each other's sshd, which listens inside the cluster network alone.
RUN mkdir -p /var/run/sshd /root/.ssh && chmod 700 /root/.ssh \
 && ssh-keygen -q -t ed25519 -N "" -C efakit-cluster-key -f /root/.ssh/id_ed25519 \
 && cp /root/.ssh/id_ed25519.pub /root/.ssh/authorized_keys && chmod 600 /root/.ssh/authorized_keys \
 && printf 'Host *\n    StrictHostKeyChecking no\n    UserKnownHostsFile /dev/null\n    LogLevel ERROR\n' > /root/.ssh/config \
 && sed -i 's/^#\?PermitRootLogin.*/PermitRootLogin prohibit-password/' /etc/ssh/sshd_config \
 && printf '#!/bin/sh\nexec /opt/amazon/openmpi/bin/mpirun --allow-run-as-root "$@"\n' > /usr/local/bin/mpirun-root \
 && chmod 755 /usr/local/bin/mpirun-root

# The verifier's dependencies, in a layer of their own: a change to the verifier
# or the env rules then rebuilds only the last, small layers.
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=bind,source=artifacts,target=/artifacts \
    --mount=type=secret,id=ca-bundle \
    efakit-with-ca /usr/bin/python3 -m pip install --no-compile 'click>=8.0' 'PyYAML>=5.4' 'nvidia-ml-py>=12.535'

# SageMaker training: the toolkit (an sdist with a C extension: gcc and Python
# headers come from the system packages), /opt/ml, and `train` on PATH.
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=bind,source=artifacts,target=/artifacts \
    --mount=type=secret,id=ca-bundle \
    efakit-with-ca /usr/bin/python3 -m pip install --no-compile sagemaker-training mpi4py \
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
ENV PATH=/opt/amazon/openmpi/bin:/opt/nccl-tests:$PATH \
    LD_LIBRARY_PATH=/opt/amazon/ofi-nccl/lib/x86_64-linux-gnu:/opt/amazon/efa/lib
ENTRYPOINT ["/usr/local/bin/efakit-entrypoint"]
CMD ["train"]

# Every component version, for the gate and for people reading `docker inspect`.
LABEL \
    org.opencontainers.image.title="efakit pytorch (sagemaker)" \
    org.opencontainers.image.base.name="nvidia/cuda:12.4.1-cudnn-devel-ubuntu22.04" \
    dev.efakit.framework="pytorch" \
    dev.efakit.variant="sagemaker" \
    dev.efakit.profile="default" \
    dev.efakit.version.torch="2.5.1" \
    dev.efakit.version.cuda="12.4" \
    dev.efakit.version.efa-installer="1.41.0" \
    dev.efakit.version.libfabric="2.1.0" \
    dev.efakit.version.aws-ofi-nccl="1.14.2" \
    dev.efakit.version.nccl="2.21.5" \
    dev.efakit.version.gdrcopy="2.4.4" \
    dev.efakit.version.nccl-tests="2.13.11" \
    dev.efakit.gpu-archs="sm_80,sm_90"
