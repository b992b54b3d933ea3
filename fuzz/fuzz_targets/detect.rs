//! Format-detecting `CaptureDecoder`, fed incrementally, then `decode_eof` on what is left.
//! See `common/mod.rs` for the input layout and the properties checked.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use podcap_format::CaptureDecoder;

fuzz_target!(|data: &[u8]| common::fuzz(data, CaptureDecoder::new));
