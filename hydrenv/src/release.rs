//! Atomic releases on the shared volume:
//! `$SHARED_ROOT/releases/<utc-time>-<content hash>/` holds one complete render, and the
//! `current` symlink is swapped to it with one rename. A reader sees the old set or the new set,
//! never a mix; a failure at any step leaves the previous release and `current` as they were.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use ring::digest::{SHA256, digest};

use crate::render::RenderedFile;

/// The redacted render stored next to the files, for `hydrenv diff`.
pub const REDACTED_NAME: &str = "rendered.redacted";

#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("{path}: cannot write to the shared volume: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "{path}: `current` is not a symlink to a release ({detail}); fix or remove it by hand, nothing was changed"
    )]
    CurrentGarbage { path: String, detail: String },
}

/// How the release went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released {
    pub dir: PathBuf,
    /// An identical earlier release was reused.
    pub reused: bool,
    /// `current` now points somewhere else than before.
    pub switched: bool,
}

/// Writes file data; a seam so tests can simulate a full disk.
pub trait FileWriter {
    fn write(&self, path: &Path, data: &[u8], mode: u32) -> io::Result<()>;
}

/// The real writer: create exclusively with the mode, write, fsync.
pub struct DiskWriter;

impl FileWriter for DiskWriter {
    fn write(&self, path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)?;
        file.write_all(data)?;
        // The umask may have narrowed the mode; set it exactly.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.sync_all()
    }
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> ReleaseError + '_ {
    move |source| ReleaseError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Content hash of a render (file names and contents), hex.
pub fn content_hash(files: &[RenderedFile]) -> String {
    let mut text = Vec::new();
    for f in files {
        text.extend_from_slice(f.name.as_bytes());
        text.push(0);
        text.extend_from_slice(f.contents.as_bytes());
        text.push(0);
    }
    digest(&SHA256, &text)
        .as_ref()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Where `current` points now (the release directory), if anywhere valid.
pub fn current_release(root: &Path) -> Result<Option<PathBuf>, ReleaseError> {
    let current = root.join("current");
    let meta = match fs::symlink_metadata(&current) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(&current)(e)),
    };
    let garbage = |detail: &str| ReleaseError::CurrentGarbage {
        path: current.display().to_string(),
        detail: detail.to_owned(),
    };
    if !meta.file_type().is_symlink() {
        return Err(garbage("it is a regular file or directory"));
    }
    let target = fs::read_link(&current).map_err(io_error(&current))?;
    let resolved = if target.is_absolute() {
        target.clone()
    } else {
        root.join(&target)
    };
    let inside = resolved
        .parent()
        .is_some_and(|p| p == root.join("releases"));
    if !inside || !resolved.is_dir() {
        return Err(garbage(&format!("it points at {}", target.display())));
    }
    Ok(Some(resolved))
}

/// Writes a release (or reuses an identical one) and points `current` at it; keeps `keep` releases.
pub fn publish(
    root: &Path,
    files: &[RenderedFile],
    redacted: &str,
    keep: usize,
    writer: &dyn FileWriter,
) -> Result<Released, ReleaseError> {
    let releases = root.join("releases");
    fs::create_dir_all(&releases).map_err(io_error(&releases))?;
    let before = current_release(root)?;
    let hash = content_hash(files);
    let existing = list(&releases)?;
    let reusable = existing.iter().rev().find(|dir| {
        dir.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(&format!("-{hash}")))
            && same_files(dir, files)
    });
    if let Some(dir) = reusable {
        let switched = before.as_deref() != Some(dir.as_path());
        if switched {
            point_current(root, dir)?;
        }
        return Ok(Released {
            dir: dir.clone(),
            reused: true,
            switched,
        });
    }
    let name = release_name(&hash, existing.last());
    let staging = releases.join(format!(".staging-{name}"));
    let dir = releases.join(&name);
    let result = (|| {
        fs::create_dir(&staging).map_err(io_error(&staging))?;
        for file in files {
            let mode = if file.secret { 0o600 } else { 0o644 };
            write_renamed(&staging, file.name, file.contents.as_bytes(), mode, writer)?;
        }
        write_renamed(&staging, REDACTED_NAME, redacted.as_bytes(), 0o644, writer)?;
        sync_dir(&staging)?;
        fs::rename(&staging, &dir).map_err(io_error(&dir))?;
        sync_dir(&releases)?;
        point_current(root, &dir)
    })();
    if let Err(error) = result {
        let _ = fs::remove_dir_all(&staging);
        if before.as_deref() != Some(dir.as_path())
            && current_release(root).ok().flatten().as_deref() != Some(dir.as_path())
        {
            let _ = fs::remove_dir_all(&dir);
        }
        return Err(error);
    }
    prune(&releases, keep, &dir);
    Ok(Released {
        dir,
        reused: false,
        switched: true,
    })
}

fn write_renamed(
    dir: &Path,
    name: &str,
    data: &[u8],
    mode: u32,
    writer: &dyn FileWriter,
) -> Result<(), ReleaseError> {
    let temp = dir.join(format!(".{name}.tmp"));
    writer.write(&temp, data, mode).map_err(io_error(&temp))?;
    let target = dir.join(name);
    fs::rename(&temp, &target).map_err(io_error(&target))
}

fn sync_dir(dir: &Path) -> Result<(), ReleaseError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))
}

/// Swaps `current` to `dir` atomically (new symlink, then rename over the old one).
fn point_current(root: &Path, dir: &Path) -> Result<(), ReleaseError> {
    let name = dir.file_name().map(PathBuf::from).unwrap_or_default();
    let target = Path::new("releases").join(name);
    let temp = root.join(format!(".current.{}", std::process::id()));
    let _ = fs::remove_file(&temp);
    std::os::unix::fs::symlink(&target, &temp).map_err(io_error(&temp))?;
    let current = root.join("current");
    if let Err(e) = fs::rename(&temp, &current) {
        let _ = fs::remove_file(&temp);
        return Err(io_error(&current)(e));
    }
    sync_dir(root)
}

/// Release directories, oldest first (names sort by creation).
fn list(releases: &Path) -> Result<Vec<PathBuf>, ReleaseError> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(releases)
        .map_err(io_error(releases))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| !n.starts_with('.'))
        })
        .collect();
    dirs.sort();
    Ok(dirs)
}

fn same_files(dir: &Path, files: &[RenderedFile]) -> bool {
    files
        .iter()
        .all(|f| fs::read(dir.join(f.name)).is_ok_and(|data| data == f.contents.as_bytes()))
}

fn prune(releases: &Path, keep: usize, current: &Path) {
    let Ok(dirs) = list(releases) else { return };
    let excess = dirs.len().saturating_sub(keep);
    for dir in dirs.into_iter().take(excess) {
        if dir != current {
            let _ = fs::remove_dir_all(&dir);
        }
    }
}

/// `<UTC yyyymmddThhmmss.nnnnnnnnnZ>-<hash>`, always sorting after `latest`.
fn release_name(hash: &str, latest: Option<&PathBuf>) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mut nanos = now.as_nanos();
    let latest_stamp = latest.and_then(|p| {
        p.file_name()?
            .to_str()?
            .split('-')
            .next()
            .map(str::to_owned)
    });
    loop {
        let stamp = utc_stamp(nanos);
        if latest_stamp.as_deref().is_none_or(|l| stamp.as_str() > l) {
            return format!("{stamp}-{hash}");
        }
        nanos += 1;
    }
}

fn utc_stamp(nanos: u128) -> String {
    let secs = (nanos / 1_000_000_000) as i64;
    let frac = nanos % 1_000_000_000;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}.{frac:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_stamps_are_right_and_sortable() {
        assert_eq!(utc_stamp(0), "19700101T000000.000000000Z");
        assert_eq!(
            utc_stamp(1_764_108_000_123_000_000),
            "20251125T220000.123000000Z"
        );
        assert_eq!(
            utc_stamp(951_782_400_000_000_000),
            "20000229T000000.000000000Z"
        );
    }
}
