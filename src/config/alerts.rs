//! `[alerts.NAME]` (SPEC §15): where alerts go, which ones, how often. The checks of each
//! sink's keys; delivery lives in `crate::alerts`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Serialize, Serializer};

use super::raw::RawAlert;
use super::validate::Check;

/// What an alert is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertEvent {
    Failed,
    BreakerOpen,
    BreakerClosed,
    Unhealthy,
    Recovered,
    Watchdog,
    Restarted,
    ReloadRefused,
    GuardianStarted,
    GuardianStopping,
    /// `guardian alert test NAME`: always passes the filters.
    Test,
}

impl AlertEvent {
    /// Every name a config may use, in SPEC order.
    pub const NAMES: [&str; 10] = [
        "failed",
        "breaker_open",
        "breaker_closed",
        "unhealthy",
        "recovered",
        "watchdog",
        "restarted",
        "reload_refused",
        "guardian_started",
        "guardian_stopping",
    ];
    const ALL: [AlertEvent; 10] = [
        Self::Failed,
        Self::BreakerOpen,
        Self::BreakerClosed,
        Self::Unhealthy,
        Self::Recovered,
        Self::Watchdog,
        Self::Restarted,
        Self::ReloadRefused,
        Self::GuardianStarted,
        Self::GuardianStopping,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Test => "test",
            e => Self::NAMES[Self::ALL.iter().position(|x| *x == e).unwrap_or(0)],
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::NAMES
            .iter()
            .position(|n| *n == s)
            .map(|i| Self::ALL[i])
    }

    /// A problem that `recovered` later ends (Alertmanager resolves it then).
    pub fn is_problem(self) -> bool {
        matches!(
            self,
            Self::Failed | Self::BreakerOpen | Self::Unhealthy | Self::Watchdog
        )
    }
}

/// The body a webhook gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertFormat {
    #[default]
    Json,
    Slack,
    Alertmanager,
}

/// A webhook's address. The URL keeps its `user:pass@` for the Authorization header, but
/// shows (Debug, Display, serde) without it.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookUrl(pub hyper::Uri);

impl WebhookUrl {
    /// `HOST[:PORT]` of the URL, without credentials.
    pub fn host_port(&self) -> &str {
        self.0
            .authority()
            .map_or("", |a| a.as_str().rsplit('@').next().unwrap_or(""))
    }

    /// The URL with any credentials replaced by `***`.
    pub fn shown(&self) -> String {
        let u = &self.0;
        if u.authority().is_none() {
            return u.to_string();
        }
        let host = self.host_port();
        let creds = if self.credentials().is_some() {
            "***@"
        } else {
            ""
        };
        let path = u.path_and_query().map_or("/", |p| p.as_str());
        format!("{}://{creds}{host}{path}", u.scheme_str().unwrap_or("http"))
    }

    /// `user:pass` from the URL, if it has them.
    pub fn credentials(&self) -> Option<&str> {
        let auth = self.0.authority()?.as_str();
        auth.rsplit_once('@').map(|(c, _)| c)
    }

    pub fn is_https(&self) -> bool {
        self.0.scheme_str() == Some("https")
    }
}

impl std::fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown())
    }
}

impl std::fmt::Display for WebhookUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown())
    }
}

impl Serialize for WebhookUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.shown())
    }
}

/// Where one sink sends.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertTarget {
    Webhook(WebhookUrl),
    Exec(Vec<String>),
}

/// One `[alerts.NAME]`, checked.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AlertSpec {
    #[serde(flatten)]
    pub target: AlertTarget,
    pub format: AlertFormat,
    pub events: BTreeSet<AlertEvent>,
    /// `None`: every service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub services: Option<BTreeSet<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    #[serde(serialize_with = "super::human")]
    pub repeat_after: Duration,
    #[serde(serialize_with = "super::human")]
    pub timeout: Duration,
}

impl AlertSpec {
    /// Whether this sink wants `event` about `service` (`None`: guardian itself).
    pub fn wants(&self, event: AlertEvent, service: Option<&str>) -> bool {
        if event == AlertEvent::Test {
            return true;
        }
        self.events.contains(&event)
            && match (&self.services, service) {
                (Some(only), Some(s)) => only.contains(s) || only.iter().any(|o| replica_of(s, o)),
                _ => true,
            }
    }
}

/// `api.2` is a replica of `api`.
fn replica_of(instance: &str, service: &str) -> bool {
    instance
        .strip_prefix(service)
        .and_then(|r| r.strip_prefix('.'))
        .is_some_and(|n| n.parse::<u32>().is_ok())
}

/// Checks every sink; problems go to `c`, each naming its key.
pub(super) fn validate(
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
            (Some(url), None) => match webhook(&url) {
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
                        let hint = super::suggest::nearest(e, &AlertEvent::NAMES)
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
                    let hint = super::suggest::nearest(s, services)
                        .map(|n| format!("; did you mean `{n}`?"))
                        .unwrap_or_default();
                    c.fail(key("services"), format!("there is no service `{s}`{hint}"));
                }
            }
            list.into_iter().collect()
        });
        let secret_file = a.secret_file.map(PathBuf::from);
        if let Some(f) = &secret_file
            && let Err(e) = super::host::read_secret_file(f, "secret file")
        {
            c.fail(key("secret_file"), e);
        }
        let ca_file = a.ca_file.map(PathBuf::from);
        if let Some(f) = &ca_file {
            if !matches!(&target, Some(AlertTarget::Webhook(u)) if u.is_https()) {
                c.fail(key("ca_file"), "`ca_file` is for an https:// webhook");
            } else if let Err(e) = crate::alerts::roots(Some(f)) {
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

/// An http:// or https:// URL with a host. The error never repeats credentials.
fn webhook(text: &str) -> Result<WebhookUrl, String> {
    let uri: hyper::Uri = text.parse().map_err(|e| {
        format!("not a URL ({e}); write it as http://HOST:PORT/PATH or https://HOST/PATH")
    })?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => {
            return Err(format!(
                "`{other}://` is not supported: a webhook is http:// or https://"
            ));
        }
        None => return Err("no scheme: write http://… or https://…".into()),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("no host: write http://HOST:PORT/PATH".into());
    }
    Ok(WebhookUrl(uri))
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
        crate::export::which_on_path(program).is_some()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_urls_show_without_credentials() {
        let u = webhook("https://ops:s3cret@hooks.example:8443/x?y=1").unwrap();
        assert_eq!(u.shown(), "https://***@hooks.example:8443/x?y=1");
        assert_eq!(u.credentials(), Some("ops:s3cret"));
        assert!(!format!("{u:?}").contains("s3cret"));
        assert!(!serde_json::to_string(&u).unwrap().contains("s3cret"));
        let plain = webhook("http://127.0.0.1:9000/hook").unwrap();
        assert_eq!(plain.shown(), "http://127.0.0.1:9000/hook");
        assert_eq!(plain.credentials(), None);
        for bad in ["ftp://x/y", "/just/a/path", "http:///nohost", "not a url"] {
            assert!(webhook(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn filters_take_events_services_and_replicas() {
        let spec = AlertSpec {
            target: AlertTarget::Exec(vec!["true".into()]),
            format: AlertFormat::Json,
            events: [AlertEvent::Failed].into_iter().collect(),
            services: Some(["api".to_owned()].into_iter().collect()),
            secret_file: None,
            ca_file: None,
            repeat_after: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
        };
        let table = [
            (AlertEvent::Failed, Some("api"), true),
            (AlertEvent::Failed, Some("api.2"), true),
            (AlertEvent::Failed, Some("api2"), false),
            (AlertEvent::Failed, Some("db"), false),
            (AlertEvent::Unhealthy, Some("api"), false),
            (AlertEvent::Failed, None, true),
            (AlertEvent::Test, Some("db"), true),
        ];
        for (event, service, want) in table {
            assert_eq!(spec.wants(event, service), want, "{event:?} {service:?}");
        }
    }
}
