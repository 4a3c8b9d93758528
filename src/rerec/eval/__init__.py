"""Evaluation: the recommendation benchmark against baselines, and general-ability retention."""
