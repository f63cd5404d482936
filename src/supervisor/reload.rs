//! Reload: a new config applied by its diff, touching only what changed. The diff is between
//! declared services; replicas are matched by instance name, so a change of `replicas`
//! starts or stops only the instances added or removed.

use super::*;

impl<S: Spawner> Supervisor<S> {
    /// Applies a reloaded config: only what changed is touched. An invalid config (or a
    /// refused change) is counted and leaves everything as it was.
    pub(super) fn reload(&mut self, loaded: Result<Config, String>) -> Result<String, String> {
        let refuse = |sup: &mut Self, e: String| {
            sup.reloads_failed += 1;
            sup.last_reload_error = Some(e.clone());
            sup.record(Event::new("guardian", "reload", "reload", false).error(e.clone()));
            Err(e)
        };
        let new = match loaded {
            Ok(c) => c,
            Err(e) => return refuse(self, e),
        };
        let d = crate::config::diff::diff(&self.config, &new);
        if let Some(why) = d.refused.clone() {
            return refuse(self, why);
        }
        let mut fresh: BTreeMap<String, ServiceSpec> =
            new.instances().map(|s| (s.name.to_string(), s)).collect();
        let removed: Vec<String> = self
            .services
            .keys()
            .filter(|n| !fresh.contains_key(*n))
            .cloned()
            .collect();
        for name in &removed {
            let svc = self.services.get_mut(name).expect("UNWRAP: listed above");
            svc.remove_after_stop = true;
            svc.start_after_stop = false;
        }
        self.stop_in_order(removed, "reload");
        for (group, keys) in &d.restarted {
            let what = format!("restarted: {} changed", keys.join(", "));
            for name in self.take_specs(group.as_str(), &fresh, what) {
                // start-first: the new spec's instance first, the old one drains (SPEC §13).
                if self.start_first(&name, &mut None) {
                    continue;
                }
                let svc = self.services.get_mut(&name).expect("UNWRAP: a member");
                if matches!(
                    svc.state,
                    State::Running | State::Starting | State::Stopping
                ) {
                    svc.start_after_stop = true;
                    self.stop(&name, "reload", None);
                }
            }
        }
        for (group, keys) in &d.updated {
            let what = format!("policies updated in place: {}", keys.join(", "));
            for name in self.take_specs(group.as_str(), &fresh, what) {
                let svc = self.services.get_mut(&name).expect("UNWRAP: a member");
                if keys.contains(&"health") && svc.state == State::Running {
                    svc.health_token.cancel();
                    self.monitor_health(&name);
                }
            }
        }
        let g = &new.guardian;
        self.events
            .configure(&g.events_file, g.events_max_bytes(), g.events_backup_count);
        self.config = new;
        fresh.retain(|n, _| !self.services.contains_key(n));
        // Added services (replicas scaled up) start in one batch.
        self.batched(|sup| {
            for (name, spec) in fresh {
                let autostart = spec.autostart;
                sup.services.insert(name.clone(), Service::new(spec));
                sup.record(Event::new(&name, "reload", "reload", true).detail("added"));
                if autostart {
                    sup.adopt_or_start(&name);
                }
            }
        });
        self.generation += 1;
        self.reloads_ok += 1;
        self.last_reload_error = None;
        let text = d.to_string();
        self.record(
            Event::new("guardian", "reload", "reload", true).detail(format!(
                "generation {}: {}",
                self.generation,
                text.trim_end().replace('\n', "; ")
            )),
        );
        Ok(format!("config generation {}\n{text}", self.generation))
    }

    /// Records the reload of `group` and gives each of its instances that stays its new spec;
    /// the names of those instances.
    fn take_specs(
        &mut self,
        group: &str,
        fresh: &BTreeMap<String, ServiceSpec>,
        what: String,
    ) -> Vec<String> {
        self.record(Event::new(group, "reload", "reload", true).detail(what));
        let names: Vec<String> = self
            .members(group)
            .into_iter()
            .filter(|n| fresh.contains_key(n))
            .collect();
        for name in &names {
            let svc = self.services.get_mut(name).expect("UNWRAP: a member");
            svc.spec = fresh[name].clone();
        }
        names
    }
}
