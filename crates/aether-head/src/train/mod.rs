//! Training: backward through the whole head, AdamW, metrics (feature `train`).
