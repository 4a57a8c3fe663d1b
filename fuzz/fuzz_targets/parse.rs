//! Fuzz `BlobView::parse`: any input must be refused with an error or accepted as a blob
//! whose every accessor works and whose canonical re-encoding parses back identically
//! (float models through `ModelFile`, int8 models through `QuantModelFile`).
//! Each input is tried as is and with its length field and CRC repaired, so mutations
//! reach the checks behind the CRC.
#![no_main]

use aether_rvne::{BlobView, DType, ModelFile, QuantModelFile};
use libfuzzer_sys::fuzz_target;

fn exercise(bytes: &[u8]) {
    let Ok(view) = BlobView::parse(bytes) else {
        return;
    };
    let _ = view.dtype();
    let d = view.meta().dims;
    for i in 0..d.classes.min(64) {
        let _ = view.class_name(i);
    }
    for i in 0..d.input_dim.min(64) {
        let _ = view.feature_name(i);
    }
    for _ in view.metadata() {}
    let mut n = 0;
    for t in view.tensors() {
        n += 1;
        assert_eq!(view.tensor(t.name()).map(|x| x.offset()), Some(t.offset()));
        if t.dtype().is_float() {
            let mut out = vec![0.0f32; t.len()];
            t.read_f32_into(&mut out).unwrap();
            let _ = t.as_f32();
        } else {
            let mut out = vec![0i32; t.len()];
            t.read_i32_into(&mut out).unwrap();
            let _ = (t.as_i8(), t.as_i32(), t.get_i32(0));
        }
    }
    assert_eq!(n, view.tensor_count());
    if let Some(q) = view.quant() {
        for l in 0..q.layers() {
            let _ = q.layer(l);
        }
        for i in 0..q.scale_count() {
            assert!(q.scale(i) > 0.0);
        }
        let model = QuantModelFile::from_view(&view).unwrap();
        let bytes = model.to_v2_bytes().unwrap();
        let back = QuantModelFile::from_bytes(&bytes).unwrap();
        assert_eq!(back.tensors.len(), model.tensors.len());
        assert_eq!(back.to_v2_bytes().unwrap(), bytes);
        return;
    }
    let model = ModelFile::from_view(&view).unwrap();
    let dtype = view.dtype().unwrap_or(DType::F32);
    let v2 = model.to_v2_bytes(dtype).unwrap();
    let back = ModelFile::from_bytes(&v2).unwrap();
    let key = |m: &aether_rvne::ModelMeta| (m.dims, m.arch, m.pattern);
    assert_eq!(key(&back.meta), key(&model.meta));
    assert_eq!(back.tensors.len(), model.tensors.len());
    if dtype == DType::F32 {
        for (x, y) in back.tensors.iter().zip(&model.tensors) {
            assert!(x
                .data
                .iter()
                .map(|v| v.to_bits())
                .eq(y.data.iter().map(|v| v.to_bits())));
        }
    }
    // The canonical encoding is a fixed point.
    assert_eq!(back.to_v2_bytes(dtype).unwrap(), v2);
}

fn repaired(data: &[u8]) -> Option<Vec<u8>> {
    let mut b = data.to_vec();
    let n = b.len();
    match b.get(4..6)? {
        [1, 0] if n >= 28 => b[20..24].copy_from_slice(&((n - 28) as u32).to_le_bytes()),
        [2, 0] if n >= 44 => b[32..36].copy_from_slice(&(n as u32).to_le_bytes()),
        _ => return None,
    }
    let crc = aether_rvne::crc32(&b[..n - 4]);
    b[n - 4..].copy_from_slice(&crc.to_le_bytes());
    Some(b)
}

fuzz_target!(|data: &[u8]| {
    exercise(data);
    if let Some(b) = repaired(data) {
        exercise(&b);
    }
});
