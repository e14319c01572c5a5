//! Causal analysis over the model: which thread, code path and request a
//! wait is really blamed on. Empty for now; the causal-analysis work fills
//! it, reading only `model`.
