# Rendered by efakit 0.1.0 from images/pytorch.yaml (variant ec2, base debian-local, profile offline).
# Do not edit: change the spec or the templates and re-render.
FROM efakit/base:bookworm
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
        libhwloc-dev \
        openssh-client \
        openssh-server \
        pciutils \
        python3-dev \
 && rm -f /etc/ssh/ssh_host_*_key /etc/ssh/ssh_host_*_key.pub \
 && rm -rf /var/lib/apt/lists/*

# Remove what conflicts with the EFA stack: HPC-X and MOFED verbs shadow the EFA installer's rdma-core; a second libnccl.so.2 makes the NCCL in use depend on link order.
RUN { dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' libnccl2 libnccl-dev 2>/dev/null || true; } | awk '/^ii/ {print $2}' | xargs -r apt-get remove -y --purge \
 && ldconfig

# EFA layer from Debian packages (offline profile): libfabric 1.17.0 with its efa
# provider, rdma-core with libefa, Open MPI.  No EFA installer: it cannot be downloaded here.
RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \
    --mount=type=cache,target=/var/lib/apt/lists,sharing=locked \
    apt-get update \
 && apt-get install -y --no-install-recommends \
        libfabric1 \
        libfabric-bin \
        rdma-core \
        ibverbs-providers \
        libibverbs1 \
        openmpi-bin \
        libopenmpi-dev \
 && rm -rf /var/lib/apt/lists/*

# NCCL 2.21.5: keep the base's (nvidia-nccl-cu12 wheel in the artifact mirror) and make it the one libnccl.so.2
# that nccl-tests, the plugin and torch all resolve.
RUN nccl_lib="$(/usr/bin/python3 -c 'import nvidia.nccl, os; print(os.path.join(list(nvidia.nccl.__path__)[0], "lib"))' 2>/dev/null || true)" \
 && if [ -n "$nccl_lib" ] && [ -e "$nccl_lib/libnccl.so.2" ]; then \
        ln -sf libnccl.so.2 "$nccl_lib/libnccl.so" \
     && echo "$nccl_lib" > /etc/ld.so.conf.d/000-efakit-nccl.conf \
     && ln -sfn "$(dirname "$nccl_lib")" /opt/efakit-nccl; \
    else ln -sfn /usr /opt/efakit-nccl; fi \
 && ldconfig

# aws-ofi-nccl: absent in this profile (cannot be obtained offline; the gate reports it missing).

# GDRCopy: absent in this profile (cannot be obtained offline; the gate reports it missing).

# nccl-tests: absent in this profile (cannot be obtained offline; the gate reports it missing).

# MPI over ssh for multi-node launch.  Host keys are generated when the container
# starts (never baked in).  The cluster-internal root key pair is generated per
# image build, as every anchor does: it only lets containers of this image reach
# each other's sshd, which listens inside the cluster network alone.
RUN mkdir -p /var/run/sshd /root/.ssh && chmod 700 /root/.ssh \
 && ssh-keygen -q -t ed25519 -N "" -C efakit-cluster-key -f /root/.ssh/id_ed25519 \
 && cp /root/.ssh/id_ed25519.pub /root/.ssh/authorized_keys && chmod 600 /root/.ssh/authorized_keys \
 && printf 'Host *\n    StrictHostKeyChecking no\n    UserKnownHostsFile /dev/null\n    LogLevel ERROR\n' > /root/.ssh/config \
 && sed -i 's/^#\?PermitRootLogin.*/PermitRootLogin prohibit-password/' /etc/ssh/sshd_config \
 && printf '#!/bin/sh\nexec /usr/bin/mpirun --allow-run-as-root "$@"\n' > /usr/local/bin/mpirun-root \
 && chmod 755 /usr/local/bin/mpirun-root

# The verifier's dependencies, in a layer of their own: a change to the verifier
# or the env rules then rebuilds only the last, small layers.
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=bind,source=artifacts,target=/artifacts \
    --mount=type=secret,id=ca-bundle \
    efakit-with-ca /usr/bin/python3 -m pip install --no-compile --no-index --find-links /artifacts/wheels --require-hashes -r /artifacts/wheels/requirements-verifier.txt

# The verifier (efa-verify) and the start-time env step: one small last layer,
# its source bind-mounted (never copied into a layer of its own).
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=bind,source=efakit,target=/tmp/efakit,rw \
    efakit-with-ca /usr/bin/python3 -m pip install --no-compile --no-index --find-links /artifacts/wheels --no-deps --no-build-isolation /tmp/efakit/src \
 && install -D -m 0644 /tmp/efakit/image-env.json /etc/efakit/image-env.json \
 && install -D -m 0755 /tmp/efakit/entrypoint.sh /usr/local/bin/efakit-entrypoint \
 && efa-verify --version

# Environment from the env rules table (efakit explain-env pytorch tells why).
# Instance-specific rules are applied by efakit-entrypoint when the container starts.
ENV LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu \
    FI_EFA_USE_DEVICE_RDMA=1
ENTRYPOINT ["/usr/local/bin/efakit-entrypoint"]
CMD ["/bin/bash"]

# Every component version, for the gate and for people reading `docker inspect`.
LABEL \
    org.opencontainers.image.title="efakit pytorch (ec2)" \
    org.opencontainers.image.base.name="efakit/base:bookworm" \
    dev.efakit.framework="pytorch" \
    dev.efakit.variant="ec2" \
    dev.efakit.profile="offline" \
    dev.efakit.version.torch="2.13.0" \
    dev.efakit.version.cuda="none" \
    dev.efakit.version.efa-installer="absent" \
    dev.efakit.version.libfabric="1.17.0" \
    dev.efakit.version.aws-ofi-nccl="absent" \
    dev.efakit.version.nccl="2.21.5" \
    dev.efakit.version.gdrcopy="absent" \
    dev.efakit.version.nccl-tests="absent" \
    dev.efakit.gpu-archs="none"
