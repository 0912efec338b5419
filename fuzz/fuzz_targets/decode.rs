//! The protocol decoder must turn any frame into a request or a clean error, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(e) = agentvisor_actors::protocol::decode(text, true) {
            // Errors are sentences of bounded size, whatever came in.
            assert!(e.error.error.len() < 1024);
        }
    }
});
