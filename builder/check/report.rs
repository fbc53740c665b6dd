//! Reports of a check run.
