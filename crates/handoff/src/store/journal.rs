//! Workflow run journals: the durable truth of a run's records, written
//! with group commit.
//!
//! Every workflow record ([`crate::WorkflowRecords::put_workflow_record`])
//! is one JSON line `{"file":"<step>.json","value":{…}}` appended to its
//! run's `workflows/<run>/journal.jsonl`. One writer thread owns the
//! appends: it takes every line that arrived while the previous
//! `fdatasync` was in flight, writes them, and syncs each journal it
//! touched once (and, for a journal it created, the run's directory), then
//! answers every writer of the batch. A record is durable when its batch is
//! synced; the per-step files beside the journal are views, written
//! without `fsync` while the batch syncs, and `rebuild` makes them agree
//! with the journal again after a crash.
//!
//! A crash can leave the last line cut off: a line without its newline, or
//! one that does not parse, is ignored when it is the last one (it was
//! never acknowledged); anywhere else it makes the journal corrupt.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::files::{io_err, sync_dir};
use crate::StoreError;

/// The journal's name in a run's directory.
pub(crate) const JOURNAL: &str = "journal.jsonl";

/// Most journals the writer keeps open between batches.
const OPEN_JOURNALS: usize = 64;

/// One line of a journal.
#[derive(Serialize)]
struct Line<'a> {
    /// The view's file name (`summary.json`, `<step>.json`).
    file: &'a str,
    value: &'a serde_json::Value,
}

/// One append, answered when its batch is synced.
struct Append {
    path: PathBuf,
    line: Vec<u8>,
    /// A directory to sync after the journal: the one that holds the
    /// journal's directory, when that directory was just created.
    new_dir: Option<PathBuf>,
    done: oneshot::Sender<Result<(), StoreError>>,
}

/// The handle of the store's journal writer; the thread ends when the last
/// handle is dropped.
#[derive(Clone, Debug)]
pub(crate) struct Journal {
    tx: mpsc::Sender<Append>,
}

impl Journal {
    /// Starts the writer thread.
    pub(crate) fn start() -> Result<Self, StoreError> {
        let (tx, rx) = mpsc::channel::<Append>();
        std::thread::Builder::new()
            .name("orch-journal".into())
            .spawn(move || write_batches(&rx))
            .map_err(|e| io_err("start the journal writer", Path::new(JOURNAL), e))?;
        Ok(Self { tx })
    }

    /// Appends the record `value` of view `file` to the journal at `path`
    /// and returns once it is synced, and with it `new_dir`, the directory
    /// that holds the journal's directory if that one was just created.
    pub(crate) async fn append(
        &self,
        path: PathBuf,
        file: &str,
        value: &serde_json::Value,
        new_dir: Option<PathBuf>,
    ) -> Result<(), StoreError> {
        let mut line =
            serde_json::to_vec(&Line { file, value }).map_err(|e| StoreError::Corrupt {
                path: path.clone(),
                message: e.to_string(),
            })?;
        line.push(b'\n');
        let (done, answer) = oneshot::channel();
        let stopped = || {
            io_err(
                "append",
                &path,
                std::io::Error::other("the journal writer stopped"),
            )
        };
        self.tx
            .send(Append {
                path: path.clone(),
                line,
                new_dir,
                done,
            })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// The writer: one batch per turn, everything that queued meanwhile.
fn write_batches(rx: &mpsc::Receiver<Append>) {
    let mut open: HashMap<PathBuf, File> = HashMap::new();
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        // Lines of one journal stay in their order of arrival.
        let mut order: Vec<PathBuf> = Vec::new();
        let mut by_path: HashMap<PathBuf, Vec<Append>> = HashMap::new();
        for a in batch {
            if !by_path.contains_key(&a.path) {
                order.push(a.path.clone());
            }
            by_path.entry(a.path.clone()).or_default().push(a);
        }
        for path in order {
            let appends = by_path.remove(&path).unwrap_or_default();
            let result = write_one(&mut open, &path, &appends);
            if result.is_err() {
                // Whatever state the file is in, the next batch opens it
                // afresh.
                open.remove(&path);
            }
            for a in appends {
                let _ = a.done.send(shared(&result));
            }
        }
        if open.len() > OPEN_JOURNALS {
            open.clear();
        }
    }
}

/// Writes one journal's lines of a batch and syncs it.
fn write_one(
    open: &mut HashMap<PathBuf, File>,
    path: &Path,
    appends: &[Append],
) -> Result<(), StoreError> {
    let created = if open.contains_key(path) {
        false
    } else {
        let existed = path.exists();
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| io_err("open", path, e))?;
        if existed {
            drop_cut_off_tail(&file, path)?;
        }
        open.insert(path.to_owned(), file);
        !existed
    };
    let Some(file) = open.get_mut(path) else {
        return Err(io_err("open", path, std::io::Error::other("lost")));
    };
    let bytes: Vec<u8> = appends
        .iter()
        .flat_map(|a| a.line.iter().copied())
        .collect();
    let before = file.metadata().map_err(|e| io_err("stat", path, e))?.len();
    // The new directories' entries are synced after the journal's own
    // sync, which on a journalling file system commits them too: they then
    // cost no second flush.
    let written = file
        .write_all(&bytes)
        .map_err(|e| io_err("append", path, e))
        .and_then(|()| {
            #[cfg(feature = "testing")]
            hold_before_sync(appends);
            file.sync_data().map_err(|e| io_err("fdatasync", path, e))
        })
        .and_then(|()| sync_new_dirs(path, created, appends));
    if let Err(e) = written {
        // A batch that failed (a full disk, a directory that cannot be
        // synced) is taken back: no cut-off line stays in the middle of
        // the journal for later lines to follow, and a new run's first
        // record leaves an empty journal its writer removes.
        let _ = file.set_len(before);
        return Err(e);
    }
    Ok(())
}

/// Syncs the journal's directory if the journal was `created`, and each
/// directory an append of the batch named as holding a new one.
fn sync_new_dirs(path: &Path, created: bool, appends: &[Append]) -> Result<(), StoreError> {
    if created && let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    let mut synced: Vec<&Path> = Vec::new();
    for dir in appends.iter().filter_map(|a| a.new_dir.as_deref()) {
        if !synced.contains(&dir) {
            sync_dir(dir)?;
            synced.push(dir);
        }
    }
    Ok(())
}

/// Test builds only (feature `testing`): with `ORCH_TESTING_HOLD_JOURNAL`
/// set to `VIEW:MARKER`, the writer stops for good after writing the
/// first batch holding a line of view `VIEW` (e.g. `research.json`) and
/// before syncing it, once it has created the file `MARKER`: a test kills
/// the process there, between a batch's write and its sync.
#[cfg(feature = "testing")]
fn hold_before_sync(appends: &[Append]) {
    let Ok(spec) = std::env::var("ORCH_TESTING_HOLD_JOURNAL") else {
        return;
    };
    let Some((view, marker)) = spec.split_once(':') else {
        return;
    };
    let needle = format!("{{\"file\":\"{view}\",");
    if appends
        .iter()
        .any(|a| a.line.starts_with(needle.as_bytes()))
    {
        let _ = std::fs::write(marker, b"");
        loop {
            std::thread::park();
        }
    }
}

/// Cuts a journal back to its last complete line: what a crash left of an
/// append that was never acknowledged goes, so that later lines never
/// follow a cut-off one.
fn drop_cut_off_tail(file: &File, path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::FileExt;
    let len = file.metadata().map_err(|e| io_err("stat", path, e))?.len();
    let mut end = len;
    let mut chunk = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let part = &mut chunk[..usize::try_from(end - start).unwrap_or(0)];
        file.read_exact_at(part, start)
            .map_err(|e| io_err("read", path, e))?;
        if let Some(i) = part.iter().rposition(|b| *b == b'\n') {
            end = start + i as u64 + 1;
            break;
        }
        end = start;
    }
    if end < len {
        file.set_len(end).map_err(|e| io_err("truncate", path, e))?;
    }
    Ok(())
}

/// A batch's result for each of its writers (an error is not `Clone`).
fn shared(result: &Result<(), StoreError>) -> Result<(), StoreError> {
    match result {
        Ok(()) => Ok(()),
        Err(StoreError::Io { op, path, source }) => Err(StoreError::Io {
            op,
            path: path.clone(),
            source: std::io::Error::new(source.kind(), source.to_string()),
        }),
        Err(e) => Err(StoreError::Io {
            op: "append",
            path: PathBuf::from(JOURNAL),
            source: std::io::Error::other(e.to_string()),
        }),
    }
}

/// The newest value of each view in the journal at `path` (none if there
/// is no journal), in the order the views were first written. A cut-off
/// last line is ignored; a bad line before the last is corruption.
pub(crate) fn latest(
    path: &Path,
    max_line: u64,
) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("open", path, e)),
    };
    let mut reader = BufReader::new(file);
    let mut views: Vec<(String, serde_json::Value)> = Vec::new();
    let mut at: HashMap<String, usize> = HashMap::new();
    let mut buf = Vec::new();
    let mut pending_error: Option<StoreError> = None;
    loop {
        buf.clear();
        let n = reader
            .by_ref()
            .take(max_line.saturating_add(2))
            .read_until(b'\n', &mut buf)
            .map_err(|e| io_err("read", path, e))?;
        if n == 0 {
            break;
        }
        // A bad line is only fatal if another line follows it.
        if let Some(e) = pending_error.take() {
            return Err(e);
        }
        if buf.last() != Some(&b'\n') {
            // Cut off (a crash mid-append) or longer than any record: as
            // the last line, never acknowledged; otherwise corruption.
            pending_error = Some(corrupt(path, "a line is cut off or too long"));
            if buf.len() as u64 > max_line {
                // Skip the rest of an over-long line.
                let mut rest = Vec::new();
                reader
                    .read_until(b'\n', &mut rest)
                    .map_err(|e| io_err("read", path, e))?;
            }
            continue;
        }
        match serde_json::from_slice::<OwnedLine>(&buf) {
            Ok(line) => match at.get(&line.file) {
                Some(&i) => views[i].1 = line.value,
                None => {
                    at.insert(line.file.clone(), views.len());
                    views.push((line.file, line.value));
                }
            },
            Err(e) => pending_error = Some(corrupt(path, &e.to_string())),
        }
    }
    Ok(views)
}

#[derive(Deserialize)]
struct OwnedLine {
    file: String,
    value: serde_json::Value,
}

fn corrupt(path: &Path, message: &str) -> StoreError {
    StoreError::Corrupt {
        path: path.to_owned(),
        message: message.to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn appends_are_synced_and_read_back_newest_last() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(JOURNAL);
        let j = Journal::start().unwrap();
        let mut tasks = Vec::new();
        for i in 0..50 {
            let (j, path) = (j.clone(), path.clone());
            tasks.push(tokio::spawn(async move {
                j.append(
                    path,
                    &format!("s{}.json", i % 5),
                    &serde_json::json!({ "n": i }),
                    None,
                )
                .await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        j.append(
            path.clone(),
            "s0.json",
            &serde_json::json!({ "n": 99 }),
            None,
        )
        .await
        .unwrap();
        let views = latest(&path, 1 << 20).unwrap();
        assert_eq!(views.len(), 5);
        let s0 = views.iter().find(|(f, _)| f == "s0.json").unwrap();
        assert_eq!(s0.1, serde_json::json!({ "n": 99 }));
    }

    #[test]
    fn a_cut_off_last_line_is_ignored_and_one_before_the_last_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(JOURNAL);
        std::fs::write(
            &path,
            "{\"file\":\"a.json\",\"value\":{\"n\":1}}\n{\"file\":\"a.json\",\"val",
        )
        .unwrap();
        let views = latest(&path, 1 << 20).unwrap();
        assert_eq!(
            views,
            vec![("a.json".to_owned(), serde_json::json!({ "n": 1 }))]
        );

        std::fs::write(
            &path,
            "{\"file\":\"a.json\",\"val\n{\"file\":\"a.json\",\"value\":{\"n\":1}}\n",
        )
        .unwrap();
        assert!(matches!(
            latest(&path, 1 << 20),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(
            latest(&dir.path().join("none"), 1 << 20)
                .unwrap()
                .is_empty()
        );
    }
}
