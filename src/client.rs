//! Clients of a running guardian, over its Unix socket.

use crate::cli::{Command, Global};
use crate::error::FatalError;

pub fn run(g: &Global, command: Command) -> Result<u8, FatalError> {
    let _ = (g, command);
    Err(FatalError::Message("this command is not built yet".into()))
}
