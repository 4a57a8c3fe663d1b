//! File helpers shared by every verb: output checks before any work, atomic writes that
//! only ever replace a regular file, output directories removed again on failure, and
//! size-capped reads.
//!
//! Output policy (also in crates/aether-cli/README.md): an output file may be missing or
//! an existing regular file, which is replaced atomically (temporary file in the same
//! directory, fsync, rename). Anything else at that path is refused and left alone: a
//! directory, a FIFO, a socket, a device node, and a symbolic link — a link is not
//! followed; name the file it points to instead. The file's directory must exist and be
//! writable. An output directory (`simulate`, `features`, `demo --keep`) must be missing
//! or empty; if the verb fails, what it wrote there is removed again.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use aether_data::Dataset;
use anyhow::{bail, Context, Result};

/// Distinguishes temporary files of one process.
static TEMP_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// The directory a file path lives in (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// What a non-regular file is, for messages.
fn kind_of(ft: &fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_fifo() {
            return "a FIFO";
        }
        if ft.is_socket() {
            return "a socket";
        }
        if ft.is_block_device() || ft.is_char_device() {
            return "a device node";
        }
    }
    if ft.is_dir() {
        "a directory"
    } else if ft.is_symlink() {
        "a symbolic link"
    } else {
        "not a regular file"
    }
}

/// Creates a fresh temporary file next to `name` in `dir` (never follows or reuses an
/// existing path).
fn create_temp(dir: &Path, name: &str) -> Result<(PathBuf, fs::File)> {
    loop {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{name}.tmp-{}-{n}", std::process::id()));
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("{}: cannot create a file there", dir.display()))
            }
        }
    }
}

/// Fails unless `path` can receive an output file: missing or a regular file (not a
/// symbolic link, directory, FIFO, socket or device), in an existing directory.
fn check_target(path: &Path) -> Result<()> {
    if path.file_name().is_none() {
        bail!("{}: not a file path", path.display());
    }
    match fs::symlink_metadata(path) {
        Ok(m) => {
            let ft = m.file_type();
            if ft.is_symlink() {
                bail!(
                    "{}: is a symbolic link; outputs never follow links (name the file it points to instead)",
                    path.display()
                );
            }
            if ft.is_dir() {
                bail!("{}: is a directory; expected a file path", path.display());
            }
            if !ft.is_file() {
                bail!(
                    "{}: exists and is {}; refusing to replace it with a regular file",
                    path.display(),
                    kind_of(&ft)
                );
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("{}", path.display())),
    }
    let dir = parent_dir(path);
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => bail!("{}: not a directory", dir.display()),
        Err(_) => bail!("{}: directory does not exist", dir.display()),
    }
}

/// Checks an output file before any work: as [`write_atomic`] will (see the module
/// docs), plus that its directory accepts a new file.
pub fn check_output_file(path: &Path) -> Result<()> {
    check_target(path)?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let (tmp, f) = create_temp(parent_dir(path), &name)?;
    drop(f);
    let _ = fs::remove_file(tmp);
    Ok(())
}

/// Refuses two outputs of one run that name the same file: `outputs` are
/// `(option, path)` pairs, each already checked by [`check_output_file`].
pub fn distinct_outputs(outputs: &[(&str, &Path)]) -> Result<()> {
    let key = |p: &Path| -> Result<PathBuf> {
        let dir = fs::canonicalize(parent_dir(p))
            .with_context(|| format!("{}", parent_dir(p).display()))?;
        Ok(dir.join(p.file_name().unwrap_or_default()))
    };
    let keys = outputs
        .iter()
        .map(|(_, p)| key(p))
        .collect::<Result<Vec<_>>>()?;
    for i in 0..outputs.len() {
        for j in 0..i {
            let same = keys[i] == keys[j] || same_existing_file(outputs[i].1, outputs[j].1);
            if same {
                bail!(
                    "{} and {} both name {}; choose different files",
                    outputs[j].0,
                    outputs[i].0,
                    outputs[i].1.display()
                );
            }
        }
    }
    Ok(())
}

/// Whether two existing paths are the same file (hard links included).
fn same_existing_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(x), Ok(y)) = (fs::metadata(a), fs::metadata(b)) {
            return x.dev() == y.dev() && x.ino() == y.ino();
        }
    }
    let _ = (a, b);
    false
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory,
/// fsync, then rename. On any failure no partial file is left at `path`; a path that
/// exists and is not a regular file is refused and left as it is (module docs).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    check_target(path)?;
    let dir = parent_dir(path);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let (tmp, mut f) = create_temp(dir, &name)?;
    let result = (|| -> Result<()> {
        f.write_all(bytes)
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.sync_all()
            .with_context(|| format!("syncing {}", tmp.display()))?;
        // The path may have changed since the first check (e.g. a FIFO created meanwhile).
        check_target(path)?;
        fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Fails unless `dir` can become an output directory: missing (its nearest existing
/// ancestor a directory) or an empty directory.
pub fn check_output_dir(dir: &Path) -> Result<()> {
    match fs::metadata(dir) {
        Ok(m) if !m.is_dir() => bail!("{}: exists and is not a directory", dir.display()),
        Ok(_) => {
            let mut entries =
                fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
            if entries.next().is_some() {
                bail!(
                    "{}: directory is not empty; choose a new output directory",
                    dir.display()
                );
            }
            Ok(())
        }
        Err(_) => {
            let mut a = dir;
            while let Some(p) = a.parent() {
                let p = if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                };
                if let Ok(m) = fs::metadata(p) {
                    if m.is_dir() {
                        return Ok(());
                    }
                    bail!("{}: not a directory", p.display());
                }
                a = p;
            }
            bail!("{}: cannot be created", dir.display())
        }
    }
}

/// An output directory being filled. It was missing or empty when created; unless
/// [`OutDir::keep`] is called, dropping it removes everything written into it and the
/// directories it created, so a failed run leaves nothing behind.
pub struct OutDir {
    path: PathBuf,
    /// The topmost directory this run created (`None`: `path` existed, empty).
    created: Option<PathBuf>,
    keep: bool,
}

impl OutDir {
    /// Checks `dir` ([`check_output_dir`]) and creates it (with missing parents).
    pub fn create(dir: &Path) -> Result<Self> {
        check_output_dir(dir)?;
        let mut created = None;
        let mut a = dir;
        while !a.as_os_str().is_empty() && fs::symlink_metadata(a).is_err() {
            created = Some(a.to_path_buf());
            a = a.parent().unwrap_or(Path::new(""));
        }
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self {
            path: dir.to_path_buf(),
            created,
            keep: false,
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Keeps what was written: the run succeeded.
    pub fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for OutDir {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        match &self.created {
            Some(top) => {
                let _ = fs::remove_dir_all(top);
            }
            None => {
                if let Ok(entries) = fs::read_dir(&self.path) {
                    for e in entries.flatten() {
                        let p = e.path();
                        let _ = match e.file_type() {
                            Ok(t) if t.is_dir() => fs::remove_dir_all(&p),
                            _ => fs::remove_file(&p),
                        };
                    }
                }
            }
        }
    }
}

/// Writes a dataset's files under `out` (class directories created as needed); returns
/// the number of recordings written.
pub fn write_dataset(out: &Path, ds: &Dataset) -> Result<usize> {
    let files = ds.to_files()?;
    for f in &files {
        let dir = out.join(&f.class);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        write_atomic(&dir.join(&f.file_name), f.contents.as_bytes())?;
    }
    Ok(files.len())
}

/// Model files are read by the pipeline's reader (size-checked before allocating).
pub use aether_pipeline::model_io::read_model_file;

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
        check_output_file(&p).unwrap();
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn failure_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("missing-dir").join("a.bin");
        assert!(write_atomic(&p, b"x").is_err());
        let e = check_output_file(&p).unwrap_err().to_string();
        assert!(e.contains("does not exist"), "{e}");
        assert!(!p.exists());
    }

    #[cfg(unix)]
    #[test]
    fn non_regular_outputs_are_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target.bin");
        fs::write(&target, b"keep").unwrap();
        let link = dir.path().join("link.bin");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = write_atomic(&link, b"x").unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read(&target).unwrap(), b"keep");
        let sub = dir.path().join("sub");
        fs::create_dir(&sub).unwrap();
        assert!(write_atomic(&sub, b"x")
            .unwrap_err()
            .to_string()
            .contains("directory"));
        // A socket stands for every special file (a device node would need root, and a
        // regression must not be able to replace a real one such as /dev/null).
        let sock = dir.path().join("s.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let e = write_atomic(&sock, b"x").unwrap_err().to_string();
        assert!(e.contains("a socket"), "{e}");
        assert!(check_output_file(&sock).is_err());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 4, "no temp left");
    }

    #[test]
    fn outputs_naming_one_file_clash() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("m.json");
        let b = dir.path().join("sub").join("..").join("m.json");
        fs::create_dir(dir.path().join("sub")).unwrap();
        let e = distinct_outputs(&[("--out", &a), ("--report", &b)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--out and --report"), "{e}");
        distinct_outputs(&[("--out", &a), ("--report", &dir.path().join("r.json"))]).unwrap();
    }

    #[test]
    fn out_dir_is_removed_on_failure_and_kept_on_success() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a").join("b");
        {
            let o = OutDir::create(&deep).unwrap();
            fs::write(o.path().join("f"), b"x").unwrap();
        }
        assert!(
            !dir.path().join("a").exists(),
            "created parents removed too"
        );
        let empty = dir.path().join("empty");
        fs::create_dir(&empty).unwrap();
        {
            let o = OutDir::create(&empty).unwrap();
            fs::create_dir(o.path().join("c")).unwrap();
            fs::write(o.path().join("c").join("f"), b"x").unwrap();
        }
        assert!(empty.is_dir(), "a directory that existed stays");
        assert_eq!(fs::read_dir(&empty).unwrap().count(), 0);
        let o = OutDir::create(&deep).unwrap();
        fs::write(o.path().join("f"), b"x").unwrap();
        o.keep();
        assert!(deep.join("f").is_file());
        let e = check_output_dir(&deep).unwrap_err().to_string();
        assert!(e.contains("not empty"), "{e}");
        let e = check_output_dir(&deep.join("f").join("x"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a directory"), "{e}");
    }
}
