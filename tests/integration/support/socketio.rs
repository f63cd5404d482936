//! A small Socket.IO v5 client over Engine.IO v4 long-polling, for black-box tests of the
//! reference server. It speaks the real protocol (handshake, connect, events, acks, ping,
//! disconnect); rust_socketio was left out: it hard-depends on OpenSSL through native-tls.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// One Socket.IO packet as received, e.g. `42["pong",{}]`, `431[{"ok":true}]`, `41`.
pub type Packet = String;

pub struct Client {
    addr: String,
    sid: String,
}

/// One HTTP/1.0 request to the server; the body of a 200, else an error.
fn request(addr: &str, method: &str, path: &str, body: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(40)))?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nhost: {addr}\r\ncontent-type: text/plain;charset=UTF-8\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let code = text.split_whitespace().nth(1).unwrap_or("");
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    if code != "200" {
        return Err(std::io::Error::other(format!(
            "{method} {path}: {code} {body}"
        )));
    }
    Ok(body.to_owned())
}

impl Client {
    /// Handshake and connect to namespace `/`; returns once the server acknowledged.
    pub fn connect(addr: &str) -> std::io::Result<Client> {
        let open = request(addr, "GET", "/socket.io/?EIO=4&transport=polling", "")?;
        let json = open
            .strip_prefix('0')
            .ok_or_else(|| std::io::Error::other(format!("no open packet: {open}")))?;
        let v: serde_json::Value = serde_json::from_str(json).map_err(std::io::Error::other)?;
        let sid = v["sid"].as_str().unwrap_or_default().to_owned();
        let c = Client {
            addr: addr.to_owned(),
            sid,
        };
        c.post("40")?;
        // Wait for the namespace connect packet before the first emit.
        for _ in 0..5 {
            if c.poll()?.iter().any(|p| p.starts_with("40")) {
                return Ok(c);
            }
        }
        Err(std::io::Error::other(
            "the server never confirmed the connect",
        ))
    }

    fn path(&self) -> String {
        format!("/socket.io/?EIO=4&transport=polling&sid={}", self.sid)
    }

    fn post(&self, packet: &str) -> std::io::Result<()> {
        request(&self.addr, "POST", &self.path(), packet).map(|_| ())
    }

    /// One long-poll: the packets the server had (answering its pings on the way).
    pub fn poll(&self) -> std::io::Result<Vec<Packet>> {
        let body = request(&self.addr, "GET", &self.path(), "")?;
        let packets: Vec<Packet> = body.split('\u{1e}').map(str::to_owned).collect();
        if packets.iter().any(|p| p == "2") {
            self.post("3")?;
        }
        Ok(packets)
    }

    /// Emits `ping` with an ack id and waits for both the `pong` event and the ack.
    pub fn ping(&self, data: &serde_json::Value) -> std::io::Result<(Packet, Packet)> {
        self.post(&format!("421[\"ping\",{data}]"))?;
        let (mut pong, mut ack) = (None, None);
        for _ in 0..10 {
            for p in self.poll()? {
                if p.starts_with("42[\"pong\"") {
                    pong = Some(p);
                } else if p.starts_with("431") {
                    ack = Some(p);
                }
            }
            if let (Some(p), Some(a)) = (&pong, &ack) {
                return Ok((p.clone(), a.clone()));
            }
        }
        Err(std::io::Error::other("no pong and ack"))
    }

    /// Polls until the session ends: `Some("41")` (the server disconnected this client),
    /// `Some("1")` (it closed the transport) or `Some("error: …")` (the server is gone).
    pub fn wait_disconnect(&self) -> Option<String> {
        for _ in 0..20 {
            match self.poll() {
                Ok(ps) => {
                    if let Some(p) = ps.iter().find(|p| *p == "41" || *p == "1") {
                        return Some(p.clone());
                    }
                }
                Err(e) => return Some(format!("error: {e}")),
            }
        }
        None
    }
}
