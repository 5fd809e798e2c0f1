//! Authentication: client certificates signed by the cluster CA and bearer tokens.

/// The authenticated user, placed in each request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub groups: Vec<String>,
}
