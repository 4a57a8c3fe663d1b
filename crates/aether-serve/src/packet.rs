//! Decoding one datagram the way the service does: the kind from the magic, then the
//! full checks of that kind (exact length, header ranges, CRC, version, finite values).
//! Pure and allocation-free; the fuzz target `packet` drives it with arbitrary bytes.

use aether_data::wire::{
    Classification, FeatureState, RawCsiRef, WireError, CLASSIFICATION_LEN, CLASSIFICATION_MAGIC,
    FEATURE_STATE_LEN, FEATURE_STATE_MAGIC, RAW_CSI_MAGIC,
};

use crate::metrics::Reject;

/// A datagram that passed every check of its kind.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Packet<'a> {
    /// Raw CSI (`0xC5110001`), borrowed.
    RawCsi(RawCsiRef<'a>),
    /// Feature state (`0xC5110006`) with nine finite values.
    FeatureState(FeatureState),
    /// A node's own classification (`0xC5110007`) with finite logits.
    Classification(Classification),
}

/// The rejection reason of a wire error.
pub fn wire_reject(e: &WireError) -> Reject {
    match e {
        WireError::Truncated { .. } | WireError::PayloadLength { .. } => Reject::Truncated,
        WireError::BadMagic { .. } => Reject::BadMagic,
        WireError::ZeroAntennas => Reject::ZeroAntennas,
        WireError::BadSubcarrierCount(_) => Reject::BadSubcarriers,
        WireError::CrcMismatch { .. } => Reject::Crc,
        WireError::UnsupportedVersion(_) => Reject::Version,
        WireError::TrailingBytes { .. } => Reject::TrailingBytes,
    }
}

/// Decodes one datagram (it must hold exactly one packet).
pub fn decode(b: &[u8]) -> Result<Packet<'_>, Reject> {
    if b.len() < 4 {
        return Err(Reject::Truncated);
    }
    match u32::from_le_bytes([b[0], b[1], b[2], b[3]]) {
        RAW_CSI_MAGIC => RawCsiRef::parse(b)
            .map(Packet::RawCsi)
            .map_err(|e| wire_reject(&e)),
        FEATURE_STATE_MAGIC => {
            if b.len() > FEATURE_STATE_LEN {
                return Err(Reject::TrailingBytes);
            }
            let p = FeatureState::decode(b).map_err(|e| wire_reject(&e))?;
            if p.values().iter().any(|v| !v.is_finite()) {
                return Err(Reject::NonFinite);
            }
            Ok(Packet::FeatureState(p))
        }
        CLASSIFICATION_MAGIC => {
            if b.len() > CLASSIFICATION_LEN {
                return Err(Reject::TrailingBytes);
            }
            let p = Classification::decode(b).map_err(|e| wire_reject(&e))?;
            if !p.top_logit.is_finite() || !p.top1_minus_top2.is_finite() {
                return Err(Reject::NonFinite);
            }
            Ok(Packet::Classification(p))
        }
        _ => Err(Reject::BadMagic),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aether_data::wire::RawCsiFrame;
    use proptest::prelude::*;

    #[test]
    fn every_kind_and_refusal() {
        let f = RawCsiFrame {
            node_id: 3,
            n_antennas: 1,
            n_subcarriers: 4,
            freq_mhz: 2412,
            seq: 9,
            rssi: -40,
            noise_floor: -90,
            iq: vec![1, 2, 3, 4, 5, 6, 7, 8],
        };
        let raw = f.encode().unwrap();
        assert!(matches!(decode(&raw), Ok(Packet::RawCsi(r)) if r.seq == 9));
        assert_eq!(decode(&raw[..raw.len() - 1]), Err(Reject::Truncated));
        assert_eq!(decode(&[1, 2, 3]), Err(Reject::Truncated));
        assert_eq!(decode(&[0; 40]), Err(Reject::BadMagic));
        let c = Classification {
            n_classes: 2,
            node_id: 1,
            ts_us: 1,
            seq: 1,
            argmax: 0,
            top_logit: f32::INFINITY,
            top1_minus_top2: 0.0,
        };
        assert_eq!(decode(&c.encode()), Err(Reject::NonFinite));
        let mut long = c.encode().to_vec();
        long.push(0);
        assert_eq!(decode(&long), Err(Reject::TrailingBytes));
    }

    proptest! {
        /// Arbitrary bytes, and arbitrary bytes behind each magic: never a panic; an
        /// accepted raw packet is exactly as long as its header says.
        #[test]
        fn never_panics(mut b in proptest::collection::vec(any::<u8>(), 0..300), magic in 0usize..4) {
            let m = [RAW_CSI_MAGIC, FEATURE_STATE_MAGIC, CLASSIFICATION_MAGIC, 0];
            if b.len() >= 4 && magic < 3 {
                b[..4].copy_from_slice(&m[magic].to_le_bytes());
            }
            if let Ok(Packet::RawCsi(r)) = decode(&b) {
                prop_assert_eq!(b.len(), 20 + r.iq.len());
                prop_assert_eq!(r.iq.len(), 2 * r.n_antennas as usize * r.n_subcarriers as usize);
            }
        }
    }
}
