"""Layer 3: kernel families, one module each (norm, page, gdn, attention, rope, activation,
sampling, cascade, topk). Each module describes its exports once, as Binding table lines, and
validates arguments before any kernel is touched."""
