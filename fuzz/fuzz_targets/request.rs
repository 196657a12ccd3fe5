//! Frame reading and request decoding on arbitrary bytes from the network: every input must be
//! decoded or rejected, never panic, and never allocate what a length field claims.
#![no_main]

use bytes::Bytes;
use engine::net::connection::decode_request;
use engine::net::frame::FrameReader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // As a whole frame body...
    let _ = decode_request(Bytes::copy_from_slice(data));
    // ...and as a byte stream cut into length-prefixed frames.
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    rt.block_on(async {
        let mut reader = FrameReader::new(1 << 20);
        let mut input = data;
        while let Ok(true) = reader.fill(&mut input).await {
            while let Ok(Some(frame)) = reader.try_frame() {
                let _ = decode_request(frame);
            }
        }
    });
});
