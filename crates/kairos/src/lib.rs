//! The kairos node as a library: [`node::Node::start`] runs what `kairos scheduler`,
//! `kairos sidecar` and `kairos run` run, on listeners the caller bound, and [`ops`] holds
//! the Prometheus exporter and the health routes.
//!
//! It sits on top of every other kairos crate and is what the `kairos` binary (flags, logging,
//! signals, the app of `kairos run`) is a thin shell over; tests can start a node in process.
//! Nothing below it may import it: the exporter and the HTTP ops routes stay out of the
//! library crates.

pub mod node;
pub mod ops;
