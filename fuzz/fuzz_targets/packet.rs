//! Fuzz the live service's datagram decoder (`aether_serve::packet::decode`) and, for
//! an accepted raw CSI packet, the streaming feature extractor on it: any bytes must be
//! refused with a reason or decoded into a packet whose features are finite. The first
//! byte picks a magic to put in front, so every kind's checks are reached.
#![no_main]

use aether_data::features::{FeatureConfig, FeatureStream};
use aether_data::wire::{CLASSIFICATION_MAGIC, FEATURE_STATE_MAGIC, RAW_CSI_MAGIC};
use aether_serve::packet::{decode, Packet};
use libfuzzer_sys::fuzz_target;

fn exercise(b: &[u8]) {
    match decode(b) {
        Ok(Packet::RawCsi(r)) => {
            assert_eq!(b.len(), 20 + r.iq.len());
            let cfg = FeatureConfig::default();
            let (ant, sub) = (r.n_antennas as usize, r.n_subcarriers as usize);
            if let Ok(mut fs) = FeatureStream::new(cfg, ant, sub) {
                let iq: Vec<i8> = r.iq.iter().map(|&v| v as i8).collect();
                for _ in 0..3 {
                    let f = fs.push_iq(&iq).expect("shape matches");
                    assert!(f.iter().all(|v| v.is_finite()));
                }
            }
        }
        Ok(Packet::FeatureState(p)) => assert!(p.values().iter().all(|v| v.is_finite())),
        Ok(Packet::Classification(c)) => assert!(c.top_logit.is_finite()),
        Err(_) => {}
    }
}

fuzz_target!(|data: &[u8]| {
    exercise(data);
    if let Some((&pick, rest)) = data.split_first() {
        let magic = [RAW_CSI_MAGIC, FEATURE_STATE_MAGIC, CLASSIFICATION_MAGIC][pick as usize % 3];
        let mut b = magic.to_le_bytes().to_vec();
        b.extend_from_slice(rest);
        exercise(&b);
    }
});
