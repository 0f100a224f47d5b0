# Rendered by efakit 0.1.0 from images/pytorch.yaml (variant ec2, base debian-local, profile offline).
# Do not edit: change the spec or the templates and re-render.
FROM efakit/base:bookworm AS builder
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
        cmake \
        curl \
        git \
        libhwloc-dev \
        libnl-3-dev \
        libnl-route-3-dev \
        libopenmpi-dev \
        libtool \
        pkg-config \
        python3 \
        python3-dev \
 && rm -rf /var/lib/apt/lists/*

# CUDA 13.3 toolchain from pinned wheels: nvcc, headers, libcudart, nvml.h.
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=bind,source=artifacts/toolchain,target=/artifacts/toolchain \
    --mount=type=secret,id=ca-bundle \
    efakit-with-ca /usr/bin/python3 -m pip install --no-compile --no-index --find-links /artifacts/toolchain \
        --require-hashes --target /opt/cuda-wheels -r /artifacts/toolchain/requirements-builder.txt \
 && ln -s lib /opt/cuda-wheels/nvidia/cu13/lib64 && ln -s libcudart.so.13 /opt/cuda-wheels/nvidia/cu13/lib/libcudart.so \
 && /opt/cuda-wheels/nvidia/cu13/bin/nvcc --version
ENV PATH=/opt/cuda-wheels/nvidia/cu13/bin:$PATH

# NCCL 2.29.7: keep the base's (nvidia-nccl-cu13 wheel in the artifact mirror (the one torch 2.13.0+cu130 requires)) and make it the one libnccl.so.2
# that nccl-tests, the plugin and torch all resolve.  No fallback: without it the build stops.
RUN nccl_lib="$(/usr/bin/python3 -c 'import nvidia.nccl, os; print(os.path.join(list(nvidia.nccl.__path__)[0], "lib"))')" \
 && { test -e "$nccl_lib/libnccl.so.2" || { echo "efakit: no libnccl.so.2 in $nccl_lib (nvidia.nccl of /usr/bin/python3)" >&2; exit 1; }; } \
 && ln -sf libnccl.so.2 "$nccl_lib/libnccl.so" \
 && echo "$nccl_lib" > /etc/ld.so.conf.d/000-efakit-nccl.conf \
 && ln -sfn "$(dirname "$nccl_lib")" /opt/efakit-nccl \
 && ldconfig

FROM builder AS efa
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# rdma-core 64.0 (libibverbs, libefa) from its source archive (content tree pinned), in the installer's prefix.
RUN --mount=type=bind,source=artifacts/rdma-core-64.0.tar.gz,target=/artifacts/rdma-core-64.0.tar.gz \
    mkdir -p /tmp/src/rdma_core && cd /tmp/src/rdma_core \
 && efakit-fetch-artifact rdma-core-64.0.tar.gz https://github.com/linux-rdma/rdma-core/archive/refs/tags/v64.0.tar.gz tree:99abc56eee53264382d9e74f3d29ddafb8f9cc81 /tmp/rdma-core-64.0.tar.gz \
 && tar -xzf /tmp/rdma-core-64.0.tar.gz --strip-components=1 && rm /tmp/rdma-core-64.0.tar.gz \
 && cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/opt/amazon/efa \
        -DCMAKE_INSTALL_LIBDIR=lib -DNO_MAN_PAGES=1 -DNO_PYVERBS=1 -DENABLE_RESOLVE_NEIGH=0 \
 && cmake --build build -j"$(nproc)" && cmake --install build \
 && install -d /opt/amazon/efa/share/licenses/rdma-core && cp COPYING.md COPYING.BSD_MIT COPYING.BSD_FB COPYING.GPL2 /opt/amazon/efa/share/licenses/rdma-core/ \
 && efakit-strip /opt/amazon/efa && cd / && rm -rf /tmp/src
# libfabric 2.6.0 from its source archive (content tree pinned): the efa provider (explicit: the default
# silently drops it when rdma-core is not found) and CUDA memory support loaded at run time.
RUN --mount=type=bind,source=artifacts/libfabric-2.6.0.tar.gz,target=/artifacts/libfabric-2.6.0.tar.gz \
    mkdir -p /tmp/src/libfabric && cd /tmp/src/libfabric \
 && efakit-fetch-artifact libfabric-2.6.0.tar.gz https://github.com/ofiwg/libfabric/archive/refs/tags/v2.6.0.tar.gz tree:9e46915894d66f8c367468baf809121e4e181c03 /tmp/libfabric-2.6.0.tar.gz \
 && tar -xzf /tmp/libfabric-2.6.0.tar.gz --strip-components=1 && rm /tmp/libfabric-2.6.0.tar.gz \
 && ./autogen.sh \
 && ./configure --prefix=/opt/amazon/efa --libdir=/opt/amazon/efa/lib --enable-efa=/opt/amazon/efa \
        --with-cuda=/opt/cuda-wheels/nvidia/cu13 --enable-cuda-dlopen --disable-static \
        --disable-verbs --disable-psm2 --disable-psm3 --disable-usnic --disable-opx --disable-ucx \
 && make -j"$(nproc)" && make install \
 && /opt/amazon/efa/bin/fi_info -l | grep -q '^efa:' \
 && install -d /opt/amazon/efa/share/licenses/libfabric && cp COPYING /opt/amazon/efa/share/licenses/libfabric/ \
 && efakit-strip /opt/amazon/efa && cd / && rm -rf /tmp/src
# aws-ofi-nccl 1.21.1 from its source archive (content tree pinned), with --enable-platform-aws explicit
# (configure cannot detect AWS inside a container build); its unit tests run here, no GPU needed.
RUN --mount=type=bind,source=artifacts/aws-ofi-nccl-1.21.1.tar.gz,target=/artifacts/aws-ofi-nccl-1.21.1.tar.gz \
    mkdir -p /tmp/src/aws_ofi_nccl && cd /tmp/src/aws_ofi_nccl \
 && efakit-fetch-artifact aws-ofi-nccl-1.21.1.tar.gz https://github.com/aws/aws-ofi-nccl/archive/refs/tags/v1.21.1.tar.gz tree:84d98ab9b9e288839fe5bf09f4fdf0ef6a72eb8f /tmp/aws-ofi-nccl-1.21.1.tar.gz \
 && tar -xzf /tmp/aws-ofi-nccl-1.21.1.tar.gz --strip-components=1 && rm /tmp/aws-ofi-nccl-1.21.1.tar.gz \
 && echo 1.21.1 > .release_version && ./autogen.sh \
 && ./configure --prefix=/opt/amazon/ofi-nccl --libdir=/opt/amazon/ofi-nccl/lib \
        --with-libfabric=/opt/amazon/efa --with-cuda=/opt/cuda-wheels/nvidia/cu13 --with-mpi=no \
        --enable-platform-aws \
 && make -j"$(nproc)" && make install \
 && { LD_LIBRARY_PATH=/opt/amazon/efa/lib make -C tests/unit -j"$(nproc)" check \
      || { cat tests/unit/test-suite.log; exit 1; }; } \
 && install -d /opt/amazon/ofi-nccl/share/licenses/aws-ofi-nccl && cp LICENSE NOTICE /opt/amazon/ofi-nccl/share/licenses/aws-ofi-nccl/ \
 && efakit-strip /opt/amazon/ofi-nccl && cd / && rm -rf /tmp/src

FROM builder AS gdrcopy
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# GDRCopy 2.6 from its source archive (content tree pinned): user-space library only; the kernel module is the host's.
RUN --mount=type=bind,source=artifacts/gdrcopy-2.6.tar.gz,target=/artifacts/gdrcopy-2.6.tar.gz \
    mkdir -p /tmp/src/gdrcopy && cd /tmp/src/gdrcopy \
 && efakit-fetch-artifact gdrcopy-2.6.tar.gz https://github.com/NVIDIA/gdrcopy/archive/refs/tags/v2.6.tar.gz tree:6116cf78e9ea934379af84c15b4b61c12deba554 /tmp/gdrcopy-2.6.tar.gz \
 && tar -xzf /tmp/gdrcopy-2.6.tar.gz --strip-components=1 && rm /tmp/gdrcopy-2.6.tar.gz \
 && make -j"$(nproc)" prefix=/opt/gdrcopy CUDA=/opt/cuda-wheels/nvidia/cu13 lib lib_install \
 && install -d /opt/gdrcopy/share/licenses/gdrcopy && cp LICENSE /opt/gdrcopy/share/licenses/gdrcopy/ \
 && efakit-strip /opt/gdrcopy && cd / && rm -rf /tmp/src

FROM builder AS nccl-tests
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# nccl-tests 2.19.6 from its source archive (content tree pinned), over MPI, for every targeted GPU arch;
# the collectives efa-verify runs (all_reduce, all_gather, reduce_scatter, alltoall, broadcast).
RUN --mount=type=bind,source=artifacts/nccl-tests-2.19.6.tar.gz,target=/artifacts/nccl-tests-2.19.6.tar.gz \
    mkdir -p /tmp/src/nccl_tests && cd /tmp/src/nccl_tests \
 && efakit-fetch-artifact nccl-tests-2.19.6.tar.gz https://github.com/NVIDIA/nccl-tests/archive/refs/tags/v2.19.6.tar.gz tree:9becab77026c39199b89e9d94921cbf590dbc6cf /tmp/nccl-tests-2.19.6.tar.gz \
 && tar -xzf /tmp/nccl-tests-2.19.6.tar.gz --strip-components=1 && rm /tmp/nccl-tests-2.19.6.tar.gz \
 && make -j"$(nproc)" MPI=1 MPI_HOME=/usr/lib/x86_64-linux-gnu/openmpi NCCL_HOME=/opt/efakit-nccl CUDA_HOME=/opt/cuda-wheels/nvidia/cu13 \
        NVCC_GENCODE="-gencode=arch=compute_80,code=sm_80 -gencode=arch=compute_90,code=sm_90 -gencode=arch=compute_100,code=sm_100" BIN_FILES_LIST="all_reduce all_gather reduce_scatter alltoall broadcast" \
 && install -d /opt/nccl-tests && cp build/*_perf /opt/nccl-tests/ \
 && install -d /opt/nccl-tests/share/licenses/nccl-tests && cp LICENSE.txt /opt/nccl-tests/share/licenses/nccl-tests/ \
 && efakit-strip /opt/nccl-tests && cd / && rm -rf /tmp/src

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
        libhwloc15 \
        libnl-3-200 \
        libnl-route-3-200 \
        openmpi-bin \
        openssh-client \
        openssh-server \
        pciutils \
 && rm -f /etc/ssh/ssh_host_*_key /etc/ssh/ssh_host_*_key.pub \
 && rm -rf /var/lib/apt/lists/*

# Remove what conflicts with the EFA stack: a second libnccl.so.2 makes the NCCL in use depend on link order.
RUN { dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' libnccl-dev libnccl2 2>/dev/null || true; } | awk '/^[hi]i/ {print $2}' | xargs -r apt-get remove -y --purge \
 && ldconfig

# The stack compiled in the builder stages: only the installed trees (stripped, with their licenses).
COPY --from=efa /opt/amazon/efa /opt/amazon/efa
COPY --from=efa /opt/amazon/ofi-nccl /opt/amazon/ofi-nccl
COPY --from=gdrcopy /opt/gdrcopy /opt/gdrcopy
COPY --from=nccl-tests /opt/nccl-tests /opt/nccl-tests
COPY --from=builder /opt/cuda-wheels/nvidia/cu13/lib/libcudart.so.13 /usr/local/cuda/lib64/libcudart.so.13
# The loader finds each installed tree's libraries.  nccl-tests link libcudart.so.N;
# aws-ofi-nccl and libfabric dlopen the unversioned libcudart.so, a link runtime-only
# CUDA layouts lack (here: /usr/local/cuda/lib64).  No fallback: without it NCCL would use sockets.
RUN printf '%s\n' /opt/amazon/efa/lib /opt/gdrcopy/lib > /etc/ld.so.conf.d/efakit-stack.conf \
 && cudart_dir=/usr/local/cuda/lib64 \
 && cudart="$(find "$cudart_dir/" -maxdepth 1 -name 'libcudart.so.[0-9]*' | sort | head -n1)" \
 && { test -n "$cudart" || { echo "efakit: no libcudart.so.N in $cudart_dir" >&2; exit 1; }; } \
 && if [ ! -e "$cudart_dir/libcudart.so" ]; then ln -s "$(basename "$cudart")" "$cudart_dir/libcudart.so"; fi \
 && echo "$cudart_dir" > /etc/ld.so.conf.d/efakit-cuda.conf \
 && ldconfig

# NCCL 2.29.7: keep the base's (nvidia-nccl-cu13 wheel in the artifact mirror (the one torch 2.13.0+cu130 requires)) and make it the one libnccl.so.2
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
 && printf '#!/bin/sh\nexec /usr/bin/mpirun --allow-run-as-root "$@"\n' > /usr/local/bin/mpirun-root \
 && chmod 755 /usr/local/bin/mpirun-root

# The verifier's dependencies, in a layer of their own: a change to the verifier
# or the env rules then rebuilds only the last, small layers.
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=bind,source=artifacts/wheels,target=/artifacts/wheels \
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
ENV PATH=/opt/amazon/efa/bin:/opt/nccl-tests:$PATH \
    LD_LIBRARY_PATH=/opt/amazon/ofi-nccl/lib:/opt/amazon/efa/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
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
    org.opencontainers.image.base.name="efakit/base:bookworm" \
    dev.efakit.framework="pytorch" \
    dev.efakit.variant="ec2" \
    dev.efakit.profile="offline" \
    dev.efakit.version.torch="2.13.0" \
    dev.efakit.version.cuda="13.3" \
    dev.efakit.version.efa-installer="absent" \
    dev.efakit.version.rdma-core="64.0" \
    dev.efakit.version.libfabric="2.6.0" \
    dev.efakit.version.aws-ofi-nccl="1.21.1" \
    dev.efakit.version.nccl="2.29.7" \
    dev.efakit.version.gdrcopy="2.6" \
    dev.efakit.version.nccl-tests="2.19.6" \
    dev.efakit.gpu-archs="sm_80,sm_90,sm_100"
