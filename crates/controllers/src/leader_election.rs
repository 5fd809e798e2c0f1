//! Leader election over a coordination.k8s.io/v1 Lease, as client-go's leaderelection does,
//! so that several servers can run the scheduler and the controllers side by side safely.
//!
//! PLACEHOLDER seam: the owner replaces this body.
