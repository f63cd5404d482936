//! The listening sockets guardian holds for its services (SPEC §13): bound before any service
//! starts and on a reload before the supervisor sees the new config, released when no service
//! has them any more.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::Config;
use crate::process::unix::UnixSpawner;

/// The listening sockets held for the services (SPEC §13), by address; the spawning thread
/// keeps the descriptors.
pub(super) struct HeldSockets {
    spawner: Arc<UnixSpawner>,
    /// Address → the service and socket name it was bound for (for errors).
    held: BTreeMap<String, String>,
}

impl HeldSockets {
    pub(super) fn new(spawner: Arc<UnixSpawner>) -> HeldSockets {
        HeldSockets {
            spawner,
            held: BTreeMap::new(),
        }
    }

    /// Binds and holds every socket of `config` that is not held yet. On an error, none of
    /// them stays held, and the error names the key and the address. Returns the addresses
    /// it bound.
    pub(super) fn bind_new(&mut self, config: &Config) -> Result<Vec<String>, String> {
        let mut bound = Vec::new();
        for spec in config.services.values() {
            for (sname, listen) in &spec.sockets {
                let address = listen.to_string();
                if self.held.contains_key(&address) {
                    continue;
                }
                let key = format!("services.{}.sockets.{sname}", spec.name);
                let held = crate::process::sockets::bind(listen, Some((spec.uid, spec.gid)))
                    .and_then(|fd| {
                        self.spawner
                            .hold(&address, &fd)
                            .map_err(|e| format!("cannot hold {address}: {e}"))
                    });
                if let Err(e) = held {
                    self.release(&bound);
                    return Err(format!("`{key}`: {e}"));
                }
                self.held.insert(address.clone(), key);
                bound.push(address);
            }
        }
        Ok(bound)
    }

    /// Closes the held sockets that `config` no longer has.
    pub(super) fn keep_only(&mut self, config: &Config) {
        let wanted: std::collections::BTreeSet<String> = config
            .services
            .values()
            .flat_map(|s| s.sockets.values().map(ToString::to_string))
            .collect();
        let gone: Vec<String> = self
            .held
            .keys()
            .filter(|a| !wanted.contains(*a))
            .cloned()
            .collect();
        self.release(&gone);
    }

    pub(super) fn release(&mut self, addresses: &[String]) {
        for a in addresses {
            self.held.remove(a);
            self.spawner.release(a);
            if let Some(path) = a.strip_prefix("unix://") {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}
