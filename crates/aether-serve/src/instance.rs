//! The instance id: made once, kept in the data directory (`--data-dir`), so the MQTT
//! client id and every Home Assistant identifier stay the same across restarts.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::error::ServeError;

/// File in the data directory holding the id.
pub const FILE: &str = "instance-id";

/// The default data directory: `$STATE_DIRECTORY` (systemd's `StateDirectory=`), else
/// `$XDG_STATE_HOME/aether`, else `$HOME/.local/state/aether`, else `./aether-state`.
pub fn default_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("STATE_DIRECTORY").filter(|d| !d.is_empty()) {
        // systemd may list several, separated by ':'.
        let first = d
            .to_string_lossy()
            .split(':')
            .next()
            .unwrap_or("")
            .to_string();
        return PathBuf::from(first);
    }
    if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("aether");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(h).join(".local/state/aether");
    }
    PathBuf::from("aether-state")
}

fn valid(id: &str) -> bool {
    (4..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn fresh() -> String {
    let mut h = Sha256::new();
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    h.update(t.to_le_bytes());
    h.update(std::process::id().to_le_bytes());
    if let Ok(n) = std::fs::read("/proc/sys/kernel/random/uuid") {
        h.update(n);
    }
    if let Ok(n) = std::fs::read("/etc/hostname") {
        h.update(n);
    }
    let d = h.finalize();
    let hex: String = d[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("aether-{hex}")
}

/// The id kept in `dir`, made (and written durably: temp file, fsync, rename) the
/// first time.
pub fn load_or_create(dir: &Path) -> Result<String, ServeError> {
    let path = dir.join(FILE);
    let io = |what: &str, e: std::io::Error| {
        ServeError::Config(format!("data directory {}: {what}: {e}", dir.display()))
    };
    match std::fs::read_to_string(&path) {
        Ok(s) => {
            let id = s.trim();
            if valid(id) {
                return Ok(id.to_string());
            }
            return Err(ServeError::Config(format!(
                "{} does not hold an instance id (4–64 of [A-Za-z0-9_-]): {id:?}",
                path.display()
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("reading the instance id", e)),
    }
    std::fs::create_dir_all(dir).map_err(|e| io("creating it", e))?;
    let id = fresh();
    let tmp = dir.join(format!(".{FILE}.{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        writeln!(f, "{id}")?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io("writing the instance id", e)
    })?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_is_kept() {
        let d = tempfile::tempdir().unwrap();
        let a = load_or_create(d.path()).unwrap();
        assert!(a.starts_with("aether-") && valid(&a), "{a}");
        assert_eq!(load_or_create(d.path()).unwrap(), a);
        std::fs::write(d.path().join(FILE), "bad id!\n").unwrap();
        assert!(load_or_create(d.path()).is_err());
        std::fs::write(d.path().join(FILE), "kitchen-pi\n").unwrap();
        assert_eq!(load_or_create(d.path()).unwrap(), "kitchen-pi");
    }
}
