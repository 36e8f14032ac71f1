"""Analyses reproduced from the paper (Fig. 4)."""
