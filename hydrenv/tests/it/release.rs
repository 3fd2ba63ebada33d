//! Releases on the shared volume: modes, reuse of identical renders, pruning, ordering, and a
//! failing disk that leaves everything as it was.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use hydrenv::release::{DiskWriter, FileWriter, publish};
use hydrenv::render::RenderedFile;

use crate::support::*;

fn files(weight: u32) -> Vec<RenderedFile> {
    vec![
        RenderedFile {
            name: "gateway.yaml",
            template: "gateway.yaml.tera",
            contents: format!("weight: {weight}\nkey: secret\n"),
            secret: true,
        },
        RenderedFile {
            name: "otel-collector.yaml",
            template: "otel-collector.yaml.tera",
            contents: "receivers: {}\n".into(),
            secret: false,
        },
    ]
}

fn releases(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root.join("releases"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn writes_files_with_their_modes_and_points_current_at_them() {
    let root = tempfile::tempdir().unwrap();
    let shared = root.path().join("not-yet-created");
    let released = publish(&shared, &files(1), "redacted\n", 5, &DiskWriter).unwrap();
    assert!(!released.reused && released.switched);
    let current = shared.join("current");
    assert_eq!(
        std::fs::read_to_string(current.join("gateway.yaml")).unwrap(),
        "weight: 1\nkey: secret\n"
    );
    let mode = |name: &str| {
        std::fs::metadata(current.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("gateway.yaml"), 0o600);
    assert_eq!(mode("otel-collector.yaml"), 0o644);
    assert_eq!(
        std::fs::read_to_string(current.join("rendered.redacted")).unwrap(),
        "redacted\n"
    );
    // `current` is a relative symlink into releases/, so the volume can be mounted anywhere.
    let target = std::fs::read_link(&current).unwrap();
    assert!(target.starts_with("releases"), "{target:?}");
    // The name is <utc time>-<hash>.
    let name = releases(&shared).pop().unwrap();
    assert!(
        name.len() > 30 && name.as_bytes()[8] == b'T' && name.contains("Z-"),
        "{name}"
    );
}

#[test]
fn identical_render_reuses_the_release_and_changes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let first = publish(root.path(), &files(1), "r", 5, &DiskWriter).unwrap();
    let before = tree(root.path());
    let again = publish(root.path(), &files(1), "r", 5, &DiskWriter).unwrap();
    assert!(again.reused && !again.switched);
    assert_eq!(again.dir, first.dir);
    assert_eq!(tree(root.path()), before);
    // Going back to an earlier identical render reuses it too.
    publish(root.path(), &files(2), "r", 5, &DiskWriter).unwrap();
    let back = publish(root.path(), &files(1), "r", 5, &DiskWriter).unwrap();
    assert!(back.reused && back.switched);
    assert_eq!(back.dir, first.dir);
    assert_eq!(releases(root.path()).len(), 2);
}

#[test]
fn keeps_the_last_releases_in_creation_order() {
    let root = tempfile::tempdir().unwrap();
    let mut dirs = Vec::new();
    for weight in 0..8 {
        dirs.push(
            publish(root.path(), &files(weight), "r", 5, &DiskWriter)
                .unwrap()
                .dir,
        );
    }
    let names = releases(root.path());
    assert_eq!(names.len(), 5);
    // Many releases within the same second still sort by creation.
    let expected: Vec<String> = dirs[3..]
        .iter()
        .map(|d| d.file_name().unwrap().to_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, expected);
    assert_eq!(
        std::fs::read_to_string(root.path().join("current/gateway.yaml")).unwrap(),
        "weight: 7\nkey: secret\n"
    );
}

/// A disk that fills up after `budget` files.
struct FullDisk {
    budget: AtomicUsize,
}

impl FileWriter for FullDisk {
    fn write(&self, path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
        if self.budget.fetch_sub(1, Ordering::Relaxed) == 0 {
            // What a full disk says: ENOSPC, after the file was created.
            std::fs::write(path, &data[..data.len() / 2])?;
            return Err(io::Error::from_raw_os_error(28));
        }
        DiskWriter.write(path, data, mode)
    }
}

#[test]
fn a_full_disk_leaves_the_previous_release_and_current_untouched() {
    let root = tempfile::tempdir().unwrap();
    publish(root.path(), &files(1), "r", 5, &DiskWriter).unwrap();
    let before = tree(root.path());
    for budget in 0..3 {
        let error = publish(
            root.path(),
            &files(2),
            "r",
            5,
            &FullDisk {
                budget: AtomicUsize::new(budget),
            },
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("No space left on device"),
            "{error}"
        );
        assert_eq!(tree(root.path()), before, "budget {budget}");
    }
}
