//! The sd_notify socket (SPEC §14): one datagram socket for every service, read on its own task.

use std::os::unix::fs::PermissionsExt;

use tokio_util::sync::CancellationToken;

use crate::supervisor::SupervisorHandle;

/// The sd_notify socket: a datagram socket that passes each sender's credentials.
pub(super) fn bind(path: &std::path::Path) -> std::io::Result<std::os::unix::net::UnixDatagram> {
    let _ = std::fs::remove_file(path);
    let sock = std::os::unix::net::UnixDatagram::bind(path)?;
    rustix::net::sockopt::set_socket_passcred(&sock, true)?;
    sock.set_nonblocking(true)?;
    // Services may run as other users (`user`): any of them may send.
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666));
    Ok(sock)
}

/// Reads sd_notify datagrams until `token`: each one's sender (from its credentials) and
/// that sender's ancestry go to the supervisor, which takes it only from a service's tree.
/// A message over 4 KiB, or without credentials, is dropped and counted; so is one the
/// supervisor's queue has no room for. Work per message is bounded; nothing accumulates.
pub(super) async fn read(
    sock: tokio::net::UnixDatagram,
    handle: SupervisorHandle,
    token: CancellationToken,
) {
    use crate::policy::notify::{MAX_MESSAGE, parse};
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    let mut buf = vec![0u8; MAX_MESSAGE + 1];
    loop {
        tokio::select! {
            r = sock.readable() => if r.is_err() { return },
            _ = token.cancelled() => return,
        }
        let got = sock.try_io(tokio::io::Interest::READABLE, || {
            let mut space =
                [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmCredentials(1))];
            let mut control = RecvAncillaryBuffer::new(&mut space);
            let msg = rustix::net::recvmsg(
                &sock,
                &mut [std::io::IoSliceMut::new(&mut buf)],
                &mut control,
                RecvFlags::TRUNC,
            )?;
            let pid = control.drain().find_map(|m| match m {
                RecvAncillaryMessage::ScmCredentials(c) => Some(c.pid.as_raw_nonzero().get()),
                _ => None,
            });
            Ok((msg.bytes, pid))
        });
        let (len, pid) = match got {
            Ok(x) => x,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => {
                handle.count_notify_dropped();
                continue;
            }
        };
        let Some(pid) = pid.filter(|_| len <= MAX_MESSAGE) else {
            handle.count_notify_dropped();
            continue;
        };
        let notice = parse(&String::from_utf8_lossy(&buf[..len]));
        handle.notify(crate::process::procinfo::ancestors(pid), notice);
        // The engine was just woken on this thread: let it take the message before the
        // next one (under a flood it would otherwise wait for this loop's budget to run out,
        // and the queue would overflow meanwhile).
        tokio::task::yield_now().await;
    }
}
