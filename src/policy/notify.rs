//! What a service's sd_notify message says (SPEC §14): `KEY=VALUE` lines, unknown ones
//! ignored. Pure: no IO, no clock.

/// The largest message guardian reads; a longer one is dropped (and counted) whole.
pub const MAX_MESSAGE: usize = 4096;

/// What guardian acts on in one message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Notice {
    pub ready: bool,
    pub status: Option<String>,
    pub stopping: bool,
    pub reloading: bool,
    /// `WATCHDOG=1`: the service's loop is alive.
    pub watchdog: bool,
    /// `WATCHDOG=trigger`: the service asks to be treated as hung.
    pub watchdog_trigger: bool,
    /// `EXTEND_TIMEOUT_USEC=N`: the current start-up or stop deadline is at least N µs away.
    pub extend_timeout_usec: Option<u64>,
    /// `ERRNO=N`: the error the service failed with.
    pub errno: Option<i32>,
    /// `MAINPID=N`: the process guardian should track instead.
    pub mainpid: Option<i32>,
}

/// Reads one message. Unknown lines, lines that are not `KEY=VALUE` and numbers that do
/// not parse are ignored.
pub fn parse(message: &str) -> Notice {
    let mut n = Notice::default();
    for line in message.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        match key {
            "READY" => n.ready |= value == "1",
            "STATUS" => n.status = Some(value.to_owned()),
            "STOPPING" => n.stopping |= value == "1",
            "RELOADING" => n.reloading |= value == "1",
            "WATCHDOG" if value == "1" => n.watchdog = true,
            "WATCHDOG" if value == "trigger" => n.watchdog_trigger = true,
            "EXTEND_TIMEOUT_USEC" => n.extend_timeout_usec = value.parse().ok(),
            "ERRNO" => n.errno = value.parse().ok().filter(|e| *e >= 0),
            "MAINPID" => n.mainpid = value.parse().ok().filter(|p| *p > 1),
            _ => {}
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_read_line_by_line() {
        let table = [
            ("READY=1", true, None, false),
            (
                "READY=1\nSTATUS=loaded 3 maps",
                true,
                Some("loaded 3 maps"),
                false,
            ),
            ("STATUS=", false, Some(""), false),
            ("READY=0", false, None, false),
            ("STOPPING=1\nX_UNKNOWN=7\nnot a line", false, None, true),
            ("STATUS=a=b", false, Some("a=b"), false),
            ("", false, None, false),
        ];
        for (text, ready, status, stopping) in table {
            let n = parse(text);
            assert_eq!(
                (n.ready, n.status.as_deref(), n.stopping),
                (ready, status, stopping),
                "{text:?}"
            );
        }
    }

    #[test]
    fn watchdog_timeouts_and_pids_are_read_and_bad_numbers_ignored() {
        let table: [(&str, Notice); 9] = [
            (
                "WATCHDOG=1",
                Notice {
                    watchdog: true,
                    ..Notice::default()
                },
            ),
            (
                "WATCHDOG=trigger",
                Notice {
                    watchdog_trigger: true,
                    ..Notice::default()
                },
            ),
            ("WATCHDOG=2", Notice::default()),
            (
                "EXTEND_TIMEOUT_USEC=5000000",
                Notice {
                    extend_timeout_usec: Some(5_000_000),
                    ..Notice::default()
                },
            ),
            ("EXTEND_TIMEOUT_USEC=-1\nERRNO=x", Notice::default()),
            (
                "ERRNO=2\nRELOADING=1",
                Notice {
                    errno: Some(2),
                    reloading: true,
                    ..Notice::default()
                },
            ),
            (
                "MAINPID=4242",
                Notice {
                    mainpid: Some(4242),
                    ..Notice::default()
                },
            ),
            ("MAINPID=1\nMAINPID=0", Notice::default()),
            ("ERRNO=-5\nMAINPID=99999999999", Notice::default()),
        ];
        for (text, want) in table {
            assert_eq!(parse(text), want, "{text:?}");
        }
    }
}
