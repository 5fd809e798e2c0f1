//! A plugin's verdict. Not a Rust error: "this node does not fit" is the normal answer.

/// Kubernetes' framework status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Success,
    /// The pod does not fit now; preempting pods on the node might help.
    Unschedulable,
    /// Nothing done to this node's pods would make the pod fit (wrong labels, taints).
    UnschedulableAndUnresolvable,
    /// The plugin failed; the pod is retried with back-off.
    Error,
    /// The plugin does not apply to this pod (pre-filter found nothing to check).
    Skip,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub code: Code,
    /// Kubernetes' wording, counted per node in "0/3 nodes are available: …".
    pub reasons: Vec<String>,
}

impl Status {
    pub fn success() -> Self {
        Status {
            code: Code::Success,
            reasons: Vec::new(),
        }
    }

    pub fn skip() -> Self {
        Status {
            code: Code::Skip,
            reasons: Vec::new(),
        }
    }

    pub fn unschedulable(reason: impl Into<String>) -> Self {
        Status {
            code: Code::Unschedulable,
            reasons: vec![reason.into()],
        }
    }

    pub fn unresolvable(reason: impl Into<String>) -> Self {
        Status {
            code: Code::UnschedulableAndUnresolvable,
            reasons: vec![reason.into()],
        }
    }

    pub fn error(reason: impl Into<String>) -> Self {
        Status {
            code: Code::Error,
            reasons: vec![reason.into()],
        }
    }

    pub fn is_success(&self) -> bool {
        matches!(self.code, Code::Success | Code::Skip)
    }
}
