//! The config loader (`proxy::GatewayConfig::parse`): any text gives a config or an error, never
//! a panic (or a hang: scripts/fuzz.sh runs with a per-input timeout). An error names the file
//! first, as every config error must, and the same text is always refused the same way; a config
//! has the invariants its type promises (backends never empty, named uniquely with visible
//! ASCII, every backend in exactly one tier).
#![no_main]

use libfuzzer_sys::fuzz_target;
use proxy::GatewayConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match GatewayConfig::parse("gateway.yaml", text) {
        Ok(config) => {
            assert!(!config.backends.is_empty(), "a config without backends");
            let mut tiered: Vec<usize> = config.tiers().concat();
            tiered.sort_unstable();
            assert_eq!(tiered, (0..config.backends.len()).collect::<Vec<_>>());
            let mut names: Vec<&str> = config.backends.iter().map(|b| &*b.name).collect();
            assert!(
                names
                    .iter()
                    .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_graphic()))
            );
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), config.backends.len(), "backend names repeat");
        }
        Err(error) => {
            let message = error.to_string();
            assert!(
                message.starts_with("gateway.yaml: "),
                "an error that does not name the file: {message}"
            );
            let again = GatewayConfig::parse("gateway.yaml", text).map_err(|e| e.to_string());
            assert_eq!(again.err(), Some(message), "refused differently twice");
        }
    }
});
