# Stand-in for pytorch/pytorch:2.13.0-cuda13.0-cudnn9-runtime: its layout and packaging
# state (images/base-facts.yaml row pytorch-runtime), not its content.  Debian 12's
# python3 at /usr/bin/python3 with PEP 668 in force (EXTERNALLY-MANAGED, pip refuses),
# no /opt/conda, no /usr/local/cuda, libcudart.so.13 in the nvidia/cu13 wheel layout
# without the unversioned link, torch and the nvidia-nccl-cu13 wheel, no NGC marker.
ARG OFFLINE_IMAGE=efakit/pytorch:ci
FROM ${OFFLINE_IMAGE} AS offline
FROM efakit/base:bookworm
ENV PIP_BREAK_SYSTEM_PACKAGES=0
COPY --from=offline /usr/local/cuda/lib64/libcudart.so.13 /tmp/libcudart.so.13
RUN d="$(python3 -c 'import nvidia.nccl, os; print(os.path.dirname(list(nvidia.nccl.__path__)[0]))')/cu13/lib" \
 && mkdir -p "$d" && mv /tmp/libcudart.so.13 "$d/" \
 && test -e /usr/lib/python3.11/EXTERNALLY-MANAGED && test ! -e /usr/local/cuda
