//! Produce payloads: splitting and validating record batches on arbitrary bytes.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = engine::log::batch::split_batches(&Bytes::copy_from_slice(data));
});
