//! `[alerts.NAME]`: each sink's target, format, filters and files (SPEC §15).

use std::collections::BTreeSet;

use super::*;
use crate::config::alerts::*;

/// Checks every sink; problems go to `c`, each naming its key.
pub(super) fn sinks(
    c: &mut Check,
    raw: BTreeMap<String, RawAlert>,
    services: &[&str],
) -> BTreeMap<String, AlertSpec> {
    let mut out = BTreeMap::new();
    for (name, a) in raw {
        let key = |k: &str| format!("alerts.{name}.{k}");
        if !valid_name(&name) {
            c.fail(
                format!("alerts.{name}"),
                "a sink's name is lowercase letters, digits, `_` and `-`",
            );
        }
        let target = match (a.webhook, a.exec) {
            (Some(_), Some(_)) => {
                c.fail(
                    format!("alerts.{name}"),
                    "give `webhook` or `exec`, not both: one sink sends one way",
                );
                None
            }
            (None, None) => {
                c.fail(
                    format!("alerts.{name}"),
                    "give `webhook = \"https://…\"` or `exec = [\"program\", …]`",
                );
                None
            }
            (Some(url), None) => match WebhookUrl::parse(&url) {
                Ok(u) => Some(AlertTarget::Webhook(u)),
                Err(e) => {
                    c.fail(key("webhook"), e);
                    None
                }
            },
            (None, Some(argv)) => match exec(&argv) {
                Ok(()) => Some(AlertTarget::Exec(argv)),
                Err(e) => {
                    c.fail(key("exec"), e);
                    None
                }
            },
        };
        let format = match a.format.as_deref() {
            None | Some("json") => AlertFormat::Json,
            Some("slack") => AlertFormat::Slack,
            Some("alertmanager") => AlertFormat::Alertmanager,
            Some(f) => {
                c.fail(
                    key("format"),
                    format!("`{f}` is not a format; use json, slack or alertmanager"),
                );
                AlertFormat::Json
            }
        };
        if format != AlertFormat::Json && matches!(target, Some(AlertTarget::Exec(_))) {
            c.fail(
                key("format"),
                "an exec sink gets the JSON alert on stdin; `format` is for webhooks",
            );
        }
        let events: BTreeSet<AlertEvent> = match a.events {
            None => AlertEvent::ALL
                .into_iter()
                .filter(|e| *e != AlertEvent::Restarted)
                .collect(),
            Some(list) => list
                .iter()
                .filter_map(|e| {
                    let parsed = AlertEvent::parse(e);
                    if parsed.is_none() {
                        let hint = crate::config::suggest::nearest(e, &AlertEvent::NAMES)
                            .map(|n| format!("did you mean `{n}`? "))
                            .unwrap_or_default();
                        c.fail(
                            key("events"),
                            format!(
                                "`{e}` is not an event; {hint}events: {}",
                                AlertEvent::NAMES.join(", ")
                            ),
                        );
                    }
                    parsed
                })
                .collect(),
        };
        let only = a.services.map(|list| {
            for s in &list {
                if !services.contains(&s.as_str()) {
                    let hint = crate::config::suggest::nearest(s, services)
                        .map(|n| format!("; did you mean `{n}`?"))
                        .unwrap_or_default();
                    c.fail(key("services"), format!("there is no service `{s}`{hint}"));
                }
            }
            list.into_iter().collect()
        });
        let secret_file = a.secret_file.map(PathBuf::from);
        if let Some(f) = &secret_file
            && let Err(e) = crate::config::host::read_secret_file(f, "secret file")
        {
            c.fail(key("secret_file"), e);
        }
        let ca_file = a.ca_file.map(PathBuf::from);
        if let Some(f) = &ca_file {
            if !matches!(&target, Some(AlertTarget::Webhook(u)) if u.is_https()) {
                c.fail(key("ca_file"), "`ca_file` is for an https:// webhook");
            } else if let Err(e) = crate::config::host::ca_roots(Some(f)) {
                c.fail(key("ca_file"), e);
            }
        }
        let repeat_after = a.repeat_after.map_or(Duration::from_secs(600), |s| s.0);
        let timeout = a.timeout.map_or(Duration::from_secs(5), |s| s.0);
        if timeout.is_zero() {
            c.fail(key("timeout"), "must be greater than zero");
        }
        if let Some(target) = target {
            out.insert(
                name,
                AlertSpec {
                    target,
                    format,
                    events,
                    services: only,
                    secret_file,
                    ca_file,
                    repeat_after,
                    timeout,
                },
            );
        }
    }
    out
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// The program must exist and be executable now (a typo surfaces at validate, not at the
/// first alert).
fn exec(argv: &[String]) -> Result<(), String> {
    let Some(program) = argv.first().filter(|p| !p.trim().is_empty()) else {
        return Err("the command is empty; write [\"program\", \"arg\", …]".into());
    };
    let found = if program.contains('/') {
        std::fs::metadata(program).is_ok_and(|m| {
            m.is_file() && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
        })
    } else {
        crate::config::host::which_on_path(program).is_some()
    };
    if found {
        Ok(())
    } else {
        Err(format!(
            "`{program}` is not an executable program{}\n  1. check the path: ls -l {program}",
            if program.contains('/') {
                ""
            } else {
                " on PATH"
            }
        ))
    }
}
