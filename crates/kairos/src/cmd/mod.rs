//! One module per subcommand.

pub mod preview;
