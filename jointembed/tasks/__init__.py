"""Tasks: LightningModules that hold a model, its loss, optimiser settings and metrics (no model code here)."""
