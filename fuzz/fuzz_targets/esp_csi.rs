//! Fuzz `readers::esp_csi::parse_log`: any bytes must parse without panicking,
//! every line must be counted exactly once (record, skipped or other), and every
//! record must be consistent (even, non-empty values matching its `len` field).
#![no_main]

use aether_data::readers::esp_csi::parse_log;
use aether_data::readers::{amplitude_matrix, CsiRecord};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let log = parse_log(data);
    let lines = if data.is_empty() {
        0
    } else {
        data.strip_suffix(b"\n").unwrap_or(data).split(|&b| b == b'\n').count()
    };
    assert_eq!(log.records.len() + log.skipped.len() + log.other_lines, lines);
    let mut amps = Vec::new();
    for r in &log.records {
        assert!(!r.values.is_empty() && r.values.len() % 2 == 0);
        assert_eq!(r.field("len"), Some(r.values.len() as i64));
        amps.clear();
        r.push_amplitudes(&mut amps);
        assert_eq!(amps.len(), r.shape().width());
        assert!(amps.iter().all(|a| a.is_finite() && *a >= 0.0));
    }
    if let Some(m) = amplitude_matrix(&log.records) {
        assert_eq!(m.rows.len(), m.frames() * m.width());
    }
});
