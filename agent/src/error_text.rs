//! Errors as one line of text for logs and messages: connection errors
//! nest deeply, and some libraries repeat their cause in their own message.

/// An error and its causes on one line.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    causes(e.to_string(), e.source())
}

/// `first`, then each cause whose text is not already there.
pub fn causes(first: String, mut cause: Option<&(dyn std::error::Error + 'static)>) -> String {
    let mut parts = vec![first];
    while let Some(c) = cause {
        let s = c.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cause = c.source();
    }
    parts.retain(|p| !p.is_empty());
    parts.join(": ")
}
