//! This node's name, which the watcher asks the API server for the pods of.

/// The variable the DaemonSet sets to its node's name (downward API).
pub const NODE_NAME_ENV: &str = "NODE_NAME";

/// This node's name: `given` (the agent's own setting), else `$NODE_NAME`
/// (the usual downward-API variable); None if neither is set.
pub fn node_name(given: Option<String>) -> Option<String> {
    given
        .or_else(|| std::env::var(NODE_NAME_ENV).ok())
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_given_node_name_comes_first() {
        assert_eq!(
            node_name(Some(" node-1\n".to_owned())).as_deref(),
            Some("node-1")
        );
        if std::env::var_os(NODE_NAME_ENV).is_none() {
            assert_eq!(node_name(None), None);
            assert_eq!(node_name(Some(" ".to_owned())), None);
        }
    }
}
