//! Post-training int8 quantization of a float [`crate::train::Mlp`] into an [`npk_common::model::Model`].
