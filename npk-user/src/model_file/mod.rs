//! The `.npk` model file: float model, input normalization and quantized model, versioned and checksummed.
