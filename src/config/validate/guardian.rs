//! The `[guardian]` table: the state dir, guardian's own files and logging.

use super::*;

/// The `[guardian]` table; `state_dir` falls back to the context's default.
pub(super) fn table(c: &mut Check, g: RawGuardian) -> GuardianSpec {
    let ctx = c.ctx;

    let state_dir = match &g.state_dir {
        Some(s) if s.trim().is_empty() => {
            c.fail("guardian.state_dir", "must not be empty");
            ctx.default_state_dir.clone()
        }
        Some(s) => PathBuf::from(s),
        None => ctx.default_state_dir.clone(),
    };
    let sd = state_dir.display().to_string();
    let guardian_vars = Vars {
        state_dir: sd.clone(),
        ..Vars::default()
    };
    let guardian_path =
        |c: &mut Check, key: &str, value: &Option<String>, default: &str| -> PathBuf {
            let template = value.as_deref().unwrap_or(default);
            match expand(template, &guardian_vars) {
                Ok(p) => PathBuf::from(p),
                Err(_)
                    if template.contains("{name}")
                        || template.contains("{port}")
                        || template.contains("{host}") =>
                {
                    c.fail(key, "only `{state_dir}` can be used here");
                    PathBuf::new()
                }
                Err(e) => {
                    c.fail(key, e);
                    PathBuf::new()
                }
            }
        };
    let metrics_file = guardian_path(
        c,
        "guardian.metrics_file",
        &g.metrics_file,
        "{state_dir}/metrics.json",
    );
    let events_file = guardian_path(
        c,
        "guardian.events_file",
        &g.events_file,
        "{state_dir}/events.jsonl",
    );
    let events_max_size_mb = g.events_max_size_mb.unwrap_or(10);
    if events_max_size_mb == 0 {
        c.fail("guardian.events_max_size_mb", "must be at least 1");
    }

    let log_level = match g.log_level.as_deref() {
        None => LogLevel::Info,
        Some(s) => LogLevel::parse(s).unwrap_or_else(|| {
            c.fail(
                "guardian.log_level",
                format!(
                    "`{s}` is not a log level; use one of {}",
                    LogLevel::NAMES.join(", ")
                ),
            );
            LogLevel::Info
        }),
    };
    let log_format = match g.log_format.as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(s) => {
            c.fail(
                "guardian.log_format",
                format!("`{s}` is not a log format; use `text` or `json`"),
            );
            LogFormat::Text
        }
    };

    let api = g.api.map(|a| super::api::api(c, a));
    GuardianSpec {
        state_dir,
        log_level,
        log_format,
        watch_config: g.watch_config.unwrap_or(true),
        stop_services_on_exit: g.stop_services_on_exit.unwrap_or(true),
        metrics_file,
        events_file,
        events_max_size_mb,
        events_backup_count: g.events_backup_count.unwrap_or(3),
        echo: g.echo.unwrap_or(true),
        api,
    }
}
