//! `[alerts.NAME]` (SPEC §15): where alerts go, which ones, how often. Checked in
//! `validate::alerts`; delivered by `crate::alerts`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Serialize, Serializer};

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
    pub const ALL: [AlertEvent; 10] = [
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
    /// An http:// or https:// URL with a host. The error never repeats credentials.
    pub fn parse(text: &str) -> Result<WebhookUrl, String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_urls_show_without_credentials() {
        let u = WebhookUrl::parse("https://ops:s3cret@hooks.example:8443/x?y=1").unwrap();
        assert_eq!(u.shown(), "https://***@hooks.example:8443/x?y=1");
        assert_eq!(u.credentials(), Some("ops:s3cret"));
        assert!(!format!("{u:?}").contains("s3cret"));
        assert!(!serde_json::to_string(&u).unwrap().contains("s3cret"));
        let plain = WebhookUrl::parse("http://127.0.0.1:9000/hook").unwrap();
        assert_eq!(plain.shown(), "http://127.0.0.1:9000/hook");
        assert_eq!(plain.credentials(), None);
        for bad in ["ftp://x/y", "/just/a/path", "http:///nohost", "not a url"] {
            assert!(WebhookUrl::parse(bad).is_err(), "{bad}");
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
