//! What the service benchmarks (`load`, `cluster_bench`) share: the model they run and
//! the process measurements.

use aether_data::features::{feature_names, FeatureConfig};
use aether_head::train::{Architecture, ExportInfo, Model};
use aether_rvne::DType;
use nix::sys::resource::{getrusage, UsageWho};

/// The default trainable architecture over the default extractor's 16 features, 4
/// gesture classes, randomly initialised (the compute of a trained one), training window
/// 300 (the simulated gestures' length, so the streams' horizon is 300).
pub fn default_model() -> Vec<u8> {
    let names = feature_names(1, FeatureConfig::default());
    let arch = Architecture::trainable(names.len(), 4);
    let m = Model::new(arch, 1).unwrap();
    m.to_v2_bytes(
        &ExportInfo {
            class_names: ["circle", "push", "swipe", "wave"]
                .map(String::from)
                .to_vec(),
            feature_names: names,
            metadata: vec![("data.window".into(), "300".into())],
        },
        DType::F32,
    )
    .unwrap()
}

/// CPU seconds (user + system) of this process, or of the calling thread.
pub fn cpu(who: UsageWho) -> f64 {
    let u = getrusage(who).expect("getrusage");
    let s = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 * 1e-6;
    s(u.user_time()) + s(u.system_time())
}

/// Resident memory of this process in KiB.
pub fn rss_kib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}
