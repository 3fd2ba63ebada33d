//! The JSON scanner (`proxy::scan`), the usage reader (`proxy::usage::find_usage`) and the SSE
//! checks built on them, against `serde_json`.
//!
//! Any bytes, as they are and as the data of an SSE event, go through every reader, which must
//! not panic. Where `serde_json` reads the bytes as a document, every fact the readers report
//! must be the one `serde_json` sees, in an SSE framing picked from the input as well: the checks
//! of the proptest differential tests (`proxy/src/scan/differential.rs`, `check_text`), which
//! there see generated documents and here whatever the fuzzer makes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proxy::scan::differential::{check_text, read_everything};

fuzz_target!(|data: &[u8]| {
    read_everything(data);
    let mut event = b"data: ".to_vec();
    event.extend_from_slice(data);
    event.extend_from_slice(b"\n\n");
    read_everything(&event);
    if let Ok(text) = std::str::from_utf8(data) {
        let frame_seed = data
            .iter()
            .fold(0u64, |h, &b| h.rotate_left(5) ^ u64::from(b));
        if let Err(failure) = check_text(text, frame_seed) {
            panic!("{failure}");
        }
    }
});
