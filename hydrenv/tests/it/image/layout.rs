//! The image's filesystem under a directory: each `COPY` of the Dockerfile's runtime stage, with
//! this build's binaries for the build stage's, and what the distroless base provides (the C
//! runtime the binaries load, `/proc` for unshare to mount, `/tmp`).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::dockerfile::Runtime;
use crate::support::BIN;

/// What `gcr.io/distroless/cc-debian12` ships of the C runtime: glibc, libgcc, libstdc++,
/// libgomp and OpenSSL. A binary needing any other library would not start in the image.
const BASE_LIBRARIES: &[&str] = &[
    "ld-linux-x86-64.so.2",
    "libc.so.6",
    "libm.so.6",
    "libdl.so.2",
    "libpthread.so.0",
    "librt.so.1",
    "libutil.so.1",
    "libgcc_s.so.1",
    "libstdc++.so.6",
    "libgomp.so.1",
    "libssl.so.3",
    "libcrypto.so.3",
];

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn chown_tree(path: &Path, (uid, gid): (u32, u32)) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            chown_tree(&entry.unwrap().path(), (uid, gid));
        }
    }
}

/// The libraries a binary loads, as `ldd` resolves them on this machine.
fn libraries(binary: &Path) -> Vec<PathBuf> {
    let out = Command::new("ldd").arg(binary).output().unwrap();
    assert!(out.status.success(), "ldd {}", binary.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let path = match line.split_once("=>") {
                Some((_, resolved)) => resolved.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// Where a file copied from the build stage comes from in this build.
fn build_artifact(source: &str, scratch: &Path) -> PathBuf {
    let hydrenv = PathBuf::from(BIN);
    match Path::new(source).file_name().and_then(|n| n.to_str()) {
        Some("hydrenv") => hydrenv,
        Some("proxy") => {
            let proxy = hydrenv.with_file_name("proxy");
            assert!(
                proxy.is_file(),
                "{} is missing: build it first (cargo build -p proxy)",
                proxy.display()
            );
            proxy
        }
        Some("shared-configs") => {
            let empty = scratch.join("empty-volume");
            std::fs::create_dir_all(&empty).unwrap();
            empty
        }
        _ => panic!(
            "the Dockerfile copies {source} from the build stage: teach the image test which artifact it is"
        ),
    }
}

/// Lays the runtime stage's filesystem out under `root`.
pub fn lay_out(runtime: &Runtime, root: &Path, scratch: &Path) {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
    for copy in &runtime.copies {
        let dest = root.join(copy.dest.trim_start_matches('/'));
        let into_dir = copy.dest.ends_with('/') || copy.sources.len() > 1;
        for source in &copy.sources {
            let from = match copy.from.as_deref() {
                None => workspace.join(source),
                Some("build") => build_artifact(source, scratch),
                Some(stage) => {
                    panic!("COPY --from={stage}: the image test knows the build stage only")
                }
            };
            let target = if from.is_dir() || !into_dir {
                dest.clone()
            } else {
                dest.join(from.file_name().unwrap())
            };
            if from.is_dir() {
                copy_tree(&from, &target);
            } else {
                std::fs::create_dir_all(target.parent().unwrap()).unwrap();
                std::fs::copy(&from, &target).unwrap();
            }
            if let Some(owner) = copy.chown {
                chown_tree(&target, owner);
            }
        }
    }
    // The base image: the C runtime, /proc (mounted by unshare) and /tmp.
    // hydrenv execs the proxy installed next to it.
    let entry = root.join(runtime.entrypoint[0].trim_start_matches('/'));
    let binaries = [entry.clone(), entry.with_file_name("proxy")];
    for binary in &binaries {
        assert!(
            binary.is_file(),
            "the image has no {} (the ENTRYPOINT, and the proxy next to it): see its COPY destinations",
            binary.strip_prefix(root).unwrap().display()
        );
    }
    for library in binaries.iter().flat_map(|b| libraries(b)) {
        let name = library.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            BASE_LIBRARIES.contains(&name.as_str()),
            "the binaries need {name}, which the distroless cc base does not ship"
        );
        let target = root.join(library.strip_prefix("/").unwrap());
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&library, &target).unwrap();
    }
    std::fs::create_dir_all(root.join("proc")).unwrap();
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
}
