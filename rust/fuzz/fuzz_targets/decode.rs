//! libFuzzer target: `format::decode`, `format::body_len` and `format::unframe_batch` on
//! arbitrary bytes never panic, errors point inside the input, and whatever decodes re-encodes
//! to exactly the input (the encoding is canonical). See `../Cargo.toml` for how to run it.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tongbao_core::format;

fuzz_target!(|data: &[u8]| {
    match format::decode(data) {
        Ok(tx) => {
            assert_eq!(
                tx.encode(),
                data,
                "decoded {tx:?} does not re-encode to the input"
            );
            assert_eq!(tx.id, format::tx_id_of_body(&tx.encode_body()));
            assert_eq!(format::body_len(data).ok(), Some(tx.encode_body().len()));
        }
        Err(e) => assert!(e.offset <= data.len(), "{e} ({} bytes)", data.len()),
    }
    if let Ok(n) = format::body_len(data) {
        assert!(n <= data.len());
    }
    match format::unframe_batch(data) {
        Ok(parts) => {
            assert_eq!(format::frame_batch(&parts), data);
            for part in parts {
                if let Ok(tx) = format::decode(part) {
                    assert_eq!(tx.encode(), part);
                }
            }
        }
        Err(e) => assert!(e.offset <= data.len(), "{e} ({} bytes)", data.len()),
    }
});
