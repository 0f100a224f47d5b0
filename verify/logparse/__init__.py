"""NCCL_DEBUG=INFO log and nccl-tests result parsing."""
