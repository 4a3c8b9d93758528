"""Training: SFT warm-up and curriculum RFT with reasoning-aware segmented advantages."""
