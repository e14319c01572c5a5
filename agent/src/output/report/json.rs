//! The JSON report.

use super::types::Report;

/// The report as JSON, with the field names documented on the types.
pub fn render_json(report: &Report) -> serde_json::Value {
    // Serializing these plain structs cannot fail (no maps with non-string
    // keys, no custom errors); Null only guards against a future mistake.
    serde_json::to_value(report).unwrap_or(serde_json::Value::Null)
}
