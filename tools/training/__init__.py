"""Training of the demo models (PyTorch, CPU): shared by the tools/train_*.py commands."""
