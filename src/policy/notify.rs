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
}

/// Reads one message. Unknown lines, and lines that are not `KEY=VALUE`, are ignored.
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
}
