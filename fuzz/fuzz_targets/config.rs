//! Any text as each of the settings spanlet parses: the `spanlet run
//! --config` TOML file, the OTLP variables' key=value lists, endpoint URLs,
//! and the whole OTLP settings resolution. The first byte picks the parser,
//! so one corpus covers them all. Errors are fine; panics are not, nor an
//! accepted endpoint with credentials in it.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use spanlet::{
    output::otlp::{Overrides, Settings, endpoint, kv_list},
    node::config::FileConfig,
};

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    match which % 4 {
        0 => {
            let _ = FileConfig::parse(text);
        }
        1 => {
            let _ = kv_list::parse_list("OTEL_RESOURCE_ATTRIBUTES", text);
        }
        2 => {
            // An accepted URL carries no credentials to leak later.
            if let Ok(url) = endpoint::check_endpoint("--otlp-endpoint", text) {
                assert_eq!(endpoint::redact_url(&url), url, "credentials accepted");
            }
        }
        _ => {
            // Lines of NAME=VALUE as the OTEL_* environment.
            let env: HashMap<String, String> = text
                .lines()
                .filter_map(|l| l.split_once('='))
                // Not the TLS file paths: reading /dev/zero is no finding.
                .filter(|(k, _)| !k.contains("CERTIFICATE") && !k.contains("KEY"))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            let _ = Settings::resolve(&env, &Overrides::default());
        }
    }
});
