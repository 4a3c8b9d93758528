"""Graphs: the user-item interaction graph (LightGCN, PAS) and the item-attribute graph (QAS)."""
