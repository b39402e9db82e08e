//! The files an agent leaves in its artifacts folder (video, screenshots): which of them are
//! uploaded, and as what content type.
//!
//! Only regular files directly in the folder count: no symlinks (the agent could point one
//! at anything the runner can read), no subfolders, nothing else. The folder itself must be a
//! real directory, and every file is opened with `O_NOFOLLOW` and checked again once open.

use std::io;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;

use crate::redact::Redactor;

pub const MAX_ARTIFACTS: usize = 20;
pub const MAX_ARTIFACT_BYTES: u64 = 100 * 1024 * 1024;
const MAX_NAME_BYTES: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    pub name: String,
    pub path: PathBuf,
    pub size: u64,
}

/// A file left behind, and why (its name is not given: it is the agent's choice and could
/// hold anything).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skipped {
    NotRegular,
    BadName,
    TooLarge { size: u64 },
    OverLimit,
}

impl Skipped {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotRegular => "not a regular file (symlink, folder or special file)",
            Self::BadName => "name not UTF-8, too long, hidden or holding a secret value",
            Self::TooLarge { .. } => "larger than 100 MiB",
            Self::OverLimit => "more than 20 artifacts",
        }
    }
}

/// Content type by extension (case-insensitive).
pub fn content_type(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "png" => "image/png",
        "webm" => "video/webm",
        "mp4" => "video/mp4",
        "jpg" | "jpeg" => "image/jpeg",
        "json" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn acceptable_name(name: &str, redactor: &Redactor) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && !name.starts_with('.')
        && !name.chars().any(char::is_control)
        && redactor.redact(name) == name
}

/// The artifacts to upload, by name, and what was left out. A missing folder has none.
pub fn collect(dir: &Path, redactor: &Redactor) -> io::Result<(Vec<Artifact>, Vec<Skipped>)> {
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_dir() {
        return Err(io::Error::other(
            "the artifacts folder was replaced by something that is not a folder",
        ));
    }
    let mut found = Vec::new();
    let mut skipped = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        // file_type() and symlink_metadata() do not follow symlinks.
        if !entry.file_type()?.is_file() {
            skipped.push(Skipped::NotRegular);
            continue;
        }
        let Some(name) = entry
            .file_name()
            .to_str()
            .filter(|n| acceptable_name(n, redactor))
            .map(str::to_owned)
        else {
            skipped.push(Skipped::BadName);
            continue;
        };
        let size = entry.path().symlink_metadata()?.len();
        if size > MAX_ARTIFACT_BYTES {
            skipped.push(Skipped::TooLarge { size });
            continue;
        }
        found.push(Artifact {
            path: entry.path(),
            name,
            size,
        });
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    if found.len() > MAX_ARTIFACTS {
        skipped.extend(found.drain(MAX_ARTIFACTS..).map(|_| Skipped::OverLimit));
    }
    Ok((found, skipped))
}

/// Opens an artifact for upload: never through a symlink, never a FIFO that would block,
/// and only while it is still the regular file of the size that was announced.
pub async fn open_regular(path: &Path, size: u64) -> io::Result<tokio::fs::File> {
    let file = tokio::fs::OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).bits())
        .open(path)
        .await?;
    let meta = file.metadata().await?;
    if !meta.file_type().is_file() || meta.len() != size {
        return Err(io::Error::other("the artifact changed after it was listed"));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("runner-artifacts-{name}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn content_types_by_extension() {
        assert_eq!(content_type("screenshot.png"), "image/png");
        assert_eq!(content_type("VIDEO.WEBM"), "video/webm");
        assert_eq!(content_type("a.mp4"), "video/mp4");
        assert_eq!(content_type("a.jpg"), "image/jpeg");
        assert_eq!(content_type("a.jpeg"), "image/jpeg");
        assert_eq!(content_type("r.json"), "application/json");
        assert_eq!(content_type("notes.txt"), "text/plain; charset=utf-8");
        assert_eq!(content_type("trace.zip"), "application/octet-stream");
        assert_eq!(content_type("README"), "application/octet-stream");
    }

    #[test]
    fn only_regular_files_directly_inside_with_fair_names() {
        let dir = scratch("collect");
        std::fs::write(dir.join("b.png"), b"png").unwrap();
        std::fs::write(dir.join("a.webm"), b"webm!").unwrap();
        std::fs::write(dir.join(".hidden"), b"x").unwrap();
        std::fs::write(dir.join("key-s3cr3tvalue.txt"), b"x").unwrap();
        std::fs::create_dir(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub").join("deep.png"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.join("passwd.txt")).unwrap();
        let redactor = Redactor::new(["s3cr3tvalue"]);
        let (found, skipped) = collect(&dir, &redactor).unwrap();
        let names: Vec<_> = found.iter().map(|a| (a.name.as_str(), a.size)).collect();
        assert_eq!(names, [("a.webm", 5), ("b.png", 3)]);
        let mut reasons: Vec<_> = skipped.iter().map(Skipped::reason).collect();
        reasons.sort();
        assert_eq!(reasons.len(), 4, "{reasons:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn at_most_twenty_and_a_missing_folder_is_empty() {
        let dir = scratch("many");
        for i in 0..25 {
            std::fs::write(dir.join(format!("f{i:02}.txt")), b"x").unwrap();
        }
        let (found, skipped) = collect(&dir, &Redactor::default()).unwrap();
        assert_eq!(found.len(), MAX_ARTIFACTS);
        assert_eq!(found[0].name, "f00.txt");
        assert_eq!(skipped, vec![Skipped::OverLimit; 5]);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            collect(&dir, &Redactor::default()).unwrap(),
            (Vec::new(), Vec::new())
        );
    }

    #[test]
    fn a_symlinked_folder_is_refused() {
        let dir = scratch("linked");
        let link = dir.with_extension("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        assert!(collect(&link, &Redactor::default()).is_err());
        std::fs::remove_file(&link).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn open_refuses_symlinks_and_changed_files() {
        let dir = scratch("open");
        std::fs::write(dir.join("a.txt"), b"abc").unwrap();
        std::os::unix::fs::symlink(dir.join("a.txt"), dir.join("l.txt")).unwrap();
        assert!(open_regular(&dir.join("a.txt"), 3).await.is_ok());
        assert!(open_regular(&dir.join("a.txt"), 4).await.is_err());
        assert!(open_regular(&dir.join("l.txt"), 3).await.is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
