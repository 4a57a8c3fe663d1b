//! The model a service runs: the head (f32, or int8 on the integer head of
//! aether-quant), its names, what packets feed it, its stream settings, and the file's
//! SHA-256 (shown at `GET /api/v1/model`).

use aether_data::features::{feature_names, FeatureConfig, FeatureStream};
use aether_data::wire::FEATURE_STATE_NAMES;
use aether_head::{LiveStream, StreamSettings, TemporalHead};
use aether_quant::{QLiveStream, QuantHead};
use aether_rvne::{BlobView, ModelMeta};
use sha2::{Digest, Sha256};

use crate::error::ServeError;

/// What kind of node packet becomes the model's frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelInput {
    /// Raw CSI frames through the feature extractor with this configuration; the model
    /// takes `antennas · per_antenna` features.
    RawCsi {
        /// The extractor configuration.
        features: FeatureConfig,
        /// Antennas a node must report.
        antennas: usize,
    },
    /// Feature-state packets (`0xC5110006`): the model's features are the nine values.
    FeatureState,
    /// Neither: the model's features are something nodes do not send (only node
    /// classification packets are recorded).
    Other,
}

impl ModelInput {
    /// A short name for the API and logs.
    pub fn name(&self) -> &'static str {
        match self {
            ModelInput::RawCsi { .. } => "raw_csi",
            ModelInput::FeatureState => "feature_state",
            ModelInput::Other => "other",
        }
    }
}

/// The inference head of a model: the float head, or the integer head of an int8 model
/// (docs/int8.md); weights owned.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one per loaded model, shared by every shard
pub enum Head {
    /// An f32 / f16 model.
    F32(TemporalHead<'static>),
    /// An int8 model (`aether quantize`).
    Int8(QuantHead<'static>),
}

impl Head {
    /// `"f32"` or `"int8"`.
    pub fn precision(&self) -> &'static str {
        match self {
            Head::F32(_) => "f32",
            Head::Int8(_) => "int8",
        }
    }

    /// A live stream with `settings` (an int8 head needs a horizon of at least 2; its
    /// caches are int8 whatever `settings.kv` says).
    pub fn live_stream(&self, settings: StreamSettings) -> Result<NodeStream, String> {
        match self {
            Head::F32(h) => LiveStream::new(h, settings)
                .map(NodeStream::F32)
                .map_err(|e| e.to_string()),
            Head::Int8(h) => QLiveStream::new(h, settings.horizon)
                .map(|s| NodeStream::Int8 {
                    s,
                    logits: vec![0.0; h.classes()],
                })
                .map_err(|e| e.to_string()),
        }
    }

    /// A live stream whose next frame is at absolute position `t0` (a cluster worker
    /// rebuilding a node's state from a replay, docs/scaling.md): `LiveStream::resume_at`
    /// or `QLiveStream::resume_at`, the same restart rule either way.
    pub fn resume_stream(&self, settings: StreamSettings, t0: u64) -> Result<NodeStream, String> {
        match self {
            Head::F32(h) => LiveStream::resume_at(h, settings, t0)
                .map(NodeStream::F32)
                .map_err(|e| e.to_string()),
            Head::Int8(h) => QLiveStream::resume_at(h, settings.horizon, t0)
                .map(|s| NodeStream::Int8 {
                    s,
                    logits: vec![0.0; h.classes()],
                })
                .map_err(|e| e.to_string()),
        }
    }
}

/// A node's live stream over either kind of head, with the same restart rule (two
/// staggered streams over the horizon).
#[derive(Debug, Clone)]
pub enum NodeStream {
    /// Over the float head.
    F32(LiveStream),
    /// Over the integer head; `logits` holds the last output as f32.
    Int8 {
        /// The stream.
        s: QLiveStream,
        /// Its last logits, `q · 2^−shift` as f32.
        logits: Vec<f32>,
    },
}

impl NodeStream {
    /// Pushes one frame and returns the logits of its context (f32).
    pub fn push(&mut self, head: &Head, frame: &[f32]) -> Result<&[f32], String> {
        match (self, head) {
            (NodeStream::F32(s), Head::F32(h)) => s.push(h, frame).map_err(|e| e.to_string()),
            (NodeStream::Int8 { s, logits }, Head::Int8(h)) => {
                let q = s.push(h, frame).map_err(|e| e.to_string())?;
                h.logits_to_f32(q, logits);
                Ok(logits)
            }
            _ => Err("stream built for another kind of model".into()),
        }
    }

    /// Forgets every frame.
    pub fn reset(&mut self) {
        match self {
            NodeStream::F32(s) => s.reset(),
            NodeStream::Int8 { s, .. } => s.reset(),
        }
    }

    /// Bytes of the stream's buffers.
    pub fn bytes(&self) -> usize {
        match self {
            NodeStream::F32(s) => s.bytes(),
            NodeStream::Int8 { s, logits } => s.bytes() + logits.len() * 4,
        }
    }

    /// Frames behind the last output.
    pub fn context(&self) -> usize {
        match self {
            NodeStream::F32(s) => s.context(),
            NodeStream::Int8 { s, .. } => s.context(),
        }
    }

    /// Absolute position of the next frame.
    pub fn position(&self) -> u64 {
        match self {
            NodeStream::F32(s) => s.position(),
            NodeStream::Int8 { s, .. } => s.position(),
        }
    }
}

/// A loaded, validated model shared by every shard.
#[derive(Debug)]
pub struct LoadedModel {
    /// The inference head (weights owned).
    pub head: Head,
    /// The model description (dims, options, pattern).
    pub meta: ModelMeta,
    /// Class names (`class{i}` when the file has none).
    pub classes: Vec<String>,
    /// Feature names (empty when the file has none).
    pub features: Vec<String>,
    /// What feeds the model.
    pub input: ModelInput,
    /// Stream settings every node stream uses.
    pub stream: StreamSettings,
    /// SHA-256 of the file, hex.
    pub sha256: String,
    /// `.rvne` version (1 or 2).
    pub version: u16,
    /// File size in bytes.
    pub file_bytes: usize,
}

/// Infers the extractor configuration and antenna count from feature names written by
/// [`feature_names`] (`a{a}_b{bb}`, `a{a}_gain`, `a{a}_m{i}`); `None` if they are not.
pub fn infer_feature_config(names: &[String]) -> Option<(FeatureConfig, usize)> {
    let bands = names.iter().filter(|n| n.starts_with("a0_b")).count();
    let gain = names.iter().any(|n| n == "a0_gain");
    let motion = names.iter().filter(|n| n.starts_with("a0_m")).count();
    let cfg = FeatureConfig {
        bands,
        gain,
        motion,
    };
    let per = cfg.per_antenna();
    if bands == 0 || per == 0 || !names.len().is_multiple_of(per) {
        return None;
    }
    let ant = names.len() / per;
    (feature_names(ant, cfg) == names).then_some((cfg, ant))
}

impl LoadedModel {
    /// Parses and validates `bytes` fully (format, weights, stream settings) before
    /// anything uses it. `fallback` is the extractor configuration for a model whose
    /// file has no feature names (v1): raw CSI is accepted when its width fits.
    /// `stream` of `None` takes the default horizon from the file (`data.window`).
    pub fn from_bytes(
        bytes: &[u8],
        fallback: FeatureConfig,
        stream: Option<StreamSettings>,
    ) -> Result<Self, ServeError> {
        let view = BlobView::parse(bytes).map_err(|e| ServeError::Model(e.to_string()))?;
        let meta = *view.meta();
        let head = if view.is_int8() {
            Head::Int8(
                QuantHead::from_view(&view)
                    .map_err(|e| ServeError::Model(e.to_string()))?
                    .into_owned(),
            )
        } else {
            Head::F32(
                TemporalHead::from_view(&view)
                    .map_err(|e| ServeError::Model(e.to_string()))?
                    .into_owned(),
            )
        };
        if !meta.pattern.causal {
            return Err(ServeError::Model(
                "the model's attention is not causal, so it cannot stream".into(),
            ));
        }
        let n_features = meta.dims.input_dim;
        let classes: Vec<String> = (0..meta.dims.classes)
            .map(|i| {
                view.class_name(i)
                    .map_or_else(|| format!("class{i}"), str::to_string)
            })
            .collect();
        let features: Vec<String> = if view.has_feature_names() {
            (0..n_features)
                .map(|i| view.feature_name(i).unwrap_or_default().to_string())
                .collect()
        } else {
            Vec::new()
        };
        let input = if features.is_empty() {
            let per = fallback.per_antenna();
            if per > 0 && n_features.is_multiple_of(per) {
                ModelInput::RawCsi {
                    features: fallback,
                    antennas: n_features / per,
                }
            } else {
                ModelInput::Other
            }
        } else if features.iter().map(String::as_str).eq(FEATURE_STATE_NAMES) {
            ModelInput::FeatureState
        } else if let Some((features, antennas)) = infer_feature_config(&features) {
            ModelInput::RawCsi { features, antennas }
        } else {
            ModelInput::Other
        };
        if let ModelInput::RawCsi { features: fc, .. } = input {
            // The extractor must accept this configuration (bands, motion lags).
            FeatureStream::new(fc, 1, fc.bands.max(1))
                .map_err(|e| ServeError::Model(format!("feature extractor: {e}")))?;
        }
        let stream = stream.unwrap_or_else(|| StreamSettings::with_horizon(default_horizon(&view)));
        stream
            .validate()
            .map_err(|e| ServeError::Config(format!("stream settings: {e}")))?;
        // Building one stream proves the settings fit this head.
        head.live_stream(stream)
            .map_err(|e| ServeError::Config(format!("stream settings: {e}")))?;
        Ok(Self {
            meta,
            classes,
            features,
            input,
            stream,
            sha256: sha256_hex(bytes),
            version: view.version(),
            file_bytes: bytes.len(),
            head,
        })
    }
}

impl LoadedModel {
    /// The CSV header of a recorded segment: the model's feature names, or for a v1
    /// file without names the extractor's names (`aether features` writes the same).
    pub fn record_header(&self) -> Vec<String> {
        if !self.features.is_empty() {
            return self.features.clone();
        }
        match self.input {
            ModelInput::RawCsi { features, antennas } => feature_names(antennas, features),
            ModelInput::FeatureState => FEATURE_STATE_NAMES.iter().map(|s| s.to_string()).collect(),
            ModelInput::Other => Vec::new(),
        }
    }
}

/// The horizon a model's streams use by default: its training window (`data.window`
/// metadata, written by `aether train`) or [`aether_head::live::DEFAULT_HORIZON`].
pub fn default_horizon(view: &BlobView<'_>) -> usize {
    view.metadata_value("data.window")
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&w| w >= 2)
        .unwrap_or(aether_head::live::DEFAULT_HORIZON)
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infers_extractor_settings_from_names() {
        for (ant, cfg) in [
            (1, FeatureConfig::default()),
            (
                2,
                FeatureConfig {
                    bands: 4,
                    gain: false,
                    motion: 2,
                },
            ),
            (
                3,
                FeatureConfig {
                    bands: 7,
                    gain: true,
                    motion: 0,
                },
            ),
        ] {
            assert_eq!(
                infer_feature_config(&feature_names(ant, cfg)),
                Some((cfg, ant))
            );
        }
        let names: Vec<String> = ["sc0", "sc1"].iter().map(|s| s.to_string()).collect();
        assert_eq!(infer_feature_config(&names), None);
        let mut names = feature_names(1, FeatureConfig::default());
        names.swap(0, 1);
        assert_eq!(infer_feature_config(&names), None);
    }
}
