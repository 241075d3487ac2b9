"""Training: data, tasks and the training loop."""
