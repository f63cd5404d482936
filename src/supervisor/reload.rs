//! Reload: a new config applied by its diff, touching only what changed.

use super::*;

impl<S: Spawner> Supervisor<S> {
    /// Gives a service its spec from a reloaded config; what else happens depends on what
    /// changed.
    pub(super) fn adopt_spec(&mut self, new: &Config, name: &str) -> &mut Service {
        let svc = self
            .services
            .get_mut(name)
            .expect("UNWRAP: diffed against this config");
        if let Some(spec) = new.services.values().find(|s| s.name.as_str() == name) {
            svc.spec = spec.clone();
        }
        svc
    }

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
        for name in &d.removed {
            let name = name.as_str();
            if let Some(svc) = self.services.get_mut(name) {
                svc.remove_after_stop = true;
                svc.start_after_stop = false;
                self.stop(name, "reload", None);
            }
        }
        for (name, keys) in &d.restarted {
            let name = name.as_str();
            self.adopt_spec(&new, name);
            self.record(
                Event::new(name, "reload", "reload", true)
                    .detail(format!("restarted: {} changed", keys.join(", "))),
            );
            let svc = self
                .services
                .get_mut(name)
                .expect("UNWRAP: diffed against this config");
            if matches!(
                svc.state,
                State::Running | State::Starting | State::Stopping
            ) {
                svc.start_after_stop = true;
                self.stop(name, "reload", None);
            }
        }
        for (name, keys) in &d.updated {
            let name = name.as_str();
            let svc = self.adopt_spec(&new, name);
            let rewatch = keys.contains(&"health") && svc.state == State::Running;
            if rewatch {
                svc.health_token.cancel();
            }
            self.record(
                Event::new(name, "reload", "reload", true)
                    .detail(format!("policies updated in place: {}", keys.join(", "))),
            );
            if rewatch {
                self.monitor_health(name);
            }
        }
        let g = &new.guardian;
        self.events
            .configure(&g.events_file, g.events_max_bytes(), g.events_backup_count);
        self.config = new;
        for name in &d.added {
            let spec = self.config.services[name].clone();
            let autostart = spec.autostart;
            self.services.insert(name.to_string(), Service::new(spec));
            self.record(Event::new(name.as_str(), "reload", "reload", true).detail("added"));
            if autostart {
                self.adopt_or_start(name.as_str());
            }
        }
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
}
