//! What leaves the agent: JSON Lines, the text and JSON report, OTLP, and
//! escaping untrusted text for a terminal.
pub mod jsonl;
pub mod otlp;
pub mod report;
pub mod term_escape;
