"""Training: the LightningModule, its metrics and plots, checkpoints, resume, and the fit CLI."""
