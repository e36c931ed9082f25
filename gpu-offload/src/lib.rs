//! GPU training (filled by the GPU issue).
