//! One duration type for every layer: humantime strings (`"500ms"`, `"1m 30s"`) or plain
//! seconds (`30`, `1.5`, `"2.5"`). Pure: no IO.

use std::fmt;
use std::time::Duration;

use schemars::JsonSchema;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A non-negative duration as written in a config file or an environment variable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Secs(pub Duration);

impl Secs {
    /// Parses the text forms: a number of seconds or a humantime string.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Ok(secs) = text.parse::<f64>() {
            return Self::from_f64(secs);
        }
        humantime::parse_duration(text).map(Secs).map_err(|e| {
            format!("`{text}` is not a duration ({e}); write seconds such as `1.5` or `30`, or a duration such as `500ms`, `30s`, `5m`")
        })
    }

    fn from_f64(secs: f64) -> Result<Self, String> {
        if !secs.is_finite() {
            return Err(format!("`{secs}` is not a duration"));
        }
        if secs < 0.0 {
            return Err(format!("a duration cannot be negative (got {secs})"));
        }
        Duration::try_from_secs_f64(secs)
            .map(Secs)
            .map_err(|_| format!("`{secs}` seconds is too long a duration"))
    }
}

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_zero() {
            return f.write_str("0s");
        }
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Serialize for Secs {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Secs {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SecsVisitor;
        impl Visitor<'_> for SecsVisitor {
            type Value = Secs;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a duration: seconds (`1.5`) or a string such as \"500ms\", \"30s\", \"5m\"",
                )
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Secs, E> {
                Ok(Secs(Duration::from_secs(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Secs, E> {
                if v < 0 {
                    return Err(E::custom(format!(
                        "a duration cannot be negative (got {v})"
                    )));
                }
                Ok(Secs(Duration::from_secs(v.unsigned_abs())))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Secs, E> {
                Secs::from_f64(v).map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Secs, E> {
                Secs::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(SecsVisitor)
    }
}

impl JsonSchema for Secs {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "seconds (1.5) or a humantime string (\"500ms\", \"30s\", \"5m\")",
            "anyOf": [
                { "type": "number", "minimum": 0 },
                { "type": "string" }
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_every_written_form() {
        let table: &[(&str, Duration)] = &[
            ("30", Duration::from_secs(30)),
            ("1.5", Duration::from_millis(1500)),
            ("500ms", Duration::from_millis(500)),
            ("5m", Duration::from_secs(300)),
            ("1m 30s", Duration::from_secs(90)),
            ("0", Duration::ZERO),
        ];
        for (text, want) in table {
            assert_eq!(Secs::parse(text), Ok(Secs(*want)), "{text}");
        }
    }

    #[test]
    fn refuses_negative_and_garbage() {
        assert!(Secs::parse("-1").unwrap_err().contains("negative"));
        assert!(Secs::parse("soon").unwrap_err().contains("not a duration"));
        assert!(Secs::parse("inf").is_err());
    }

    #[test]
    fn deserializes_numbers_and_strings_from_toml_and_json() {
        #[derive(Deserialize)]
        struct T {
            d: Secs,
        }
        let from_toml = |s: &str| toml::from_str::<T>(s).map(|t| t.d.0);
        assert_eq!(from_toml("d = 2").unwrap(), Duration::from_secs(2));
        assert_eq!(from_toml("d = 2.5").unwrap(), Duration::from_millis(2500));
        assert_eq!(from_toml("d = \"5s\"").unwrap(), Duration::from_secs(5));
        assert!(
            from_toml("d = -3")
                .unwrap_err()
                .to_string()
                .contains("negative")
        );
        let from_json = |s: &str| serde_json::from_str::<T>(s).map(|t| t.d.0);
        assert_eq!(
            from_json(r#"{"d": 0.25}"#).unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(
            from_json(r#"{"d": "1m"}"#).unwrap(),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn display_round_trips() {
        for d in [
            Duration::ZERO,
            Duration::from_millis(1500),
            Duration::from_secs(3600),
        ] {
            assert_eq!(Secs::parse(&Secs(d).to_string()), Ok(Secs(d)));
        }
    }
}
