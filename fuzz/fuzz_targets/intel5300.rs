//! Fuzz `readers::intel5300::parse_dat`: any bytes must parse to a log or the one
//! fatal error without panicking, and every accepted record must be complete
//! (30·Nrx·Ntx pairs, one finite amplitude each, inside the file).
#![no_main]

use aether_data::readers::intel5300::{parse_dat, SUBCARRIERS};
use aether_data::readers::{amplitude_matrix, CsiRecord};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(log) = parse_dat(data) else {
        return;
    };
    assert!(log.records.len() + log.skipped.len() + log.other_code_count() <= log.records_seen);
    let mut amps = Vec::new();
    for b in &log.records {
        let pairs = usize::from(b.n_rx) * usize::from(b.n_tx);
        assert_eq!(b.csi.len(), SUBCARRIERS * pairs);
        assert!(b.offset < data.len());
        amps.clear();
        b.push_amplitudes(&mut amps);
        assert_eq!(amps.len(), b.shape().width());
        assert!(amps.iter().all(|a| a.is_finite() && *a >= 0.0));
        let _ = b.total_rss_dbm();
        let _ = b.antenna_permutation();
    }
    if let Some(m) = amplitude_matrix(&log.records) {
        assert_eq!(m.rows.len(), m.frames() * m.width());
        assert_eq!(m.frames() + m.other_shape, log.records.len());
    }
});
