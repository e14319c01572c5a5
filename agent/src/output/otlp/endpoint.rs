//! Collector URLs: checked once, at start, so that a typo is an error
//! naming the flag or variable rather than data quietly sent elsewhere
//! (`http::Uri` accepts `:99999` and the HTTP client then falls back to
//! port 80), and never printed with the credentials a URL may carry.
use std::borrow::Cow;

use super::error::SettingsError;

/// `url` if it is an `http://` or `https://` URL with a host and a valid
/// port; `source` (the flag or variable it came from) names it otherwise.
/// Credentials in the URL are an error: the OTLP clients would not send
/// them, so the collector would refuse every batch.
pub fn check_endpoint(source: &str, url: &str) -> Result<String, SettingsError> {
    let bad = |reason: String| SettingsError::Endpoint {
        setting: source.to_owned(),
        url: redact_url(url).into_owned(),
        reason,
    };
    let uri: http::Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| bad(format!("is not a URL ({e})")))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(bad("must start with http:// or https://".into()));
    }
    let Some(authority) = uri.authority() else {
        return Err(bad("has no host".into()));
    };
    if authority.as_str().contains('@') {
        return Err(bad(
            "has credentials in it, which OTLP does not send; put them in a header \
             (OTEL_EXPORTER_OTLP_HEADERS or --otlp-header, e.g. Authorization=Basic ...)"
                .into(),
        ));
    }
    if authority.host().is_empty() {
        return Err(bad("has no host".into()));
    }
    // `http` keeps a port it cannot represent as text only.
    let port = authority
        .as_str()
        .rsplit_once(':')
        .filter(|(_, p)| !p.contains(']'))
        .map(|(_, p)| p);
    if let Some(port) = port
        && !port.parse::<u16>().is_ok_and(|p| p > 0)
    {
        return Err(bad(format!("has port {port:?}, outside 1-65535")));
    }
    Ok(url.to_owned())
}

/// `url` with any `user:password@` replaced by `***@`, for messages.
pub fn redact_url(url: &str) -> Cow<'_, str> {
    let start = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[start..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_len].rfind('@') {
        Some(at) => Cow::Owned(format!("{}***{}", &url[..start], &rest[at..])),
        None => Cow::Borrowed(url),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(url: &str) -> String {
        match check_endpoint("--otlp-endpoint", url) {
            Err(SettingsError::Endpoint {
                setting, reason, ..
            }) => {
                assert_eq!(setting, "--otlp-endpoint");
                reason
            }
            other => panic!("{url}: {other:?}"),
        }
    }

    #[test]
    fn good_urls_pass_unchanged() {
        for url in [
            "http://localhost:4318",
            "https://collector.example:443/otlp/",
            "http://[::1]:4317",
            "http://127.0.0.1",
        ] {
            assert_eq!(check_endpoint("x", url).unwrap(), url);
        }
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        assert!(reason("http://127.0.0.1:99999").contains("port \"99999\""));
        assert!(reason("http://127.0.0.1:0").contains("outside 1-65535"));
        assert!(reason("http://[::1]:70000").contains("outside 1-65535"));
        assert!(reason("ftp://collector:21").contains("http:// or https://"));
        assert!(reason("collector:4317").contains("http:// or https://"));
        assert!(reason("http://").contains("URL") || reason("http://").contains("host"));
        assert!(reason("http://bob:hunter2@collector:4318").contains("credentials"));
    }

    #[test]
    fn credentials_never_reach_the_message() {
        let err = check_endpoint(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://bob:hunter2@c:99999/x",
        )
        .unwrap_err()
        .to_string();
        assert!(!err.contains("hunter2") && !err.contains("bob"), "{err}");
        assert!(err.contains("OTEL_EXPORTER_OTLP_ENDPOINT"), "{err}");
        assert!(err.contains("http://***@c:99999/x"), "{err}");
    }

    #[test]
    fn redaction() {
        assert_eq!(redact_url("http://u:p@h:1/a@b"), "http://***@h:1/a@b");
        assert_eq!(redact_url("https://token@h"), "https://***@h");
        assert_eq!(redact_url("http://h:1/p?q=a@b"), "http://h:1/p?q=a@b");
        assert_eq!(redact_url("u:p@h"), "***@h");
    }
}
