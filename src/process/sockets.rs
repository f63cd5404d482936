//! Listening sockets guardian binds and holds for its services (SPEC §13): bound before any
//! service starts, handed to the spawning thread (which passes them to each instance as fds
//! 3, 4, …), and kept for guardian's whole life. IO: socket, bind, listen, the unix socket
//! file's mode and owner, and /proc to name whoever holds a port already.

use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

use crate::config::Listen;

/// Connections the kernel queues while no instance accepts (a restart): at least 1024, capped
/// by `net.core.somaxconn`.
pub const BACKLOG: i32 = 4096;

/// The environment of the systemd protocol for `names` (in the order of their fds), but for
/// LISTEN_PID, which only the child knows. Pure.
pub fn listen_env(names: &[&str]) -> [(&'static str, String); 2] {
    [
        ("LISTEN_FDS", names.len().to_string()),
        ("LISTEN_FDNAMES", names.join(":")),
    ]
}

/// Binds `listen` (SO_REUSEADDR, close-on-exec, the backlog above). A unix socket's file gets
/// mode 0660 and, when given, the service's user and group. The error names the address, and
/// for a port in use the PID and program holding it, and says what to do.
pub fn bind(listen: &Listen, owner: Option<(Option<u32>, Option<u32>)>) -> Result<OwnedFd, String> {
    let fd: OwnedFd = match listen {
        // std sets SO_REUSEADDR and close-on-exec; listen() again below raises the backlog.
        Listen::Tcp(addr) => match std::net::TcpListener::bind(addr) {
            Ok(l) => l.into(),
            Err(e) => match e.raw_os_error() {
                // After a guardian crash its services still hold their sockets.
                Some(libc::EADDRINUSE) => {
                    take_from_service(&crate::process::procinfo::listening_inodes(addr.port()))
                        .ok_or_else(|| tcp_error(listen, addr.port(), &e))?
                }
                _ => return Err(tcp_error(listen, addr.port(), &e)),
            },
        },
        Listen::Unix(path) => {
            if let Some(fd) = unix_inode(path)
                .and_then(|i| take_from_service(&std::collections::HashSet::from([i])))
            {
                return listen_on(listen, fd);
            }
            remove_stale(listen, path)?;
            let l = std::os::unix::net::UnixListener::bind(path)
                .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660));
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::chown(path, uid, gid).map_err(|e| {
                    format!("cannot give {listen} to the service's user and group: {e}")
                })?;
            }
            l.into()
        }
    };
    listen_on(listen, fd)
}

fn listen_on(listen: &Listen, fd: OwnedFd) -> Result<OwnedFd, String> {
    rustix::net::listen(&fd, BACKLOG).map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    Ok(fd)
}

/// A copy of a listening socket (one of `inodes`) from a process that is one of guardian's
/// services (it carries guardian's mark): after a guardian crash, the services it left
/// running still hold the sockets, and the next guardian takes them back (pidfd_getfd)
/// instead of failing to bind. Any other holder is left alone (None).
fn take_from_service(inodes: &std::collections::HashSet<u64>) -> Option<OwnedFd> {
    if inodes.is_empty() {
        return None;
    }
    for pid in crate::process::procinfo::holders_of(inodes) {
        if !is_a_service(pid) {
            continue;
        }
        let target = procfs::process::Process::new(pid)
            .and_then(|p| p.fd())
            .into_iter()
            .flatten()
            .flatten()
            .find_map(|fd| match fd.target {
                procfs::process::FDTarget::Socket(i) if inodes.contains(&i) => Some(fd.fd),
                _ => None,
            });
        let Some(target) = target else { continue };
        let pidfd = rustix::process::Pid::from_raw(pid).and_then(|p| {
            rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok()
        });
        if let Some(pidfd) = pidfd
            && let Ok(fd) = rustix::process::pidfd_getfd(
                &pidfd,
                target,
                rustix::process::PidfdGetfdFlags::empty(),
            )
        {
            tracing::info!(
                pid,
                "took the listening socket back from a service left running"
            );
            return Some(fd);
        }
    }
    None
}

/// The inode of the unix socket bound at `path`, if one listens there.
fn unix_inode(path: &Path) -> Option<u64> {
    procfs::net::unix()
        .ok()?
        .into_iter()
        .find(|e| e.path.as_deref() == Some(path) && e.state == procfs::net::UnixState::UNCONNECTED)
        .map(|e| e.inode)
}

/// What `validate` can tell about the held sockets without binding them: a privileged port
/// guardian may not bind, and a port another program listens on (a guardian, or one of its
/// services, is not another program: it holds the socket on purpose). Each as (key, error).
pub fn preflight(config: &crate::config::Config) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let privileged_below = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|t| t.trim().parse::<u16>().ok())
        .unwrap_or(1024);
    for spec in config.services.values() {
        for (sname, listen) in &spec.sockets {
            let Listen::Tcp(addr) = listen else { continue };
            let key = format!("services.{}.sockets.{sname}", spec.name);
            let port = addr.port();
            if port < privileged_below && !may_bind_privileged() {
                out.push((
                    key,
                    tcp_error(
                        listen,
                        port,
                        &std::io::Error::from_raw_os_error(libc::EACCES),
                    ),
                ));
                continue;
            }
            if let crate::process::procinfo::PortHolder::Pid(f) =
                crate::process::procinfo::port_holder(port)
                && !is_guardians(f.pid, &f.cmdline)
            {
                out.push((
                    key,
                    tcp_error(
                        listen,
                        port,
                        &std::io::Error::from_raw_os_error(libc::EADDRINUSE),
                    ),
                ));
            }
        }
    }
    out
}

/// Root, or CAP_NET_BIND_SERVICE in the effective set.
fn may_bind_privileged() -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let hex = s
                .lines()
                .find_map(|l| l.strip_prefix("CapEff:"))?
                .trim()
                .to_owned();
            u64::from_str_radix(&hex, 16).ok()
        })
        .is_some_and(|caps| caps & (1 << 10) != 0)
}

/// A guardian (this one or another) or one of the services a guardian started.
fn is_guardians(pid: i32, cmdline: &[String]) -> bool {
    let program = cmdline.first().map(|p| p.rsplit('/').next().unwrap_or(p));
    pid == std::process::id() as i32 || program == Some("guardian") || is_a_service(pid)
}

/// Whether `pid` carries guardian's service mark in its environment.
fn is_a_service(pid: i32) -> bool {
    super::procinfo::service_mark(pid).is_some()
}

fn tcp_error(listen: &Listen, port: u16, e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EADDRINUSE) => match crate::process::procinfo::port_holder(port) {
            crate::process::procinfo::PortHolder::Pid(f) => format!(
                "{listen} is in use by pid {} ({})\n  1. look: ss -ltnp 'sport = :{port}'\n  2. stop that process, or give the socket another address",
                f.pid,
                f.command_line()
            ),
            _ => format!(
                "{listen} is in use\n  1. look: sudo ss -ltnp 'sport = :{port}'\n  2. stop that process, or give the socket another address"
            ),
        },
        Some(libc::EACCES) => format!(
            "{listen}: port {port} is privileged and guardian may not bind it\n  1. run guardian as root, or give it the right: setcap cap_net_bind_service=+ep $(command -v guardian)\n  2. or use a port of 1024 or more"
        ),
        Some(libc::EADDRNOTAVAIL) => format!(
            "{listen}: that IP address is not one of this machine's\n  1. look: ip -brief address"
        ),
        _ => format!("cannot listen on {listen}: {e}"),
    }
}

/// A socket file left by an earlier run (nobody accepts on it) is removed; one in use, or a
/// file that is not a socket, is an error.
fn remove_stale(listen: &Listen, path: &Path) -> Result<(), String> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Err(format!(
            "{listen}: {} exists and is not a socket\n  1. move it away, or give the socket another path",
            path.display()
        ));
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(format!(
            "{listen} is in use: a process accepts on it\n  1. look: ss -lxp | grep {}",
            path.display()
        ));
    }
    std::fs::remove_file(path).map_err(|e| format!("cannot remove the stale {listen}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_protocol_names_the_sockets_in_order() {
        assert_eq!(
            listen_env(&["http", "metrics"]),
            [
                ("LISTEN_FDS", "2".to_owned()),
                ("LISTEN_FDNAMES", "http:metrics".to_owned())
            ]
        );
    }

    #[test]
    fn a_port_in_use_names_its_holder() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let l = Listen::Tcp(taken.local_addr().unwrap());
        let e = bind(&l, None).unwrap_err();
        assert!(
            e.contains(&format!("is in use by pid {}", std::process::id())),
            "{e}"
        );
        drop(taken);
        let fd = bind(&l, None).unwrap();
        // The backlog and the address are what was asked.
        let got = rustix::net::getsockname(&fd).unwrap();
        assert_eq!(
            std::net::SocketAddr::try_from(got).unwrap(),
            match &l {
                Listen::Tcp(a) => *a,
                Listen::Unix(_) => unreachable!(),
            }
        );
    }

    #[test]
    fn a_stale_unix_socket_is_replaced_and_a_live_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.sock");
        let l = Listen::Unix(path.clone());
        let live = std::os::unix::net::UnixListener::bind(&path).unwrap();
        assert!(bind(&l, None).unwrap_err().contains("is in use"));
        drop(live);
        let _fd = bind(&l, None).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, "x").unwrap();
        assert!(bind(&l, None).unwrap_err().contains("is not a socket"));
    }
}
