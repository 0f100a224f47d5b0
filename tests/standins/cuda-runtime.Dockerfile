# Stand-in for nvidia/cuda:13.0.2-runtime-ubuntu24.04: its layout and packaging state
# (images/base-facts.yaml row cuda-runtime), not NVIDIA's content.  No python3; CUDA
# runtime libraries in /usr/local/cuda/lib64 (libcudart.so.13, no unversioned link);
# libnccl2 installed from a package and held (apt-mark hold); the NGC marker
# /opt/nvidia/nvidia_entrypoint.sh; no apt lists.
ARG OFFLINE_IMAGE=efakit/pytorch:ci
FROM ${OFFLINE_IMAGE} AS offline
FROM efakit/base:bookworm
# The locally made base allows pip everywhere; the real image has no such setting.
ENV PIP_BREAK_SYSTEM_PACKAGES=0
COPY --from=offline /usr/local/cuda/lib64/libcudart.so.13 /usr/local/cuda/lib64/libcudart.so.13
RUN mkdir -p /tmp/deb/DEBIAN /tmp/deb/usr/lib/x86_64-linux-gnu /opt/nvidia \
 && cp /usr/local/lib/python3.11/dist-packages/nvidia/nccl/lib/libnccl.so.2 /tmp/deb/usr/lib/x86_64-linux-gnu/ \
 && printf 'Package: libnccl2\nVersion: 2.28.3-1+cuda13.0\nArchitecture: amd64\nMaintainer: efakit stand-in\nDescription: stand-in for NVIDIA libnccl2\n' > /tmp/deb/DEBIAN/control \
 && dpkg-deb --build /tmp/deb /tmp/libnccl2.deb && dpkg -i /tmp/libnccl2.deb && apt-mark hold libnccl2 \
 && rm -rf /tmp/deb /tmp/libnccl2.deb /usr/local/lib/python3.11 \
 && dpkg-query -W -f='${Package}\n' | grep -E '^(lib)?python3' | xargs apt-get purge -y \
 && printf '#!/bin/bash\nexec "$@"\n' > /opt/nvidia/nvidia_entrypoint.sh && chmod 755 /opt/nvidia/nvidia_entrypoint.sh \
 && ldconfig && hash -r && ! command -v python3
