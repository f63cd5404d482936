//! RawConfig → Config: fills defaults and checks every rule, collecting all problems at once.
//! Pure: no IO but the alert sinks' programs and secret files; the caller passes where each key
//! came from and the default state dir. One file per concern:
//! - `guardian.rs`: the `[guardian]` table; `api.rs`: its `guardian.api`;
//! - `service.rs`: one service's own keys (command, ports, sockets, env, identity, lifecycle);
//! - `recovery.rs`: a service's backoff, health checks and recovery ladder;
//! - `stack.rs`: the rules between services (addresses, PID files, the dependency graph);
//! - `alerts.rs`: the `[alerts.NAME]` sinks.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::raw::*;
use super::*;

mod alerts;
mod api;
mod guardian;
mod recovery;
mod service;
mod stack;
#[cfg(test)]
mod tests;

/// The most instances one service may have.
pub const MAX_REPLICAS: u32 = 1000;

/// A health check timeout left unset is `min(this, interval)` (SPEC §11).
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

pub use super::report::{ValidationError, ValidationErrors};

/// What validation needs from outside: the default state dir and where keys came from.
pub struct Context<'a> {
    pub default_state_dir: PathBuf,
    pub origin: &'a dyn Fn(&str) -> Option<String>,
}

pub(super) struct Check<'a> {
    errors: Vec<ValidationError>,
    ctx: &'a Context<'a>,
}

impl Check<'_> {
    pub(super) fn fail(&mut self, key: impl Into<String>, message: impl Into<String>) {
        let key = key.into();
        let origin = (self.ctx.origin)(&key);
        self.errors.push(ValidationError {
            key,
            origin,
            message: message.into(),
            at: None,
        });
    }

    fn nonzero(&mut self, key: String, d: Duration) -> Duration {
        if d.is_zero() {
            self.fail(key, "must be greater than zero");
        }
        d
    }

    fn at_least_one(&mut self, key: String, n: u32) -> u32 {
        if n == 0 {
            self.fail(key, "must be at least 1");
        }
        n
    }

    fn template(&mut self, key: String, template: &str, vars: &Vars) {
        if let Err(e) = expand(template, vars) {
            self.fail(key, e);
        }
    }

    fn signal(&mut self, key: String, name: &str) -> Signal {
        let upper = name.trim().to_ascii_uppercase();
        let full = if upper.starts_with("SIG") {
            upper
        } else {
            format!("SIG{upper}")
        };
        Signal::from_str(&full).unwrap_or_else(|_| {
            self.fail(key, format!("`{name}` is not a signal; use a name such as SIGTERM, SIGINT, SIGQUIT or SIGUSR1"));
            Signal::SIGTERM
        })
    }
}

/// The defaults SPEC §2 names, for `validate --explain` and `init`.
pub const DEFAULT_HOST: &str = "127.0.0.1";

pub fn validate(raw: RawConfig, ctx: &Context<'_>) -> Result<Config, ValidationErrors> {
    let mut c = Check {
        errors: Vec::new(),
        ctx,
    };
    let guardian = guardian::table(&mut c, raw.guardian.unwrap_or_default());
    let raw_services = raw.services.unwrap_or_default();
    if raw_services.is_empty() {
        c.fail("services", "no service is defined: add a `[services.NAME]` table with a `command` (run `guardian init` for a commented example)");
    }

    let mut services = BTreeMap::new();
    for (name, rs) in raw_services {
        let name = match ServiceName::new(&name) {
            Ok(n) => n,
            Err(e) => {
                c.fail(format!("services.{name}"), e);
                continue;
            }
        };
        if let Some(spec) = service::service(&mut c, name.clone(), rs, &guardian.state_dir) {
            services.insert(name, spec);
        }
    }
    stack::cross_service(&mut c, &services);
    let names: Vec<&str> = services.keys().map(|n| n.as_str()).collect();
    let alerts = alerts::sinks(&mut c, raw.alerts.unwrap_or_default(), &names);

    if !c.errors.is_empty() {
        return Err(ValidationErrors(c.errors));
    }
    Ok(Config {
        guardian,
        services,
        alerts,
    })
}
