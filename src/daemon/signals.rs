//! The signals `guardian run` answers: SIGTERM and SIGINT stop it, SIGHUP reloads. They are
//! caught from before its first start, which comes before the async runtime when the stack
//! holds no sockets (see `run`): a signal then waits in a socket (signal-hook writes a byte
//! per signal) until a task reads it, instead of ending guardian by its default action and
//! orphaning what already started. SIGCHLD goes to the reaper through tokio, which reaps
//! once when it starts, so an exit before the runtime is not missed.

use std::os::unix::net::UnixStream;

use tokio::io::AsyncReadExt;

use crate::error::FatalError;

/// The signals' sockets before the runtime: each signal handler writes a byte to its own.
pub(super) struct Caught {
    term: UnixStream,
    int: UnixStream,
    hup: UnixStream,
}

/// The same sockets, read by the runtime.
pub(super) struct Signals {
    pub(super) term: Signal,
    pub(super) int: Signal,
    pub(super) hup: Signal,
}

pub(super) struct Signal(tokio::net::UnixStream);

impl Caught {
    /// From now on SIGTERM, SIGINT and SIGHUP wait to be read (`listen`).
    pub(super) fn catch() -> Result<Caught, FatalError> {
        let catch = |signal: libc::c_int, name: &str| {
            let failed =
                |e: std::io::Error| FatalError::Message(format!("cannot watch {name}: {e}"));
            let (read, write) = UnixStream::pair().map_err(failed)?;
            signal_hook::low_level::pipe::register(signal, write).map_err(failed)?;
            read.set_nonblocking(true).map_err(failed)?;
            Ok::<_, FatalError>(read)
        };
        Ok(Caught {
            term: catch(libc::SIGTERM, "SIGTERM")?,
            int: catch(libc::SIGINT, "SIGINT")?,
            hup: catch(libc::SIGHUP, "SIGHUP")?,
        })
    }

    /// The signals, read from inside the runtime; those that came before wait there.
    pub(super) fn listen(self) -> Result<Signals, FatalError> {
        let listen = |s: UnixStream| {
            tokio::net::UnixStream::from_std(s)
                .map(Signal)
                .map_err(|e| FatalError::Message(format!("cannot watch signals: {e}")))
        };
        Ok(Signals {
            term: listen(self.term)?,
            int: listen(self.int)?,
            hup: listen(self.hup)?,
        })
    }
}

impl Signal {
    /// Waits for the signal. Those that came since the last call count as one, as with
    /// tokio's own signal streams: a burst of SIGTERMs is one stop, not a stop and a kill.
    pub(super) async fn recv(&mut self) {
        let mut bytes = [0u8; 64];
        loop {
            match self.0.read(&mut bytes).await {
                Ok(n) if n > 0 => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                // The write end lives in the handler for guardian's life: never here.
                _ => std::future::pending().await,
            }
        }
    }
}
