//! Export to, and import from, the `.rvne` model of `aether-rvne`.
//!
//! The trained tensors are written under their docs/model.md names in the canonical order
//! of [`ModelMeta::tensor_specs`], with the description of [`Architecture::to_meta`], the input statistics, class and feature names and free key/values for
//! provenance. A v1 file records only the bare architecture; [`Model::to_v1_bytes`]
//! refuses a model that uses anything v1 cannot express.

use aether_rvne::{DType, ModelFile, ModelMeta, Tensor};

use super::config::{Architecture, TrainConfig};
use super::error::TrainError;
use super::model::Model;
use super::trainer::TrainOutcome;

fn rvne_err(e: aether_rvne::Error) -> TrainError {
    TrainError::Export(e.to_string())
}

/// Names and provenance written beside the tensors.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExportInfo {
    /// One name per class (or empty).
    pub class_names: Vec<String>,
    /// One name per input feature (or empty).
    pub feature_names: Vec<String>,
    /// Free key/value strings, unique keys (e.g. from [`provenance`] plus a data hash).
    pub metadata: Vec<(String, String)>,
}

/// Provenance key/values of a training run: seed, epochs run, best epoch, steps, the
/// optimiser settings and the best epoch's figures (`train.*` keys).
pub fn provenance(cfg: &TrainConfig, out: &TrainOutcome) -> Vec<(String, String)> {
    let mut m = vec![
        ("train.seed".to_string(), cfg.seed.to_string()),
        ("train.epochs_run".into(), out.history.len().to_string()),
        ("train.best_epoch".into(), out.best_epoch.to_string()),
        ("train.steps".into(), out.steps.to_string()),
        ("train.batch_size".into(), cfg.batch_size.to_string()),
        ("train.learning_rate".into(), cfg.learning_rate.to_string()),
        ("train.weight_decay".into(), cfg.weight_decay.to_string()),
        (
            "train.class_weighting".into(),
            cfg.class_weighting.to_string(),
        ),
    ];
    if let Some(s) = out.history.get(out.best_epoch) {
        m.push(("train.train_loss".into(), format!("{:.6}", s.train_loss)));
        m.push((
            "train.train_accuracy".into(),
            format!("{:.6}", s.train_accuracy),
        ));
        if let (Some(l), Some(a)) = (s.val_loss, s.val_accuracy) {
            m.push(("train.val_loss".into(), format!("{l:.6}")));
            m.push(("train.val_accuracy".into(), format!("{a:.6}")));
        }
    }
    m
}

impl Model {
    /// The `.rvne` description (dims, options, pattern) of this model's architecture.
    pub fn model_meta(&self) -> Result<ModelMeta, TrainError> {
        self.arch()
            .to_meta()
            .map_err(|e| TrainError::Export(e.to_string()))
    }

    /// The owned `.rvne` model: tensors in canonical order plus names and metadata.
    pub fn to_model_file(&self, info: &ExportInfo) -> Result<ModelFile, TrainError> {
        let a = self.arch();
        for (what, names, want) in [
            ("class_names", &info.class_names, a.classes),
            ("feature_names", &info.feature_names, a.features),
        ] {
            if !names.is_empty() && names.len() != want {
                return Err(TrainError::LengthMismatch {
                    what,
                    expected: want,
                    got: names.len(),
                });
            }
        }
        let meta = self.model_meta()?;
        let mut tensors = Vec::with_capacity(meta.tensor_count());
        for spec in meta.tensor_specs() {
            let name = spec.name();
            let data = self.tensor(name.as_str()).ok_or_else(|| {
                TrainError::Export(format!("no trained tensor {}", name.as_str()))
            })?;
            tensors.push(Tensor {
                name: name.as_str().into(),
                shape: spec.shape.as_slice().to_vec(),
                data: data.to_vec(),
            });
        }
        let file = ModelFile {
            meta,
            dtype: DType::F32,
            class_names: info.class_names.clone(),
            feature_names: info.feature_names.clone(),
            metadata: info.metadata.clone(),
            tensors,
        };
        file.check_tensors().map_err(rvne_err)?;
        Ok(file)
    }

    /// A v2 `.rvne` blob (`dtype` f32 or f16) with everything of [`ExportInfo`].
    pub fn to_v2_bytes(&self, info: &ExportInfo, dtype: DType) -> Result<Vec<u8>, TrainError> {
        self.to_model_file(info)?
            .to_v2_bytes(dtype)
            .map_err(rvne_err)
    }

    /// A v1 `.rvne` blob; refuses an architecture v1 cannot express, naming the reason.
    pub fn to_v1_bytes(&self, dtype: DType) -> Result<Vec<u8>, TrainError> {
        if !self.arch().is_v1_compatible() {
            let why = self
                .model_meta()?
                .v1_expressible()
                .err()
                .unwrap_or("the architecture is not the bare v1 one");
            return Err(TrainError::Export(format!("v1 format: {why}")));
        }
        self.to_model_file(&ExportInfo::default())?
            .to_v1_bytes(dtype)
            .map_err(rvne_err)
    }

    /// Rebuilds a trainable model from an `.rvne` model (e.g. to fine-tune or evaluate).
    pub fn from_model_file(file: &ModelFile) -> Result<Self, TrainError> {
        file.check_tensors().map_err(rvne_err)?;
        let arch = Architecture::from_meta(&file.meta);
        let mut model = Model::new(arch, 0)?;
        let f = model.arch().features;
        let (mut mean, mut std) = (vec![0.0; f], vec![1.0; f]);
        for t in &file.tensors {
            match t.name.as_str() {
                "input.mean" => mean.clone_from(&t.data),
                "input.std" => std.clone_from(&t.data),
                name => {
                    let spec =
                        model.layout().spec(name).cloned().ok_or_else(|| {
                            TrainError::Export(format!("unexpected tensor {name}"))
                        })?;
                    model.params_mut()[spec.range()].copy_from_slice(&t.data);
                }
            }
        }
        Model::from_parts(model.arch().clone(), model.params().to_vec(), mean, std)
    }
}
