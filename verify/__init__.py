"""efa-verify: prove, inside the image, that NCCL really uses EFA and GPUDirect RDMA.

This package must stay light (click, PyYAML, nvidia-ml-py) because it ships in
every image; it never imports the host-side `buildkit` package.
"""

__version__ = "0.1.0"
