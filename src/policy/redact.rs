//! What a start may show of its command line: secrets out, facts in (SPEC §12). Pure: no IO,
//! no clock.
//!
//! A secret is a value of the service's environment (`env`, `env_file`) that is neither a
//! fact guardian placed there (the expansion of `{port}`, `{host}`, `{name}`, `{replica}`,
//! `{state_dir}`, `{pidfile}`) nor the value of a key listed in `public_env`. Masking takes
//! whole arguments (`***`) or the value of a whole `KEY=value` argument (`KEY=***`); a
//! secret of 4 characters or more is also masked where it sits inside an argument (a URL's
//! password). A shorter one never is: `80` must not turn `--workers 8080` into `--workers ***80`.

/// Values under this length are masked only as whole arguments or whole `=value`s.
const MIN_SUBSTRING: usize = 4;

const MASK: &str = "***";

/// The secret values of one start, longest first (so a value holding another is masked whole).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Secrets(Vec<String>);

impl Secrets {
    /// `env`: every variable the service gets from its config; `public`: the keys whose
    /// values may show; `facts`: the placeholders' expansions, which are never secret.
    pub fn new<'a>(
        env: impl IntoIterator<Item = (&'a str, &'a str)>,
        public: impl Fn(&str) -> bool,
        facts: &[&str],
    ) -> Self {
        let mut values: Vec<String> = env
            .into_iter()
            .filter(|(k, v)| !v.is_empty() && !public(k) && !facts.contains(v))
            .map(|(_, v)| v.to_owned())
            .collect();
        values.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        values.dedup();
        Secrets(values)
    }

    /// The command line as events show it: arguments joined with spaces, secrets masked.
    pub fn command(&self, args: &[String]) -> String {
        let shown: Vec<String> = args.iter().map(|a| self.argument(a)).collect();
        shown.join(" ")
    }

    /// One argument (or any one value) as it may show.
    pub fn argument(&self, arg: &str) -> String {
        if self.0.iter().any(|s| s == arg) {
            return MASK.to_owned();
        }
        if let Some((key, value)) = arg.split_once('=')
            && self.0.iter().any(|s| s == value)
        {
            return format!("{key}={MASK}");
        }
        let mut out = arg.to_owned();
        for s in self.0.iter().filter(|s| s.chars().count() >= MIN_SUBSTRING) {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), MASK);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (env, public keys, command, shown)
    type Case = (
        &'static [(&'static str, &'static str)],
        &'static [&'static str],
        &'static str,
        &'static str,
    );

    fn args(line: &str) -> Vec<String> {
        line.split(' ').map(str::to_owned).collect()
    }

    #[test]
    fn secrets_are_masked_and_facts_are_shown() {
        let facts = ["8765", "127.0.0.1", "socketio", "1"];
        // (env, public keys, command, shown)
        let table: &[Case] = &[
            // A placeholder's expansion is a fact: the quick start's port shows.
            (
                &[("SOCKETIO_PORT", "8765")],
                &[],
                "server --host 127.0.0.1 --port 8765",
                "server --host 127.0.0.1 --port 8765",
            ),
            // A whole argument, and the value of a whole KEY=value argument.
            (
                &[("DB_PASSWORD", "hunter22")],
                &[],
                "app hunter22 --password=hunter22",
                "app *** --password=***",
            ),
            // Inside an argument, a long secret is masked where it sits.
            (
                &[("DB_PASSWORD", "hunter22")],
                &[],
                "app --url postgres://u:hunter22@db/x",
                "app --url postgres://u:***@db/x",
            ),
            // A short value is never masked inside another argument…
            (
                &[("WORKERS", "80")],
                &[],
                "app --workers 8080 --listen :80",
                "app --workers 8080 --listen :80",
            ),
            // …only where it is the whole argument or the whole value.
            (
                &[("PIN", "80")],
                &[],
                "app 80 --pin=80",
                "app *** --pin=***",
            ),
            // Public keys show.
            (
                &[("LOG_LEVEL", "debug"), ("TOKEN", "s3cr3t-t0ken")],
                &["LOG_LEVEL"],
                "app --log debug --token s3cr3t-t0ken",
                "app --log debug --token ***",
            ),
            // The longest first: a value that holds another is masked whole.
            (
                &[("A", "abcd"), ("B", "abcdefgh")],
                &[],
                "app --x=zzabcdefghzz",
                "app --x=zz***zz",
            ),
            // Multi-byte secrets count characters, not bytes.
            (&[("K", "ééé")], &[], "app xéééx", "app xéééx"),
            (&[("K", "éééé")], &[], "app xééééx", "app x***x"),
            // An empty value hides nothing.
            (&[("EMPTY", "")], &[], "app --flag=", "app --flag="),
        ];
        for (env, public, line, want) in table {
            let s = Secrets::new(env.iter().copied(), |k| public.contains(&k), &facts);
            assert_eq!(s.command(&args(line)), *want, "{env:?} {line}");
        }
    }
}
