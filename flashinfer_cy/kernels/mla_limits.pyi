"""Host-side rules for inputs FlashInfer's batched MLA gets silently wrong (Cython-level
only; no Python API: BatchMLAPagedAttention applies them)."""
