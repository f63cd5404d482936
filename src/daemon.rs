//! `guardian run`: wires the tasks together and owns the ordered shutdown.

use crate::cli::Global;
use crate::error::FatalError;

pub fn run(g: &Global) -> Result<u8, FatalError> {
    let _ = g;
    Err(FatalError::Message("this command is not built yet".into()))
}
