//! Simulated ("hollow") nodes for scale tests: Nodes and Leases without containers (issue 5).
