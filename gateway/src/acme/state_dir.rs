//! `[acme] state_dir`: the account and the certificate, so a restart serves the stored
//! certificate at once and orders nothing (pingap's issue #213 lost issued certificates; here
//! nothing issued lives only in memory).
//!
//! | file | holds |
//! |---|---|
//! | `account.json` | the ACME account: its URL, its ECDSA P-256 key (PKCS#8) and the directory |
//! | `certificate.pem` | the certificate's private key, then its chain (leaf first), in one file so the pair is replaced in one step |
//!
//! Every write is atomic: a temporary file in the same directory, written, fsynced, renamed
//! over the old one, then the directory fsynced, so a crash leaves the old file or the new
//! one, never half of either. The directory is 0700 and the files 0600; looser permissions
//! are refused at start (the files hold private keys).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

pub const ACCOUNT_FILE: &str = "account.json";
pub const CERTIFICATE_FILE: &str = "certificate.pem";

/// The permission bits nobody but the owner may have.
const GROUP_OR_OTHER: u32 = 0o077;

#[derive(Debug, thiserror::Error)]
pub enum StateDirError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is {mode:04o}: it holds private keys, so group and others must have no access (chmod {want} {path})")]
    TooOpen {
        path: String,
        mode: u32,
        want: &'static str,
    },
    #[error("{0} is not a directory")]
    NotADirectory(String),
}

pub struct StateDir {
    pub path: PathBuf,
}

impl StateDir {
    /// Creates the directory (0700) when it is missing, and refuses one, or a file in it,
    /// that group or others can reach.
    pub fn open(path: &Path) -> Result<StateDir, StateDirError> {
        if !path.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(path)
                .map_err(|source| StateDirError::Io {
                    path: path.display().to_string(),
                    source,
                })?;
        }
        Self::check(path)?;
        Ok(StateDir {
            path: path.to_path_buf(),
        })
    }

    /// What `--check` does: refuses a directory (or a file in it) that group or others can
    /// reach; a missing one is fine (it is created at start). Creates nothing.
    pub fn check(path: &Path) -> Result<(), StateDirError> {
        if !path.exists() {
            return Ok(());
        }
        let io = |source| StateDirError::Io {
            path: path.display().to_string(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        if !meta.is_dir() {
            return Err(StateDirError::NotADirectory(path.display().to_string()));
        }
        check_mode(path, meta.mode(), "700")?;
        for name in [ACCOUNT_FILE, CERTIFICATE_FILE] {
            let file = path.join(name);
            if let Ok(meta) = std::fs::metadata(&file) {
                check_mode(&file, meta.mode(), "600")?;
            }
        }
        Ok(())
    }

    /// The file's text, `None` when it does not exist.
    pub fn read(&self, name: &str) -> Result<Option<String>, StateDirError> {
        let path = self.path.join(name);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StateDirError::Io {
                path: path.display().to_string(),
                source,
            }),
        }
    }

    /// Replaces the file atomically (write, fsync, rename, fsync the directory), mode 0600.
    pub fn write(&self, name: &str, contents: &str) -> Result<(), StateDirError> {
        let path = self.path.join(name);
        let tmp = self.path.join(format!(".{name}.tmp"));
        let io = |p: &Path| {
            let p = p.display().to_string();
            move |source| StateDirError::Io { path: p, source }
        };
        let _ = std::fs::remove_file(&tmp);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io(&tmp))?;
        file.write_all(contents.as_bytes()).map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
        drop(file);
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        std::fs::File::open(&self.path)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.path))?;
        Ok(())
    }
}

fn check_mode(path: &Path, mode: u32, want: &'static str) -> Result<(), StateDirError> {
    if mode & GROUP_OR_OTHER != 0 {
        return Err(StateDirError::TooOpen {
            path: path.display().to_string(),
            mode: mode & 0o7777,
            want,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "portcullis-state-dir-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_missing_directory_is_created_private_and_files_are_written_0600() {
        let dir = scratch("create").join("acme");
        let state = StateDir::open(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
        state.write(ACCOUNT_FILE, "one").unwrap();
        state.write(ACCOUNT_FILE, "two").unwrap();
        assert_eq!(state.read(ACCOUNT_FILE).unwrap().as_deref(), Some("two"));
        let file = std::fs::metadata(dir.join(ACCOUNT_FILE)).unwrap();
        assert_eq!(file.mode() & 0o777, 0o600);
        assert!(
            !dir.join(".account.json.tmp").exists(),
            "no temporary file left"
        );
        assert_eq!(state.read(CERTIFICATE_FILE).unwrap(), None);
        let _ = std::fs::remove_dir_all(dir.parent().unwrap());
    }

    #[test]
    fn looser_permissions_are_refused() {
        let dir = scratch("loose");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = StateDir::open(&dir).err().unwrap().to_string();
        assert!(err.contains("0755") && err.contains("chmod 700"), "{err}");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::write(dir.join(CERTIFICATE_FILE), "x").unwrap();
        std::fs::set_permissions(
            dir.join(CERTIFICATE_FILE),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let err = StateDir::open(&dir).err().unwrap().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
