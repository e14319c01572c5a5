//! `key1=value1,key2=value2` lists, values percent-decoded: the format of
//! `OTEL_EXPORTER_OTLP_HEADERS` and `OTEL_RESOURCE_ATTRIBUTES` (the SDK
//! configuration specification, after W3C Baggage). Errors name the
//! variable and the key, never a value: header values are often secrets.
use super::error::SettingsError;

/// The pairs of `list`, read from the variable `var`.
pub fn parse_list(var: &str, list: &str) -> Result<Vec<(String, String)>, SettingsError> {
    list.split(',')
        .map(str::trim)
        .enumerate()
        .filter(|(_, item)| !item.is_empty())
        .map(|(i, item)| {
            let bad = |reason: String| SettingsError::List {
                var: var.to_owned(),
                reason,
            };
            let (k, v) = item
                .split_once('=')
                .ok_or_else(|| bad(format!("entry {} is not key=value", i + 1)))?;
            let k = k.trim();
            if k.is_empty() {
                return Err(bad(format!("entry {} has an empty key", i + 1)));
            }
            let v = percent_decode(v.trim()).map_err(|what| {
                bad(format!(
                    "the value of {:?} {what}",
                    crate::output::term_escape::escape(k)
                ))
            })?;
            Ok((k.to_owned(), v))
        })
        .collect()
}

/// Strict decoding: a `%` not followed by two hex digits, or bytes that
/// are not UTF-8 once decoded, are errors (what is wrong, for a message).
pub fn percent_decode(s: &str) -> Result<String, &'static str> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b != b'%' {
            out.push(b);
            i += 1;
            continue;
        }
        let hex = |at: usize| bytes.get(at).and_then(|&d| (d as char).to_digit(16));
        let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2)) else {
            return Err("has a % not followed by two hex digits");
        };
        // Both digits are below 16, so this fits a byte.
        out.push((hi * 16 + lo) as u8);
        i += 3;
    }
    String::from_utf8(out).map_err(|_| "is not UTF-8 once percent-decoded")
}

#[cfg(test)]
mod tests {
    use super::*;

    const VAR: &str = "OTEL_RESOURCE_ATTRIBUTES";

    fn reason(list: &str) -> String {
        match parse_list(VAR, list) {
            Err(SettingsError::List { var, reason }) => {
                assert_eq!(var, VAR);
                reason
            }
            other => panic!("{list}: {other:?}"),
        }
    }

    #[test]
    fn lists_decode() {
        assert_eq!(
            parse_list(VAR, " a=x%20y , ,b = %E2%9C%93,c=").unwrap(),
            [
                ("a".into(), "x y".into()),
                ("b".into(), "✓".into()),
                ("c".into(), String::new())
            ]
        );
        assert_eq!(parse_list(VAR, "").unwrap(), []);
    }

    #[test]
    fn bad_lists_name_the_entry_not_the_value() {
        assert_eq!(reason("=,x"), "entry 1 has an empty key");
        assert_eq!(reason("a=1,secret"), "entry 2 is not key=value");
        let r = reason("api-key=abc%zzsecret");
        assert!(r.contains("\"api-key\"") && r.contains("hex"), "{r}");
        assert!(!r.contains("secret"), "{r}");
        assert!(reason("k=%4").contains("hex"));
        assert!(reason("k=%ff").contains("UTF-8"));
        let shown = SettingsError::List {
            var: VAR.into(),
            reason: reason("=,x"),
        }
        .to_string();
        assert!(shown.starts_with(VAR), "{shown}");
    }
}
