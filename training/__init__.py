"""Offline training pipeline (teachers, datasets, distillation); never imported by the runtime."""
