//! What a valid config needs from this machine, resolved when it is loaded (and on every
//! reload): the variables of each `env_file`, the ids of `user` and `group`, and whether each
//! limit is one guardian may set; whether a program is on PATH, and an alert sink's CA file.
//! The only config code that reads files besides `load.rs`.

use std::path::Path;

use nix::sys::resource::{Resource, getrlimit};
use nix::unistd::{Gid, Group, Uid, User};

use super::report::{ValidationError, ValidationErrors};
use super::{Config, Limit, UNLIMITED};

pub fn resource(limit: Limit) -> Resource {
    match limit {
        Limit::Nofile => Resource::RLIMIT_NOFILE,
        Limit::Nproc => Resource::RLIMIT_NPROC,
        Limit::Core => Resource::RLIMIT_CORE,
        Limit::Memlock => Resource::RLIMIT_MEMLOCK,
        Limit::Stack => Resource::RLIMIT_STACK,
        Limit::As => Resource::RLIMIT_AS,
    }
}

/// Fills in what each service needs from the host; every problem at once.
pub fn resolve(
    config: &mut Config,
    cwd: &Path,
    origin: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ValidationErrors> {
    let mut errors = Vec::new();
    let mut fail = |key: String, message: String| {
        let origin = origin(&key);
        errors.push(ValidationError {
            key,
            origin,
            message,
            at: None,
        });
    };
    if let Some(path) = config
        .guardian
        .api
        .as_ref()
        .and_then(|a| a.token_file.as_ref())
        && let Err(e) = check_token_file(path)
    {
        fail("guardian.api.token_file".to_owned(), e);
    }
    if let Some(api) = &config.guardian.api
        && let (Some(cert), Some(key)) = (&api.tls_cert, &api.tls_key)
        && let Err(e) = tls_config(cert, key)
    {
        fail("guardian.api.tls_key".to_owned(), e);
    }
    for (name, spec) in config.services.iter_mut() {
        let key = |k: &str| format!("services.{name}.{k}");
        for (i, file) in spec.env_file.clone().iter().enumerate() {
            let path = match &spec.cwd {
                _ if file.is_absolute() => file.clone(),
                Some(dir) => cwd.join(dir).join(file),
                None => cwd.join(file),
            };
            match read_env_file(&path) {
                Ok(vars) => spec.env_from_files.extend(vars),
                Err(e) => fail(format!("{}[{i}]", key("env_file")), e),
            }
        }
        if let Some(user) = &spec.user {
            match lookup_user(user) {
                Ok((uid, gid)) => {
                    spec.uid = Some(uid);
                    spec.gid = Some(gid);
                }
                Err(e) => fail(key("user"), e),
            }
        }
        if let Some(group) = &spec.unix_group {
            match lookup_group(group) {
                Ok(gid) => spec.gid = Some(gid),
                Err(e) => fail(key("group"), e),
            }
        }
        for (limit, value) in &spec.limits {
            if let Err(e) = settable(*limit, *value) {
                fail(format!("{}.{}", key("limits"), limit.as_str()), e);
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ValidationErrors(errors))
    }
}

/// The TLS settings of the API: the key readable by its owner only, both files PEM, and the
/// key the certificate's own. ring is the crypto provider (pure Rust and assembly: no cmake, a
/// smaller binary than aws-lc-rs).
pub fn tls_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use std::os::unix::fs::MetadataExt;
    let (c, k) = (cert.display(), key.display());
    let meta = std::fs::metadata(key).map_err(|e| format!("cannot read tls_key {k}: {e}"))?;
    if meta.mode() & 0o077 != 0 {
        return Err(format!(
            "tls_key {k} is readable by group or others (mode {:o})\n  1. fix it: chmod 600 {k}",
            meta.mode() & 0o777
        ));
    }
    owned_by_us(key, &meta)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| format!("tls_cert {c} is not a PEM certificate chain: {e}\n  1. look: openssl x509 -in {c} -noout -text"))?;
    if certs.is_empty() {
        return Err(format!("tls_cert {c} holds no certificate"));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        format!("tls_key {k} is not a PEM private key: {e}\n  1. look: openssl pkey -in {k} -noout")
    })?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    // with_single_cert checks that the key is the certificate's own.
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, private)
        .map_err(|e| format!("tls_cert {c} and tls_key {k} do not belong together: {e}\n  1. compare: openssl x509 -in {c} -noout -pubkey; openssl pkey -in {k} -pubout"))
}

/// A secret file belongs to guardian's user (or root): another user could rewrite it.
fn owned_by_us(path: &Path, meta: &std::fs::Metadata) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let me = Uid::effective().as_raw();
    if meta.uid() != me && meta.uid() != 0 {
        let shown = path.display();
        return Err(format!(
            "{shown} belongs to uid {}, not to guardian's user (uid {me}) or root\n  1. fix it: chown {me} {shown}",
            meta.uid()
        ));
    }
    Ok(())
}

/// The API's token file: present, only its owner may read it, not empty.
pub fn check_token_file(path: &Path) -> Result<(), String> {
    read_token_file(path).map(drop)
}

/// The token in the API's token file, after the checks of `check_token_file`: the one
/// reader for `validate` and for `run`'s listener.
pub fn read_token_file(path: &Path) -> Result<String, String> {
    read_secret_file(path, "token file")
}

/// A secret kept in a file (the API's token, an alert sink's signing key): present, only
/// its owner may read it, owned by guardian's user, not empty. `what` names it in errors.
pub fn read_secret_file(path: &Path, what: &str) -> Result<String, String> {
    use std::os::unix::fs::MetadataExt;
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| {
        format!("cannot read {what} {shown}: {e}\n  1. create it: head -c 32 /dev/urandom | base64 > {shown} && chmod 600 {shown}")
    })?;
    if meta.mode() & 0o077 != 0 {
        return Err(format!(
            "{what} {shown} is readable by group or others (mode {:o})\n  1. fix it: chmod 600 {shown}",
            meta.mode() & 0o777
        ));
    }
    owned_by_us(path, &meta)?;
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("cannot read {what} {shown}: {e}"))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(format!(
            "{what} {shown} is empty\n  1. write a long random key: head -c 32 /dev/urandom | base64 > {shown}"
        ));
    }
    Ok(token.to_owned())
}

/// A dotenv file's variables, in order; `${VAR}` expands from earlier lines and guardian's
/// environment. A bad line is named by its number.
pub fn read_env_file(path: &Path) -> Result<Vec<(String, String)>, String> {
    let shown = path.display();
    let bytes = std::fs::read(path).map_err(|e| {
        format!(
            "cannot read env file {shown}: {e}\n  1. check the path (relative paths start at the service's cwd, else guardian's)\n  2. look: ls -l {shown}"
        )
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = good.iter().filter(|b| **b == b'\n').count() + 1;
        format!(
            "{shown}:{line}: this line is not UTF-8 text\n  1. look: sed -n {line}p {shown} | od -c\n  2. write it again as UTF-8 (iconv -f latin1 -t utf-8)"
        )
    })?;
    let mut out = Vec::new();
    for item in dotenvy::from_read_iter(text.as_bytes()) {
        match item {
            Ok(kv) => out.push(kv),
            Err(dotenvy::Error::LineParse(line, col)) => {
                let first = line.lines().next().unwrap_or(&line);
                let number = text.lines().position(|l| l == first).map_or(0, |i| i + 1);
                return Err(format!(
                    "{shown}:{number}: cannot parse `{first}` (at column {}); write KEY=VALUE, `export KEY=VALUE` or a # comment",
                    col + 1
                ));
            }
            Err(e) => return Err(format!("{shown}: {e}")),
        }
    }
    Ok(out)
}

fn lookup_user(name: &str) -> Result<(u32, u32), String> {
    let found = match name.parse::<u32>() {
        Ok(uid) => User::from_uid(Uid::from_raw(uid)),
        Err(_) => User::from_name(name),
    };
    match found {
        Ok(Some(u)) => Ok((u.uid.as_raw(), u.gid.as_raw())),
        Ok(None) => Err(format!(
            "there is no user `{name}` on this machine\n  1. look: getent passwd {name}\n  2. create it (useradd --system {name}) or name another"
        )),
        Err(e) => Err(format!("cannot look up user `{name}`: {e}")),
    }
}

fn lookup_group(name: &str) -> Result<u32, String> {
    let found = match name.parse::<u32>() {
        Ok(gid) => Group::from_gid(Gid::from_raw(gid)),
        Err(_) => Group::from_name(name),
    };
    match found {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        Ok(None) => Err(format!(
            "there is no group `{name}` on this machine\n  1. look: getent group {name}\n  2. create it (groupadd --system {name}) or name another"
        )),
        Err(e) => Err(format!("cannot look up group `{name}`: {e}")),
    }
}

/// A limit guardian may give a child: at most its own hard limit, unless guardian may raise
/// hard limits (root); `nofile` never above the kernel's `fs.nr_open`.
fn settable(limit: Limit, value: u64) -> Result<(), String> {
    let show = |v: u64| {
        if v == UNLIMITED {
            "unlimited".to_owned()
        } else {
            v.to_string()
        }
    };
    if limit == Limit::Nofile {
        let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok());
        if let Some(max) = nr_open
            && value > max
        {
            return Err(format!(
                "{} is above the kernel's maximum of open files per process, {max} (fs.nr_open)\n  1. lower it\n  2. or raise the kernel's: sysctl fs.nr_open={}",
                show(value),
                show(value)
            ));
        }
    }
    let (_, hard) =
        getrlimit(resource(limit)).map_err(|e| format!("cannot read the limit: {e}"))?;
    let hard = if hard == nix::sys::resource::RLIM_INFINITY {
        UNLIMITED
    } else {
        hard
    };
    if value > hard && !Uid::effective().is_root() {
        return Err(format!(
            "{} is above guardian's hard limit {} for {}, which only root may raise\n  1. lower it to {} or less\n  2. or raise guardian's hard limit (ulimit -H, LimitNOFILE= in its unit)",
            show(value),
            show(hard),
            limit.as_str(),
            show(hard)
        ));
    }
    Ok(())
}

/// A bare program name found on PATH.
pub fn which_on_path(program: &str) -> Option<String> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| {
                m.is_file()
                    && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
            })
        })
        .map(|p| p.display().to_string())
}

/// CA roots for https webhooks: `ca_file`'s certificates, else the system's.
pub fn ca_roots(ca_file: Option<&Path>) -> Result<rustls::RootCertStore, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut store = rustls::RootCertStore::empty();
    match ca_file {
        Some(f) => {
            let shown = f.display();
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(f)
                .and_then(|it| it.collect::<Result<_, _>>())
                .map_err(|e| format!("ca_file {shown} is not PEM certificates: {e}"))?;
            if certs.is_empty() {
                return Err(format!("ca_file {shown} holds no certificate"));
            }
            for c in certs {
                store
                    .add(c)
                    .map_err(|e| format!("ca_file {shown}: a certificate is not usable: {e}"))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for c in found.certs {
                let _ = store.add(c);
            }
            if store.is_empty() {
                return Err("no CA certificates found on this system (install ca-certificates, or give `ca_file`)".into());
            }
        }
    }
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_files_parse_quotes_exports_comments_and_expansion() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join(".env");
        std::fs::write(
            &f,
            "# a comment\n\nexport A=1\nB='two words'\nC=\"x ${A} y\"\nD=${B}-d\n",
        )
        .unwrap();
        let vars = read_env_file(&f).unwrap();
        let want = [
            ("A", "1"),
            ("B", "two words"),
            ("C", "x 1 y"),
            ("D", "two words-d"),
        ];
        assert_eq!(
            vars,
            want.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_bad_line_or_a_missing_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("bad.env");
        std::fs::write(&f, "A=1\nTHIS IS NOT=ok\n").unwrap();
        let e = read_env_file(&f).unwrap_err();
        assert!(
            e.contains("bad.env:2: cannot parse `THIS IS NOT=ok`"),
            "{e}"
        );
        let e = read_env_file(&dir.path().join("missing.env")).unwrap_err();
        assert!(
            e.contains("cannot read env file") && e.contains("missing.env"),
            "{e}"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Env files of any content: parsed without a panic; a rejection names the file.
        #[test]
        fn any_env_file_bytes_are_read_without_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("x.env");
            std::fs::write(&path, &bytes).unwrap();
            if let Err(why) = read_env_file(&path) {
                proptest::prop_assert!(why.contains("x.env"), "{}", why);
            }
        }

        /// Printable KEY=VALUE lines always parse back to what was written.
        #[test]
        fn plain_lines_round_trip(pairs in proptest::collection::btree_map("[A-Z][A-Z0-9_]{0,8}", "[a-z0-9 ._-]{0,12}", 0..8)) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("ok.env");
            let text: String = pairs.iter().map(|(k, v)| format!("{k}='{v}'\n")).collect();
            std::fs::write(&path, text).unwrap();
            let got: std::collections::BTreeMap<String, String> =
                read_env_file(&path).unwrap().into_iter().collect();
            proptest::prop_assert_eq!(got, pairs);
        }
    }

    #[test]
    fn unknown_users_and_groups_are_named() {
        assert_eq!(lookup_user("root").unwrap(), (0, 0));
        assert!(
            lookup_user("no_such_user_x")
                .unwrap_err()
                .contains("there is no user `no_such_user_x`")
        );
        assert!(lookup_group("no_such_group_x").is_err());
    }
}
