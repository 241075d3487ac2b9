"""Shared test set-up."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

# Tiny tensors: one thread avoids oversubscription on small CI machines.
torch.set_num_threads(1)
