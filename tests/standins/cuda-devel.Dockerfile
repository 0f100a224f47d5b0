# Stand-in for nvidia/cuda:13.0.2-devel-ubuntu24.04 (the builder): layout and packaging
# state of images/base-facts.yaml row cuda-devel, not NVIDIA's content.  A CUDA 13
# toolchain at /usr/local/cuda (nvcc, headers, libcudart) made from the offline profile's
# pinned toolchain wheels (the build context's toolchain/), no python3, libnccl2 and
# libnccl-dev installed and held, the NGC marker, no apt lists.
FROM efakit/base:bookworm
# The locally made base allows pip everywhere; the real image has no such setting.
ENV PIP_BREAK_SYSTEM_PACKAGES=0
RUN --mount=type=bind,source=toolchain,target=/tmp/toolchain \
    python3 -m pip install --break-system-packages --no-compile --no-index --find-links /tmp/toolchain --require-hashes \
        --target /opt/cuda-wheels -r /tmp/toolchain/requirements-builder.txt \
 && ln -s lib /opt/cuda-wheels/nvidia/cu13/lib64 \
 && ln -s libcudart.so.13 /opt/cuda-wheels/nvidia/cu13/lib/libcudart.so \
 && ln -s /opt/cuda-wheels/nvidia/cu13 /usr/local/cuda && /usr/local/cuda/bin/nvcc --version \
 && mkdir -p /tmp/deb/DEBIAN /tmp/deb/usr/lib/x86_64-linux-gnu /tmp/dev/DEBIAN /tmp/dev/usr/include /opt/nvidia \
 && cp /usr/local/lib/python3.11/dist-packages/nvidia/nccl/lib/libnccl.so.2 /tmp/deb/usr/lib/x86_64-linux-gnu/ \
 && cp -a /usr/local/lib/python3.11/dist-packages/nvidia/nccl/include/. /tmp/dev/usr/include/ \
 && printf 'Package: libnccl2\nVersion: 2.28.3-1+cuda13.0\nArchitecture: amd64\nMaintainer: efakit stand-in\nDescription: stand-in\n' > /tmp/deb/DEBIAN/control \
 && printf 'Package: libnccl-dev\nVersion: 2.28.3-1+cuda13.0\nArchitecture: amd64\nDepends: libnccl2\nMaintainer: efakit stand-in\nDescription: stand-in\n' > /tmp/dev/DEBIAN/control \
 && dpkg-deb --build /tmp/deb /tmp/libnccl2.deb && dpkg-deb --build /tmp/dev /tmp/libnccl-dev.deb \
 && dpkg -i /tmp/libnccl2.deb /tmp/libnccl-dev.deb && apt-mark hold libnccl2 libnccl-dev \
 && rm -rf /tmp/deb /tmp/dev /tmp/*.deb /usr/local/lib/python3.11 \
 && dpkg-query -W -f='${Package}\n' | grep -E '^(lib)?python3' | xargs apt-get purge -y \
 && printf '#!/bin/bash\nexec "$@"\n' > /opt/nvidia/nvidia_entrypoint.sh && chmod 755 /opt/nvidia/nvidia_entrypoint.sh \
 && ldconfig && hash -r && ! command -v python3
