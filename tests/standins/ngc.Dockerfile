# Stand-in for nvcr.io/nvidia/pytorch:26.09-py3: layout and packaging state of
# images/base-facts.yaml row ngc, not NVIDIA's content.  Its own builder: a CUDA toolkit
# at /usr/local/cuda (from the cuda-devel stand-in), python3 with torch at /usr/bin/python3
# and PEP 668 in force, NCCL as a system libnccl2 (no nvidia-nccl wheel), a fake HPC-X in
# /opt/hpcx (ompi, ucx, and the sharp plugin's libnccl-net.so first on LD_LIBRARY_PATH),
# OPAL_PREFIX into it, the distro's libibverbs1/ibverbs-providers (MOFED's place), the NGC
# marker, no apt lists.
ARG DEVEL=efakit-test/base-standin:cuda-devel
FROM ${DEVEL} AS devel
FROM efakit/base:bookworm
COPY --from=devel /opt/cuda-wheels /opt/cuda-wheels
ENV PIP_BREAK_SYSTEM_PACKAGES=0 \
    OPAL_PREFIX=/opt/hpcx/ompi \
    LD_LIBRARY_PATH=/opt/hpcx/nccl_rdma_sharp_plugin/lib:/opt/hpcx/ucx/lib:/opt/hpcx/ompi/lib
RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \
    --mount=type=cache,target=/var/lib/apt/lists,sharing=locked \
    rm -f /etc/apt/apt.conf.d/docker-clean \
 && apt-get update && apt-get install -y --no-install-recommends libibverbs1 ibverbs-providers \
 && ln -s /opt/cuda-wheels/nvidia/cu13 /usr/local/cuda \
 && mkdir -p /tmp/deb/DEBIAN /tmp/deb/usr/lib/x86_64-linux-gnu /tmp/deb/usr/include /opt/nvidia \
        /opt/hpcx/ompi/lib /opt/hpcx/ucx/lib /opt/hpcx/nccl_rdma_sharp_plugin/lib \
 && nccl=/usr/local/lib/python3.11/dist-packages/nvidia/nccl \
 && cp $nccl/lib/libnccl.so.2 /tmp/deb/usr/lib/x86_64-linux-gnu/ && cp -a $nccl/include/. /tmp/deb/usr/include/ \
 && ln -s libnccl.so.2 /tmp/deb/usr/lib/x86_64-linux-gnu/libnccl.so \
 && printf 'Package: libnccl2\nVersion: 2.29.7-1+cuda13.0\nArchitecture: amd64\nMaintainer: efakit stand-in\nDescription: stand-in\n' > /tmp/deb/DEBIAN/control \
 && dpkg-deb --build /tmp/deb /tmp/libnccl2.deb && dpkg -i /tmp/libnccl2.deb && rm -rf /tmp/deb /tmp/*.deb \
 && python3 -m pip uninstall -y --break-system-packages nvidia-nccl-cu13 \
 && cp /usr/lib/x86_64-linux-gnu/libibverbs.so.1 /opt/hpcx/nccl_rdma_sharp_plugin/lib/libnccl-net.so \
 && printf '#!/bin/bash\nexec "$@"\n' > /opt/nvidia/nvidia_entrypoint.sh && chmod 755 /opt/nvidia/nvidia_entrypoint.sh \
 && rm -rf /var/lib/apt/lists/* && ldconfig
