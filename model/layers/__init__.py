"""Shared building blocks, one concept per module (masks, horizontal pooling, separate FCs)."""
