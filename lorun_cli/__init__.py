"""lorun: Deep LoRA-Unfolding Networks for image restoration (CS, CASSI, SR)."""

__version__ = "0.1.0"
