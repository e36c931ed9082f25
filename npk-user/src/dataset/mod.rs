//! Datasets: CSV files (header row, numeric features, integer label last), splits and
//! feature standardization.

/// A labelled table of float features, row-major.
///
/// # Shapes
/// `features`: `len() x num_features`; `labels`: `len()`, each `< num_classes`.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    pub feature_names: Vec<String>,
    pub features: Vec<f32>,
    pub labels: Vec<u32>,
    pub num_features: usize,
    pub num_classes: usize,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.features[i * self.num_features..(i + 1) * self.num_features]
    }
}

/// Per-feature mean and standard deviation, fitted on the training split only.
#[derive(Clone, Debug, PartialEq)]
pub struct Standardizer {
    pub mean: Vec<f32>,
    /// Never zero: constant features get 1.
    pub std: Vec<f32>,
}
