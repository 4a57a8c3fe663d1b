//! Fuzz `readers::nexmon::parse_pcap`: any bytes must parse to a log or one of the
//! fatal errors (not a pcap, unread link type) without panicking; every accepted
//! record must hold 64, 128, 256 or 512 subcarriers with finite, non-negative
//! amplitudes, core and stream below 8, and the counts must fit the packets read.
#![no_main]

use aether_data::readers::nexmon::{parse_pcap, NFFT};
use aether_data::readers::{amplitude_matrix, CsiRecord};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(log) = parse_pcap(data) else {
        return;
    };
    // Every packet costs at least its 16-byte record header.
    let packets = log.records.len() + log.skipped.len() + log.other_packets;
    assert!(packets <= data.len().saturating_sub(24) / 16 + 1);
    let mut amps = Vec::new();
    for r in &log.records {
        assert!(NFFT.contains(&r.csi.len()));
        assert!(r.core < 8 && r.stream < 8);
        amps.clear();
        r.push_amplitudes(&mut amps);
        assert_eq!(amps.len(), r.shape().width());
        assert!(amps.iter().all(|a| a.is_finite() && *a >= 0.0));
    }
    if let Some(m) = amplitude_matrix(&log.records) {
        assert_eq!(m.rows.len(), m.frames() * m.width());
    }
});
