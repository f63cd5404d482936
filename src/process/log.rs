//! A service's log file, `{state_dir}/logs/{name}.log`, rotated by size. Written by the
//! output pumps (`output`), created by the spawner (`unix`): a leaf both use.

use std::io::Write;
use std::path::{Path, PathBuf};

/// `{name}.log`, rotated to `.1` … `.N` when it passes its size. A failure to write is
/// reported once and never stops the service.
pub struct RotatingLog {
    path: PathBuf,
    max_bytes: u64,
    backups: u32,
    file: Option<std::fs::File>,
    size: u64,
    failed: bool,
}

impl RotatingLog {
    pub fn new(path: PathBuf, max_bytes: u64, backups: u32) -> Self {
        RotatingLog {
            path,
            max_bytes,
            backups,
            file: None,
            size: 0,
            failed: false,
        }
    }

    fn open(&mut self) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = f.metadata()?.len();
        self.file = Some(f);
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.file = None;
        let numbered =
            |n: u32| -> PathBuf { PathBuf::from(format!("{}.{n}", self.path.display())) };
        if self.backups == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            for n in (1..self.backups).rev() {
                let _ = std::fs::rename(numbered(n), numbered(n + 1));
            }
            std::fs::rename(&self.path, numbered(1))?;
        }
        self.open()
    }

    /// Appends `bytes`; false when they could not be written (they are dropped).
    pub fn write(&mut self, bytes: &[u8]) -> bool {
        let result = (|| {
            if self.file.is_none() {
                self.open()?;
            }
            if self.size > 0 && self.size + bytes.len() as u64 > self.max_bytes {
                self.rotate()?;
            }
            let f = self.file.as_mut().expect("UNWRAP: opened above");
            f.write_all(bytes)?;
            self.size += bytes.len() as u64;
            Ok::<_, std::io::Error>(())
        })();
        match result {
            Ok(()) => {
                self.failed = false;
                true
            }
            Err(e) => {
                if !self.failed {
                    self.failed = true;
                    tracing::error!(path = %self.path.display(), error = %e, "cannot write a log file; what it should hold is dropped until it can be written");
                }
                false
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn is_open(&self) -> bool {
        self.file.is_some()
    }

    /// Closes the file; the next write opens it again (appending).
    pub fn close(&mut self) {
        self.file = None;
    }
}
