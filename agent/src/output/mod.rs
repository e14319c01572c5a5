//! What leaves the agent: JSON Lines, the text and JSON report, OTLP, and
//! escaping untrusted text for a terminal; and the HTTPS client that OTLP
//! and the node agent's Kubernetes client share.
pub mod https;
pub mod jsonl;
pub mod otlp;
pub mod report;
pub mod term_escape;
