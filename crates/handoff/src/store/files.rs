//! File primitives of [`FsStore`](super::FsStore): reads that never follow a
//! symlink and never read past a cap, atomic replace-by-rename, locked
//! appends, and directory listings that skip everything that is not ours.
//!
//! Every function here is blocking and small; the async layer in `fs.rs`
//! decides what runs inline and what goes to the blocking pool.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::store::{LedgerEvent, LedgerEventKind, LedgerRange, LedgerRead, StoreError};
use crate::{RunId, validate_id};

/// Longest ledger line read; a longer one is reported as a bad line and
/// skipped without being buffered (a hostile or broken writer cannot make
/// `read_ledger` allocate gigabytes for one line).
pub(crate) const MAX_LEDGER_LINE: usize = 1024 * 1024;

pub(crate) fn io_err(op: &'static str, path: &Path, source: io::Error) -> StoreError {
    StoreError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

fn not_a_file(op: &'static str, path: &Path) -> StoreError {
    io_err(
        op,
        path,
        io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"),
    )
}

/// Maps an `open` error: `ELOOP` (from `O_NOFOLLOW`) means the last
/// component is a symlink.
fn open_err(op: &'static str, path: &Path, e: io::Error) -> StoreError {
    if e.raw_os_error() == Some(libc::ELOOP) {
        StoreError::Symlink {
            path: path.to_owned(),
        }
    } else {
        io_err(op, path, e)
    }
}

/// Opens `path` read-only without following a final symlink. `O_NONBLOCK`
/// keeps a FIFO planted in the store from blocking the open; it has no
/// effect on regular files. `Ok(None)` if the file does not exist.
fn open_read(path: &Path) -> Result<Option<File>, StoreError> {
    match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(open_err("open", path, e)),
    }
}

/// Reads a whole regular file of at most `cap` bytes.
///
/// - missing file: `Ok(None)`;
/// - symlink: [`StoreError::Symlink`] (never followed);
/// - not a regular file (directory, FIFO, device): [`StoreError::Io`];
/// - larger than `cap`: [`StoreError::TooLarge`], decided from the opened
///   file's metadata before reading, and at most `cap + 1` bytes are ever
///   read even if the file grows meanwhile.
pub(crate) fn read_capped(path: &Path, cap: u64) -> Result<Option<Vec<u8>>, StoreError> {
    let Some(file) = open_read(path)? else {
        return Ok(None);
    };
    let meta = file.metadata().map_err(|e| io_err("stat", path, e))?;
    if !meta.is_file() {
        return Err(not_a_file("read", path));
    }
    let too_large = |size| StoreError::TooLarge {
        path: path.to_owned(),
        size,
        cap,
    };
    if meta.len() > cap {
        return Err(too_large(meta.len()));
    }
    // `meta.len() <= cap`, and the cap is a small configured number.
    let mut buf = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    (&file)
        .take(cap.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(|e| io_err("read", path, e))?;
    let read = buf.len() as u64;
    if read > cap {
        // It grew past the cap between the stat and the read.
        return Err(too_large(read));
    }
    Ok(Some(buf))
}

/// How [`write_atomic`] puts the temp file in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Publish {
    /// `rename`, replacing whatever is at the target.
    Replace,
    /// Only if the target does not exist, atomically:
    /// `renameat2(RENAME_NOREPLACE)`, or `link` + `unlink` of the temp file
    /// on a file system without it. Never check-then-rename.
    NoReplace,
    /// `rename`, replacing, with neither the file nor the directory synced:
    /// for a view whose durable truth is elsewhere (a run's journal). A
    /// crash may leave the old view or none; never a torn one.
    ReplaceView,
}

/// What [`write_atomic`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Written {
    /// The file is in place.
    Done(PathBuf),
    /// [`Publish::NoReplace`] found the target taken; nothing was written
    /// (the temp file is gone).
    Taken(PathBuf),
}

/// Writes `bytes` to `dir/name` atomically: a temp file `.<name>.tmp-<pid>-<n>`
/// in the same directory (a leading dot, so the watcher and listings ignore
/// it), `sync_all`, then into place as `publish` says, fsync the directory.
/// On error (or a taken target) the temp file is removed and the target is
/// untouched.
pub(crate) fn write_atomic(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    counter: u64,
    publish: Publish,
) -> Result<Written, StoreError> {
    let target = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp-{}-{counter}", std::process::id()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .map_err(|e| open_err("create", &tmp, e))?;
        file.write_all(bytes)
            .map_err(|e| io_err("write", &tmp, e))?;
        if publish != Publish::ReplaceView {
            file.sync_all().map_err(|e| io_err("fsync", &tmp, e))?;
        }
        drop(file);
        match publish {
            Publish::Replace | Publish::ReplaceView => fs::rename(&tmp, &target)
                .map(|()| true)
                .map_err(|e| io_err("rename into place", &target, e)),
            Publish::NoReplace => publish_no_replace(&tmp, &target),
        }
    })();
    match result {
        Ok(true) => {}
        Ok(false) => {
            let _ = fs::remove_file(&tmp);
            return Ok(Written::Taken(target));
        }
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    }
    if publish != Publish::ReplaceView {
        sync_dir(dir)?;
    }
    Ok(Written::Done(target))
}

/// Moves `tmp` to `target` unless `target` exists: `Ok(true)` if it moved,
/// `Ok(false)` if `target` was taken (then `tmp` is left for the caller).
fn publish_no_replace(tmp: &Path, target: &Path) -> Result<bool, StoreError> {
    use rustix::io::Errno;
    let renamed = rustix::fs::renameat_with(
        rustix::fs::CWD,
        tmp,
        rustix::fs::CWD,
        target,
        rustix::fs::RenameFlags::NOREPLACE,
    );
    match renamed {
        Ok(()) => return Ok(true),
        Err(Errno::EXIST) => return Ok(false),
        // The file system (or kernel) cannot rename without replacing.
        Err(Errno::INVAL | Errno::NOSYS | Errno::NOTSUP) => {}
        Err(e) => {
            return Err(io_err(
                "rename into place",
                target,
                io::Error::from_raw_os_error(e.raw_os_error()),
            ));
        }
    }
    link_no_replace(tmp, target)
}

/// The fallback of [`publish_no_replace`]: a hard link fails with `EEXIST`
/// if the name is taken, atomically too; then the temp name is removed.
fn link_no_replace(tmp: &Path, target: &Path) -> Result<bool, StoreError> {
    match fs::hard_link(tmp, target) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(io_err("link into place", target, e)),
    }
    if let Err(e) = fs::remove_file(tmp) {
        // Published all the same; only a hidden temp file is left behind.
        tracing::warn!(path = %tmp.display(), error = %e, "could not remove a temp file");
    }
    Ok(true)
}

/// Makes a directory entry change (create, rename) durable. File systems
/// that cannot fsync a directory (`EINVAL`) are tolerated.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    let result = File::open(dir).and_then(|d| d.sync_all());
    match result {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
        other => other.map_err(|e| io_err("fsync", dir, e)),
    }
}

/// Creates `dir` if missing and checks that it is a real directory, not a
/// symlink to one. Returns whether it was created.
pub(crate) fn ensure_dir(dir: &Path) -> Result<bool, StoreError> {
    let created = match fs::create_dir(dir) {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
        Err(e) => return Err(io_err("create directory", dir, e)),
    };
    check_dir(dir)?;
    Ok(created)
}

/// `Ok(true)` if `dir` is a real directory, `Ok(false)` if it does not
/// exist; a symlink or a non-directory is an error.
pub(crate) fn check_dir(dir: &Path) -> Result<bool, StoreError> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.file_type().is_symlink() => Err(StoreError::Symlink {
            path: dir.to_owned(),
        }),
        Ok(m) if m.is_dir() => Ok(true),
        Ok(_) => Err(io_err(
            "open directory",
            dir,
            io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err("stat", dir, e)),
    }
}

/// Moves `path` aside to `<path>.rejected-<n>` (first free `n`) and returns
/// where it went; `Ok(None)` if there was nothing to move. A symlink is
/// moved as a link (`rename` never follows it).
///
/// The free name is found with `lstat` and then taken with `rename`, which
/// would replace a file created in between: only two quarantines of the
/// same key racing each other (plus a fresh write between them) could lose
/// one of the rejected copies. Taking the name with `link` instead would
/// open a worse window (unlinking a fresh handoff written meanwhile).
pub(crate) fn quarantine(path: &Path) -> Result<Option<PathBuf>, StoreError> {
    match fs::symlink_metadata(path) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("stat", path, e)),
    }
    let mut base = path.as_os_str().to_owned();
    base.push(".rejected-");
    for n in 1..=u32::MAX {
        let mut name = base.clone();
        name.push(n.to_string());
        let candidate = PathBuf::from(name);
        match fs::symlink_metadata(&candidate) {
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("stat", &candidate, e)),
        }
        match fs::rename(path, &candidate) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("quarantine", path, e)),
        }
        if let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
        return Ok(Some(candidate));
    }
    Err(io_err(
        "quarantine",
        path,
        io::Error::new(io::ErrorKind::AlreadyExists, "no free .rejected-N name"),
    ))
}

/// What a directory listing keeps.
#[derive(Clone, Copy)]
pub(crate) enum Entries {
    /// Regular files `<id>.json`; yields the ids.
    JsonFiles,
    /// Real directories named by a valid id.
    Dirs,
}

/// Lists `dir`, keeping only entries whose name is a valid id (plus
/// `.json` for files), never hidden or temp files, never symlinks. A
/// missing directory lists as empty. Sorted.
pub(crate) fn list_ids(dir: &Path, what: Entries) -> Result<Vec<String>, StoreError> {
    let mut ids = list_ids_unordered(dir, what)?;
    ids.sort_unstable();
    Ok(ids)
}

/// [`list_ids`] in directory order.
pub(crate) fn list_ids_unordered(dir: &Path, what: Entries) -> Result<Vec<String>, StoreError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("list", dir, e)),
    };
    let mut ids = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_err("list", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let id = match what {
            Entries::JsonFiles => match name.strip_suffix(".json") {
                Some(stem) => stem,
                None => continue,
            },
            Entries::Dirs => name,
        };
        if validate_id(id).is_err() {
            continue;
        }
        // `DirEntry::file_type` does not follow symlinks.
        let Ok(ty) = entry.file_type() else { continue };
        let keep = match what {
            Entries::JsonFiles => ty.is_file(),
            Entries::Dirs => ty.is_dir(),
        };
        if keep {
            ids.push(id.to_owned());
        }
    }
    Ok(ids)
}

/// Appends one line (which must end in `\n`) to `path` under an exclusive
/// `flock`, in a single `write_all`. The lock makes appends from several
/// processes (each with its own open file description) land whole even
/// where `O_APPEND` alone does not promise it (short writes, NFS).
///
/// If the file does not end in a newline (a writer died mid-line, or power
/// was lost), the line is preceded by one: the torn line stays a bad line
/// for the reader, and this event is not glued onto it.
pub(crate) fn append_locked(path: &Path, line: &[u8]) -> Result<(), StoreError> {
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| open_err("open", path, e))?;
    let meta = file.metadata().map_err(|e| io_err("stat", path, e))?;
    if !meta.is_file() {
        return Err(not_a_file("append", path));
    }
    file.lock().map_err(|e| io_err("lock", path, e))?;
    // The size under the lock is where this line will land.
    let len = file.metadata().map_err(|e| io_err("stat", path, e))?.len();
    let mut last = [b'\n'];
    if len > 0 {
        file.read_exact_at(&mut last, len - 1)
            .map_err(|e| io_err("read", path, e))?;
    }
    let result = if last[0] == b'\n' {
        (&file).write_all(line)
    } else {
        let mut healed = Vec::with_capacity(line.len() + 1);
        healed.push(b'\n');
        healed.extend_from_slice(line);
        (&file).write_all(&healed)
    };
    result.map_err(|e| io_err("append", path, e))?;
    // Closing the file releases the lock.
    Ok(())
}

/// Reads a whole regular file without a size cap (the ledger, which grows
/// with the store); never follows a symlink. A missing file reads as empty.
pub(crate) fn read_whole(path: &Path) -> Result<Vec<u8>, StoreError> {
    let Some(file) = open_read(path)? else {
        return Ok(Vec::new());
    };
    let meta = file.metadata().map_err(|e| io_err("stat", path, e))?;
    if !meta.is_file() {
        return Err(not_a_file("read", path));
    }
    // One allocation of the right size; the file may still grow meanwhile.
    let mut buf = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0).saturating_add(1));
    (&file)
        .read_to_end(&mut buf)
        .map_err(|e| io_err("read", path, e))?;
    Ok(buf)
}

/// Reads at most `max_len` bytes of the file at `path` from `start` on,
/// and its length (a missing file is empty); never follows a symlink.
pub(crate) fn read_range(path: &Path, start: u64, max_len: u64) -> Result<LedgerRange, StoreError> {
    let Some(file) = open_read(path)? else {
        return Ok(LedgerRange::default());
    };
    let meta = file.metadata().map_err(|e| io_err("stat", path, e))?;
    if !meta.is_file() {
        return Err(not_a_file("read", path));
    }
    let len = meta.len();
    let want = max_len.min(len.saturating_sub(start));
    let mut bytes = Vec::with_capacity(usize::try_from(want).unwrap_or(0));
    if want > 0 {
        use std::io::{Seek, SeekFrom};
        let mut file = file;
        file.seek(SeekFrom::Start(start))
            .map_err(|e| io_err("seek", path, e))?;
        file.take(want)
            .read_to_end(&mut bytes)
            .map_err(|e| io_err("read", path, e))?;
    }
    Ok(LedgerRange { bytes, len })
}

/// Reads a JSON-lines ledger. Lines that do not parse (a torn last line, a
/// foreign writer, non-UTF-8, longer than [`MAX_LEDGER_LINE`]) go to
/// `bad_lines`; blank lines are ignored. A missing ledger is empty.
pub(crate) fn read_ledger(path: &Path) -> Result<LedgerRead, StoreError> {
    read_ledger_tail(path, u64::MAX, None)
}

/// The lines of the ledger at `path` in its last `max_bytes` bytes: from
/// the first whole line there (a line cut by the start is left out); with
/// `holding`, only the lines that hold those bytes (the others are not
/// parsed). Line numbers in `bad_lines` count from that first line.
pub(crate) fn read_ledger_tail(
    path: &Path,
    max_bytes: u64,
    holding: Option<&[u8]>,
) -> Result<LedgerRead, StoreError> {
    let finder = holding.map(memchr::memmem::Finder::new);
    use std::io::{Seek, SeekFrom};
    let Some(mut file) = open_read(path)? else {
        return Ok(LedgerRead::default());
    };
    let meta = file.metadata().map_err(|e| io_err("stat", path, e))?;
    if !meta.is_file() {
        return Err(not_a_file("read", path));
    }
    let start = meta.len().saturating_sub(max_bytes);
    if start > 0 {
        file.seek(SeekFrom::Start(start - 1))
            .map_err(|e| io_err("seek", path, e))?;
    }
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    if start > 0 {
        // From the byte before the tail: a newline there means the tail
        // starts with a whole line.
        reader
            .skip_until(b'\n')
            .map_err(|e| io_err("read", path, e))?;
    }
    let mut out = LedgerRead::default();
    let mut line = Vec::new();
    let mut number = 0usize;
    loop {
        line.clear();
        let n = (&mut reader)
            .take(MAX_LEDGER_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|e| io_err("read", path, e))?;
        if n == 0 {
            break;
        }
        number += 1;
        let terminated = line.last() == Some(&b'\n');
        if !terminated && line.len() > MAX_LEDGER_LINE {
            reader
                .skip_until(b'\n')
                .map_err(|e| io_err("read", path, e))?;
            out.bad_lines
                .push((number, format!("line longer than {MAX_LEDGER_LINE} bytes")));
            continue;
        }
        let text = line.trim_ascii();
        if text.is_empty() || finder.as_ref().is_some_and(|f| f.find(text).is_none()) {
            continue;
        }
        match serde_json::from_slice::<LedgerEvent>(text) {
            Ok(event) => out.events.push(event),
            Err(e) => out.bad_lines.push((number, e.to_string())),
        }
    }
    Ok(out)
}

/// How much of the ledger [`find_dispatched`] reads at a time.
const SCAN_CHUNK: usize = 1 << 20;

/// The newest `dispatched` line of `run_id` in the ledger at `path`, read
/// backwards in [`SCAN_CHUNK`] pieces: the id's bytes (quoted, as JSON
/// writes it) are searched with `memchr::memmem`, and only the lines that
/// hold them are parsed. A run dispatched recently is found after reading
/// the ledger's tail; a run never dispatched costs one pass over the file
/// at memory speed. Lines longer than [`MAX_LEDGER_LINE`] are skipped, as
/// [`read_ledger`] skips them; lines that do not parse are not matches. A
/// missing ledger has no lines.
pub(crate) fn find_dispatched(
    path: &Path,
    run_id: &RunId,
) -> Result<Option<LedgerEvent>, StoreError> {
    find_dispatched_by(path, run_id, SCAN_CHUNK)
}

/// [`find_dispatched`] reading `chunk` bytes at a time (tests use tiny
/// chunks to cut lines everywhere).
pub(crate) fn find_dispatched_by(
    path: &Path,
    run_id: &RunId,
    chunk_size: usize,
) -> Result<Option<LedgerEvent>, StoreError> {
    let chunk_size = chunk_size.max(1);
    let Some(file) = open_read(path)? else {
        return Ok(None);
    };
    let meta = file.metadata().map_err(|e| io_err("stat", path, e))?;
    if !meta.is_file() {
        return Err(not_a_file("read", path));
    }
    let needle = format!("\"{run_id}\"");
    let finder = memchr::memmem::FinderRev::new(needle.as_bytes());
    let judge = |line: &[u8]| -> Option<LedgerEvent> {
        if line.len() > MAX_LEDGER_LINE || finder.rfind(line).is_none() {
            return None;
        }
        serde_json::from_slice::<LedgerEvent>(line.trim_ascii())
            .ok()
            .filter(|e| e.event == LedgerEventKind::Dispatched && e.run_id.as_ref() == Some(run_id))
    };
    // Everything from `end` on has been searched, except `tail`: the end
    // of a line whose start lies before `end` (without its newline), or
    // `None` once such a line is known to be longer than a ledger line.
    let mut end = meta.len();
    let mut tail: Option<Vec<u8>> = Some(Vec::new());
    let mut buf = vec![0u8; chunk_size];
    while end > 0 {
        let start = end.saturating_sub(chunk_size as u64);
        // `end - start <= chunk_size`, so it fits a usize.
        let len = usize::try_from(end - start).unwrap_or(chunk_size);
        let chunk = &mut buf[..len];
        file.read_exact_at(chunk, start)
            .map_err(|e| io_err("read", path, e))?;
        end = start;
        // Where the first line that starts inside this chunk begins.
        let first = match memchr::memchr(b'\n', chunk) {
            _ if start == 0 => 0,
            Some(i) => i + 1,
            None => {
                // The cut line spans the whole chunk.
                tail = tail
                    .filter(|t| t.len() + len <= MAX_LEDGER_LINE)
                    .map(|t| [&chunk[..], &t].concat());
                continue;
            }
        };
        // The cut line starts after the chunk's last newline.
        let last = memchr::memrchr(b'\n', &chunk[first..]).map_or(first, |i| first + i + 1);
        if let Some(t) = &tail
            && t.len() + (len - last) <= MAX_LEDGER_LINE
            && let Some(event) = judge(&[&chunk[last..], t].concat())
        {
            return Ok(Some(event));
        }
        // Whole lines in between, newest first; only those that hold the
        // needle are looked at.
        let body = &chunk[first..last];
        let mut to = body.len();
        while let Some(at) = finder.rfind(&body[..to]) {
            let from = memchr::memrchr(b'\n', &body[..at]).map_or(0, |i| i + 1);
            let upto = memchr::memchr(b'\n', &body[at..]).map_or(body.len(), |i| at + i);
            if let Some(event) = judge(&body[from..upto]) {
                return Ok(Some(event));
            }
            to = from;
        }
        tail = Some(chunk[..first.saturating_sub(1)].to_vec());
    }
    Ok(None)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn tmp() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    #[test]
    fn a_ledger_tail_holds_only_whole_lines() {
        let dir = tmp();
        let path = dir.path().join("ledger.jsonl");
        let line = |n: u32| {
            format!(
                "{{\"ts\":\"2026-12-08T00:00:0{n}Z\",\"event\":\"dispatched\",\"runId\":\"r-{n}\",\"agent\":\"webster\"}}\n"
            )
        };
        let text: String = (1..=4).map(line).collect();
        fs::write(&path, &text).unwrap();
        let ids = |max: u64| -> Vec<String> {
            let read = read_ledger_tail(&path, max, None).unwrap();
            assert!(read.bad_lines.is_empty(), "{:?}", read.bad_lines);
            read.events
                .iter()
                .map(|e| e.run_id.as_ref().unwrap().to_string())
                .collect()
        };
        let one = line(4).len() as u64;
        assert_eq!(ids(u64::MAX), ["r-1", "r-2", "r-3", "r-4"]);
        assert_eq!(ids(text.len() as u64), ["r-1", "r-2", "r-3", "r-4"]);
        // Exactly the last line; one byte less cuts it; one more reaches
        // into the line before, which is left out.
        assert_eq!(ids(one), ["r-4"]);
        assert_eq!(ids(one - 1), Vec::<String>::new());
        assert_eq!(ids(one + 1), ["r-4"]);
        assert_eq!(ids(2 * one), ["r-3", "r-4"]);
        assert_eq!(ids(0), Vec::<String>::new());
        // Only the lines that hold the bytes asked for.
        let held = read_ledger_tail(&path, u64::MAX, Some(b"\"runId\":\"r-3\"")).unwrap();
        assert_eq!(held.events.len(), 1);
        assert_eq!(held.events[0].run_id.as_ref().unwrap().as_str(), "r-3");
        assert!(
            read_ledger_tail(&dir.path().join("none.jsonl"), 10, None)
                .unwrap()
                .events
                .is_empty()
        );
    }

    #[test]
    fn failed_atomic_write_leaves_nothing_behind() {
        let dir = tmp();
        // The target is a non-empty directory: the rename must fail.
        let target = dir.path().join("x.json");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("keep"), b"1").unwrap();
        let err = write_atomic(dir.path(), "x.json", b"{}", 7, Publish::Replace).unwrap_err();
        assert!(
            matches!(&err, StoreError::Io { op: "rename into place", path, .. } if *path == target),
            "{err:?}"
        );
        let mut names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["x.json"]);
    }

    #[test]
    fn no_replace_publishes_once_and_leaves_no_temp_file() {
        let dir = tmp();
        let d = dir.path();
        let first = write_atomic(d, "x.json", b"first", 1, Publish::NoReplace).unwrap();
        assert_eq!(first, Written::Done(d.join("x.json")));
        let second = write_atomic(d, "x.json", b"second", 2, Publish::NoReplace).unwrap();
        assert_eq!(second, Written::Taken(d.join("x.json")));
        assert_eq!(fs::read(d.join("x.json")).unwrap(), b"first");
        // The fallback for file systems without RENAME_NOREPLACE.
        fs::write(d.join(".t1"), b"linked").unwrap();
        assert!(link_no_replace(&d.join(".t1"), &d.join("y.json")).unwrap());
        fs::write(d.join(".t2"), b"late").unwrap();
        assert!(!link_no_replace(&d.join(".t2"), &d.join("y.json")).unwrap());
        assert_eq!(fs::read(d.join("y.json")).unwrap(), b"linked");
        fs::remove_file(d.join(".t2")).unwrap();
        let mut names: Vec<_> = fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["x.json", "y.json"]);
        // Replace still replaces.
        write_atomic(d, "x.json", b"third", 3, Publish::Replace).unwrap();
        assert_eq!(fs::read(d.join("x.json")).unwrap(), b"third");
    }

    #[test]
    fn capped_read_checks_size_before_reading() {
        let dir = tmp();
        let path = dir.path().join("big.json");
        let file = File::create(&path).unwrap();
        // Sparse: reading it all would take seconds and 5 GiB of memory.
        file.set_len(5 << 30).unwrap();
        let err = read_capped(&path, 1024).unwrap_err();
        assert!(
            matches!(err, StoreError::TooLarge { size, cap: 1024, .. } if size == 5 << 30),
            "{err:?}"
        );
        assert!(
            read_capped(&dir.path().join("missing"), 10)
                .unwrap()
                .is_none()
        );
        fs::write(&path, b"12345").unwrap();
        assert_eq!(
            read_capped(&path, 5).unwrap().as_deref(),
            Some(&b"12345"[..])
        );
        assert!(matches!(
            read_capped(&path, 4),
            Err(StoreError::TooLarge { size: 5, .. })
        ));
    }

    #[test]
    fn capped_read_refuses_symlinks_fifos_and_dirs() {
        let dir = tmp();
        let link = dir.path().join("l.json");
        std::os::unix::fs::symlink("/etc/passwd", &link).unwrap();
        assert!(matches!(
            read_capped(&link, 1 << 20),
            Err(StoreError::Symlink { .. })
        ));
        let sub = dir.path().join("d.json");
        fs::create_dir(&sub).unwrap();
        assert!(matches!(
            read_capped(&sub, 1 << 20),
            Err(StoreError::Io { op: "read", .. })
        ));
        let fifo = dir.path().join("f.json");
        let status = std::process::Command::new("mkfifo").arg(&fifo).status();
        if status.is_ok_and(|s| s.success()) {
            // Must neither block on open nor read.
            assert!(matches!(
                read_capped(&fifo, 1 << 20),
                Err(StoreError::Io { op: "read", .. })
            ));
        }
    }

    #[test]
    fn listing_keeps_only_valid_regular_json_files() {
        let dir = tmp();
        let d = dir.path();
        for name in [
            "b.json",
            "a.json",
            ".a.json.tmp-1-2",
            "c.txt",
            "x.json.rejected-1",
        ] {
            fs::write(d.join(name), b"{}").unwrap();
        }
        fs::create_dir(d.join("dir.json")).unwrap();
        std::os::unix::fs::symlink(d.join("a.json"), d.join("link.json")).unwrap();
        fs::create_dir(d.join("run1")).unwrap();
        assert_eq!(list_ids(d, Entries::JsonFiles).unwrap(), ["a", "b"]);
        // Any directory with a valid name, `dir.json` included.
        assert_eq!(list_ids(d, Entries::Dirs).unwrap(), ["dir.json", "run1"]);
        assert!(list_ids(&d.join("nope"), Entries::Dirs).unwrap().is_empty());
    }

    #[test]
    fn whole_reads_refuse_symlinks_and_dirs_and_read_missing_as_empty() {
        let dir = tmp();
        let path = dir.path().join("ledger.jsonl");
        assert!(read_whole(&path).unwrap().is_empty());
        fs::write(&path, b"{\"a\":1}\n{torn").unwrap();
        assert_eq!(read_whole(&path).unwrap(), b"{\"a\":1}\n{torn");
        let link = dir.path().join("link.jsonl");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(matches!(read_whole(&link), Err(StoreError::Symlink { .. })));
        let sub = dir.path().join("d.jsonl");
        fs::create_dir(&sub).unwrap();
        assert!(matches!(
            read_whole(&sub),
            Err(StoreError::Io { op: "read", .. })
        ));
    }

    #[test]
    fn a_range_reads_what_is_there_and_the_whole_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.jsonl");
        assert_eq!(read_range(&path, 0, 10).unwrap(), LedgerRange::default());
        std::fs::write(&path, b"0123456789").unwrap();
        let r = read_range(&path, 3, 4).unwrap();
        assert_eq!((r.bytes.as_slice(), r.len), (&b"3456"[..], 10));
        let r = read_range(&path, 8, 100).unwrap();
        assert_eq!((r.bytes.as_slice(), r.len), (&b"89"[..], 10));
        // Past the end: nothing, and the length says so.
        let r = read_range(&path, 50, 5).unwrap();
        assert_eq!((r.bytes.len(), r.len), (0, 10));
        // A symlink is refused, as for every read of the store.
        std::os::unix::fs::symlink(&path, dir.path().join("link")).unwrap();
        assert!(read_range(&dir.path().join("link"), 0, 5).is_err());
    }

    #[test]
    fn ledger_lines_too_long_are_skipped_not_buffered() {
        let dir = tmp();
        let path = dir.path().join("ledger.jsonl");
        let good = br#"{"ts":"2026-01-01T00:00:00Z","event":"acked"}"#;
        let mut bytes = Vec::new();
        bytes.extend_from_slice(good);
        bytes.push(b'\n');
        bytes.extend(std::iter::repeat_n(b'x', MAX_LEDGER_LINE + 10));
        bytes.extend_from_slice(b"\n\n   \n");
        bytes.extend_from_slice(good);
        bytes.push(b'\n');
        bytes.extend_from_slice(b"\xff\xfe\n");
        fs::write(&path, &bytes).unwrap();
        let read = read_ledger(&path).unwrap();
        assert_eq!(read.events.len(), 2);
        let lines: Vec<usize> = read.bad_lines.iter().map(|(n, _)| *n).collect();
        assert_eq!(lines, [2, 6]);
    }
}
