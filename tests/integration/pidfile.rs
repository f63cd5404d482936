//! SPEC §4 through the binary: check-running and the guardian lock.
