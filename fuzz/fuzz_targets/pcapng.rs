//! pcapng decoder, fed incrementally. See `common/mod.rs` for the input layout and the
//! properties checked.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use podcap_format::pcapng::PcapngDecoder;

fuzz_target!(|data: &[u8]| common::fuzz(data, PcapngDecoder::new));
