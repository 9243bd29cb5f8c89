//! Failure-policy arithmetic (spec §7.5). PLACEHOLDER: being written.
