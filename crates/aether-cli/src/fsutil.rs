//! File helpers shared by every verb: atomic writes, size-capped reads.

use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

/// Writes `bytes` to `path` atomically: a temporary file in the same directory,
/// fsync, then rename. On any failure no partial file is left at `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .with_context(|| format!("{}: not a file path", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> Result<()> {
        let mut f =
            fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(bytes)
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.sync_all()
            .with_context(|| format!("syncing {}", tmp.display()))?;
        fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Largest model file the CLI reads: the u32 length fields of `.rvne` cap a blob below
/// 4 GiB, and safetensors models of this head are far smaller.
pub const MAX_MODEL_FILE: u64 = u32::MAX as u64;

/// Reads a whole model file, refusing (before allocating) anything above
/// [`MAX_MODEL_FILE`] bytes.
pub fn read_model_file(path: &Path) -> Result<Vec<u8>> {
    let len = fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    if len > MAX_MODEL_FILE {
        anyhow::bail!(
            "{}: {len} bytes, larger than any model file can be ({MAX_MODEL_FILE} bytes)",
            path.display()
        );
    }
    fs::read(path).with_context(|| format!("reading {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_whole_file_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.bin");
        write_atomic(&p, b"hello").unwrap();
        write_atomic(&p, b"world!").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"world!");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn failure_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("missing-dir").join("a.bin");
        assert!(write_atomic(&p, b"x").is_err());
        assert!(!p.exists());
    }

    #[test]
    fn model_reads_are_capped_before_allocating() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("huge.rvne");
        // A sparse file: no disk blocks, but its length exceeds the cap.
        fs::File::create(&p)
            .unwrap()
            .set_len(MAX_MODEL_FILE + 1)
            .unwrap();
        let e = read_model_file(&p).unwrap_err().to_string();
        assert!(e.contains("larger than any model file"), "{e}");
        fs::write(&p, b"abc").unwrap();
        assert_eq!(read_model_file(&p).unwrap(), b"abc");
    }
}
