//! The command line: argument types (`args`), the commands that work alone (`commands`:
//! validate, schema, init, man, completions, check-running), the client of a running guardian
//! (`client`, which only speaks the API), and `doctor`. Nothing on the engine side imports
//! from here; `daemon` gets its `LoadOptions` from `commands`.

mod args;
pub mod client;
pub mod commands;
pub mod doctor;
pub mod explain;
mod logs;
mod reference;
pub mod top;

pub use args::*;

use crate::config::{self, Config, LoadOptions, Loaded};
use crate::error::FatalError;

pub fn load_options(g: &Global) -> LoadOptions {
    LoadOptions {
        files: g.config.clone(),
        state_dir: g.state_dir.clone(),
        log_level: g.log_level.clone(),
        log_format: g.log_format.clone(),
        env: Default::default(),
        not_utf8: Vec::new(),
    }
    .with_process_env()
}

pub fn load(g: &Global) -> Result<Loaded, FatalError> {
    Ok(config::load(&load_options(g))?)
}

fn names(c: &Config) -> Vec<String> {
    c.instances().map(|s| s.name.to_string()).collect()
}

/// The instances a name means (one, or every replica of a declared service).
pub fn find_services(c: &Config, name: &str) -> Result<Vec<config::ServiceSpec>, FatalError> {
    let found = c.resolve(name);
    if found.is_empty() {
        return Err(FatalError::NoSuchService {
            name: name.to_owned(),
            known: names(c),
        });
    }
    Ok(found)
}

/// Exactly one instance: a replicated service must be named by instance.
pub fn find_service(c: &Config, name: &str) -> Result<config::ServiceSpec, FatalError> {
    let mut found = find_services(c, name)?;
    if found.len() > 1 {
        let all: Vec<String> = found.iter().map(|s| s.name.to_string()).collect();
        return Err(FatalError::Message(format!(
            "{name} has {} replicas; name one of them: {}",
            found.len(),
            all.join(", ")
        )));
    }
    Ok(found.remove(0))
}
