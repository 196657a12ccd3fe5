//! Simulated power loss, for tests only: a sync ledger of what the disk would keep.
//!
//! `kill -9` keeps the page cache, so a crash test passes even with every fsync removed. When
//! `serve --simulate-power-loss-dir DIR` is given, the broker's file operations report to a
//! ledger kept as an append-only journal in `DIR/journal` (outside the data directory):
//!
//! * opening a file for writing records its length then (what is on disk is durable: a power
//!   cut was applied before the broker started) or, if the open creates it, a new directory
//!   entry; `O_TRUNC` and `set_len` shrink what is durable;
//! * a completed fsync/fdatasync (blocking or io_uring, see `durability.rs`) records the length
//!   the file had when the sync was submitted;
//! * creating a file or directory and renaming one record a directory entry change, durable
//!   once that directory is fsynced; a rename over an existing file first copies the old file
//!   to `DIR/backups/` so that undoing the rename can put it back.
//!
//! Removals are taken as durable at once (a power cut may well keep them), and writes inside the
//! synced length are not modelled (the log only appends; state files are replaced by rename).
//!
//! After the broker is killed, `icestream debug power-cut --ledger DIR --data-dir D` (see
//! [`apply_power_cut`]) rewinds `D` to what a power cut would have left: unsynced directory
//! changes are undone, newest first (created entries deleted, renames reversed), and every file
//! is truncated to its last synced length. The journal is then emptied for the next run.
//!
//! A simulation records each simulated broker's data directory to its own ledger
//! ([`record_under`]) and rewinds it with torn writes ([`apply_power_cut_with`]).
//!
//! Without a ledger every hook is one relaxed load of a flag.
//!
//! The same module holds the unsafe, test-only switch `--unsafe-skip-fsync-for-tests`, which
//! makes the group commit acknowledge without syncing, to prove the power-cut test can fail.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

struct Ledger {
    dir: PathBuf,
    /// The files it records: those under this directory, or every file (`None`).
    root: Option<PathBuf>,
    journal: Mutex<File>,
    backups: AtomicU64,
}

/// The ledgers recording: the broker's one (`serve --simulate-power-loss-dir`), or a
/// simulation's, one per simulated broker and each over its own data directory.
static LEDGERS: RwLock<Vec<Arc<Ledger>>> = RwLock::new(Vec::new());
/// Whether any ledger is recording: the one load every hook costs when none is.
static ANY: AtomicBool = AtomicBool::new(false);
static SKIP_FSYNC: AtomicBool = AtomicBool::new(false);

const JOURNAL: &str = "journal";
const BACKUPS: &str = "backups";

fn open_ledger(dir: &Path, root: Option<PathBuf>) -> io::Result<Arc<Ledger>> {
    fs::create_dir_all(dir.join(BACKUPS))?;
    let dir = fs::canonicalize(dir)?;
    let journal = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(JOURNAL))?;
    let n = fs::read_dir(dir.join(BACKUPS))?.count() as u64;
    Ok(Arc::new(Ledger {
        dir,
        root,
        journal: Mutex::new(journal),
        backups: AtomicU64::new(n),
    }))
}

fn register(l: Arc<Ledger>) {
    let mut all = LEDGERS.write().unwrap_or_else(|e| e.into_inner());
    all.push(l);
    ANY.store(true, Ordering::Relaxed);
}

/// Starts recording every file operation to the journal in `dir` (created if needed). Once
/// per process.
pub fn enable(dir: &Path) -> io::Result<()> {
    let all = LEDGERS.read().unwrap_or_else(|e| e.into_inner());
    if all.iter().any(|l| l.root.is_none()) {
        return Err(io::Error::other("the power-loss ledger is already enabled"));
    }
    drop(all);
    register(open_ledger(dir, None)?);
    Ok(())
}

/// Records the operations on files under `root` to the journal in `dir` until the returned
/// guard is dropped: a simulated broker's disk, which [`apply_power_cut`] rewinds.
pub fn record_under(dir: &Path, root: &Path) -> io::Result<Recording> {
    let root = fs::canonicalize(root)?;
    let l = open_ledger(dir, Some(root))?;
    register(l.clone());
    Ok(Recording(l))
}

/// Stops its ledger's recording when dropped.
pub struct Recording(Arc<Ledger>);

impl Drop for Recording {
    fn drop(&mut self) {
        let mut all = LEDGERS.write().unwrap_or_else(|e| e.into_inner());
        all.retain(|l| !Arc::ptr_eq(l, &self.0));
        ANY.store(!all.is_empty(), Ordering::Relaxed);
    }
}

pub fn enabled() -> bool {
    ANY.load(Ordering::Relaxed)
}

/// The ledger recording `path`, if any.
fn ledger_for(path: &Path) -> Option<Arc<Ledger>> {
    if !enabled() {
        return None;
    }
    let all = LEDGERS.read().unwrap_or_else(|e| e.into_inner());
    all.iter()
        .find(|l| l.root.as_ref().is_none_or(|r| path.starts_with(r)))
        .cloned()
}

/// UNSAFE, tests only: the group commit acknowledges appends without syncing them.
pub fn set_skip_fsync(skip: bool) {
    SKIP_FSYNC.store(skip, Ordering::Relaxed);
}

pub fn skip_fsync() -> bool {
    SKIP_FSYNC.load(Ordering::Relaxed)
}

/// An absolute path whose parent is canonical, so journal lines name files consistently.
fn abs(path: &Path) -> PathBuf {
    let p = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    match (p.parent(), p.file_name()) {
        (Some(parent), Some(name)) => fs::canonicalize(parent).map(|c| c.join(name)).unwrap_or(p),
        _ => p,
    }
}

/// Appends `line` to the journal of the ledger recording `path`.
fn record(path: &Path, line: String) {
    if let Some(l) = ledger_for(path) {
        let mut j = l.journal.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = j.write_all(line.as_bytes()) {
            tracing::error!(error = %e, "cannot write the power-loss journal");
        }
    }
}

fn show(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Call before opening `path` for writing (maybe creating it, maybe with `O_TRUNC`).
pub fn before_open_write(path: &Path, truncate: bool) {
    if !enabled() {
        return;
    }
    let p = abs(path);
    match fs::metadata(&p) {
        Ok(_) if truncate => record(&p, format!("T\t0\t{}\n", show(&p))),
        Ok(m) => record(&p, format!("B\t{}\t{}\n", m.len(), show(&p))),
        Err(_) => record(&p, format!("C\t{}\n", show(&p))),
    }
}

/// Call after shrinking the file at `path` to `len`.
pub fn truncated(path: &Path, len: u64) {
    if enabled() {
        let p = abs(path);
        record(&p, format!("T\t{len}\t{}\n", show(&p)));
    }
}

/// What a sync will cover: the file's path and its length when the sync was submitted.
pub struct SyncToken(Option<(PathBuf, u64)>);

/// Call just before submitting an fsync/fdatasync of `file`.
pub fn before_sync(file: &File) -> SyncToken {
    if !enabled() {
        return SyncToken(None);
    }
    let link = fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()));
    let len = file.metadata().map(|m| m.len());
    match (link, len) {
        (Ok(p), Ok(len)) if !p.to_string_lossy().ends_with(" (deleted)") => {
            SyncToken(Some((p, len)))
        }
        _ => SyncToken(None),
    }
}

/// Call once the sync `token` was taken for completed successfully.
pub fn after_sync(token: SyncToken) {
    if let Some((p, len)) = token.0 {
        record(&p, format!("S\t{len}\t{}\n", show(&p)));
    }
}

/// `fdatasync` (or `fsync` when `all`) reported to the ledger.
pub fn sync_file(file: &File, all: bool) -> io::Result<()> {
    super::failpoint::check_sync(file)?;
    let t = before_sync(file);
    if all {
        file.sync_all()?;
    } else {
        file.sync_data()?;
    }
    after_sync(t);
    Ok(())
}

/// fsyncs a directory, making its entry changes durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()?;
    if enabled() {
        let d = fs::canonicalize(dir)?;
        record(&d, format!("D\t{}\n", show(&d)));
    }
    Ok(())
}

/// Creates `dir` and any missing parents, fsyncing the parent of each directory created, so
/// that a new directory survives a power cut.
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut cur = Some(dir);
    while let Some(d) = cur {
        if d.as_os_str().is_empty() || d.is_dir() {
            break;
        }
        missing.push(d.to_path_buf());
        cur = d.parent();
    }
    for d in missing.into_iter().rev() {
        if enabled() {
            let p = abs(&d);
            record(&p, format!("C\t{}\n", show(&p)));
        }
        match fs::create_dir(&d) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
        let parent = match d.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        sync_dir(&parent)?;
    }
    Ok(())
}

/// `rename(from, to)`, reported to the ledger (which keeps a copy of a replaced `to`).
pub fn rename(from: &Path, to: &Path) -> io::Result<()> {
    let t = if enabled() { Some(abs(to)) } else { None };
    if let Some(l) = t.as_deref().and_then(ledger_for) {
        let (f, t) = (abs(from), abs(to));
        let backup = if t.is_file() {
            let b = l.dir.join(BACKUPS).join(format!(
                "{}-{}",
                std::process::id(),
                l.backups.fetch_add(1, Ordering::Relaxed)
            ));
            fs::copy(&t, &b)?;
            show(&b)
        } else {
            "-".to_string()
        };
        record(&t, format!("R\t{}\t{}\t{backup}\n", show(&f), show(&t)));
    }
    fs::rename(from, to)
}

/// `remove_file`, reported to the ledger (removals count as durable at once).
pub fn remove_file(path: &Path) -> io::Result<()> {
    let p = enabled().then(|| abs(path));
    fs::remove_file(path)?;
    if let Some(p) = p {
        record(&p, format!("X\t{}\n", show(&p)));
    }
    Ok(())
}

/// What [`apply_power_cut`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PowerCut {
    pub entries_undone: usize,
    pub files_truncated: usize,
    pub bytes_lost: u64,
    /// One line per change made.
    pub changes: Vec<String>,
}

enum Pending {
    Create(PathBuf),
    Rename {
        from: PathBuf,
        to: PathBuf,
        backup: Option<PathBuf>,
        old_limit: Option<u64>,
    },
}

impl Pending {
    fn dir(&self) -> Option<&Path> {
        match self {
            Pending::Create(p) => p.parent(),
            Pending::Rename { to, .. } => to.parent(),
        }
    }
}

fn remove_under(files: &mut HashMap<PathBuf, u64>, root: &Path) {
    files.retain(|p, _| !p.starts_with(root));
}

/// Rewinds `data_dir` to what a power cut at the moment of the last journal line would leave
/// (see the module docs), then empties the journal. The broker must not be running.
pub fn apply_power_cut(ledger: &Path, data_dir: &Path) -> io::Result<PowerCut> {
    apply_power_cut_with(ledger, data_dir, &mut |_, synced, _| Torn {
        keep: synced,
        zeroed: None,
    })
}

/// What a power cut leaves of a file's unsynced tail: its first `keep` bytes, with the range
/// `zeroed` (if any) never written (pages reach the disk in any order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Torn {
    pub keep: u64,
    pub zeroed: Option<(u64, u64)>,
}

/// [`apply_power_cut`], where `tear(path, synced, len)` decides what is left of each file
/// longer than its synced length (a simulation's torn writes); files are visited in path
/// order, so a seeded `tear` decides the same on every run.
pub fn apply_power_cut_with(
    ledger: &Path,
    data_dir: &Path,
    tear: &mut dyn FnMut(&Path, u64, u64) -> Torn,
) -> io::Result<PowerCut> {
    let ledger = fs::canonicalize(ledger)?;
    let data = fs::canonicalize(data_dir)?;
    let text = fs::read_to_string(ledger.join(JOURNAL))?;
    let mut files: HashMap<PathBuf, u64> = HashMap::new();
    let mut pending: Vec<Pending> = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let num = |s: &str| s.parse::<u64>().ok();
        match f.as_slice() {
            ["C", p] => {
                let p = PathBuf::from(p);
                remove_under(&mut files, &p);
                files.insert(p.clone(), 0);
                pending.push(Pending::Create(p));
            }
            ["B", len, p] => {
                if let Some(len) = num(len) {
                    files.entry(PathBuf::from(p)).or_insert(len);
                }
            }
            ["T", len, p] => {
                if let Some(len) = num(len) {
                    let l = files.entry(PathBuf::from(p)).or_insert(len);
                    *l = (*l).min(len);
                }
            }
            ["S", len, p] => {
                if let Some(len) = num(len) {
                    let l = files.entry(PathBuf::from(p)).or_insert(len);
                    *l = (*l).max(len);
                }
            }
            ["D", d] => {
                let d = Path::new(d);
                pending.retain(|op| op.dir() != Some(d));
            }
            ["R", from, to, backup] => {
                let (from, to) = (PathBuf::from(from), PathBuf::from(to));
                let old_limit = files.remove(&to);
                if let Some(l) = files.remove(&from) {
                    files.insert(to.clone(), l);
                }
                pending.push(Pending::Rename {
                    from,
                    to,
                    backup: (*backup != "-").then(|| PathBuf::from(backup)),
                    old_limit,
                });
            }
            ["X", p] => remove_under(&mut files, Path::new(p)),
            // A line torn by the kill: nothing after it was written either.
            _ => break,
        }
    }
    let mut cut = PowerCut::default();
    for op in pending.into_iter().rev() {
        match op {
            Pending::Create(p) => {
                if !p.starts_with(&data) {
                    continue;
                }
                let r = if p.is_dir() {
                    fs::remove_dir_all(&p)
                } else {
                    fs::remove_file(&p)
                };
                if r.is_ok() {
                    cut.entries_undone += 1;
                    cut.changes
                        .push(format!("removed unsynced entry {}", p.display()));
                }
                remove_under(&mut files, &p);
            }
            Pending::Rename {
                from,
                to,
                backup,
                old_limit,
            } => {
                if !to.starts_with(&data) || !to.exists() {
                    continue;
                }
                fs::rename(&to, &from)?;
                cut.entries_undone += 1;
                cut.changes.push(format!(
                    "undid unsynced rename {} -> {}",
                    from.display(),
                    to.display()
                ));
                if let Some(l) = files.remove(&to) {
                    files.insert(from, l);
                }
                if let Some(b) = backup {
                    fs::copy(&b, &to)?;
                    if let Some(l) = old_limit {
                        files.insert(to, l);
                    }
                }
            }
        }
    }
    let mut files: Vec<(PathBuf, u64)> = files.into_iter().collect();
    files.sort();
    for (p, limit) in files {
        if !p.starts_with(&data) {
            continue;
        }
        let Ok(m) = fs::symlink_metadata(&p) else {
            continue;
        };
        if m.is_file() && m.len() > limit {
            let torn = tear(&p, limit, m.len());
            let keep = torn.keep.clamp(limit, m.len());
            let f = OpenOptions::new().write(true).open(&p)?;
            f.set_len(keep)?;
            if let Some((from, to)) = torn.zeroed {
                let (from, to) = (from.max(limit), to.min(keep));
                if from < to {
                    use std::os::unix::fs::FileExt;
                    f.write_all_at(&vec![0u8; (to - from) as usize], from)?;
                    cut.changes
                        .push(format!("zeroed bytes {from}..{to} of {}", p.display()));
                }
            }
            cut.files_truncated += 1;
            cut.bytes_lost += m.len() - keep;
            cut.changes.push(format!(
                "truncated {} from {} to {keep} (synced {limit})",
                p.display(),
                m.len()
            ));
        }
    }
    File::create(ledger.join(JOURNAL))?;
    for e in fs::read_dir(ledger.join(BACKUPS))? {
        fs::remove_file(e?.path())?;
    }
    Ok(cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rewind from a hand-written journal (enabling the global ledger would record
    /// every other test in this process too).
    #[test]
    fn power_cut_undoes_unsynced_entries_and_truncates_to_synced_lengths() {
        let root = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(root.path()).unwrap();
        let (ledger, data) = (root.join("ledger"), root.join("data"));
        fs::create_dir_all(ledger.join(BACKUPS)).unwrap();
        let part = data.join("t").join("0");
        fs::create_dir_all(&part).unwrap();
        let p = |n: &str| part.join(n);
        let s = |p: &Path| show(p);
        // Pre-existing, appended to, synced at 5: keeps 5 bytes.
        fs::write(p("old.log"), b"0123456789").unwrap();
        // Created and synced at 4 in a synced directory, then appended to: keeps 4.
        fs::write(p("new.log"), b"abcdefgh").unwrap();
        // Created, never synced, directory synced: empty.
        fs::write(p("idx"), b"xxxx").unwrap();
        // State file replaced by an unsynced rename: the old content comes back.
        fs::write(p("state"), b"new").unwrap();
        fs::write(ledger.join(BACKUPS).join("0"), b"old").unwrap();
        // Created after the last directory sync: gone.
        fs::write(p("late.log"), b"late").unwrap();
        // A directory created and never synced in its parent: gone with its files.
        fs::create_dir_all(data.join("u").join("0")).unwrap();
        fs::write(data.join("u").join("0").join("a.log"), b"aaaa").unwrap();
        let journal = [
            format!("B\t5\t{}", s(&p("old.log"))),
            format!("S\t5\t{}", s(&p("old.log"))),
            format!("C\t{}", s(&p("new.log"))),
            format!("S\t4\t{}", s(&p("new.log"))),
            format!("C\t{}", s(&p("idx"))),
            format!("D\t{}", s(&part)),
            format!("C\t{}", s(&p("state.tmp"))),
            format!("S\t3\t{}", s(&p("state.tmp"))),
            format!(
                "R\t{}\t{}\t{}",
                s(&p("state.tmp")),
                s(&p("state")),
                s(&ledger.join(BACKUPS).join("0"))
            ),
            format!("C\t{}", s(&p("late.log"))),
            format!("C\t{}", s(&data.join("u"))),
            format!("C\t{}", s(&data.join("u").join("0"))),
            format!("D\t{}", s(&data.join("u"))),
            format!("C\t{}", s(&data.join("u").join("0").join("a.log"))),
            format!("S\t4\t{}", s(&data.join("u").join("0").join("a.log"))),
            "S\t9".to_string(), // torn last line
        ];
        fs::write(ledger.join(JOURNAL), journal.join("\n")).unwrap();
        let cut = apply_power_cut(&ledger, &data).unwrap();
        assert_eq!(fs::read(p("old.log")).unwrap(), b"01234");
        assert_eq!(fs::read(p("new.log")).unwrap(), b"abcd");
        assert_eq!(fs::read(p("idx")).unwrap(), b"");
        assert_eq!(fs::read(p("state")).unwrap(), b"old");
        assert!(!p("state.tmp").exists());
        assert!(!p("late.log").exists());
        assert!(!data.join("u").exists());
        // u/0/a.log, u, late.log, the state rename, state.tmp
        assert_eq!(cut.entries_undone, 5);
        assert_eq!(cut.files_truncated, 3);
        assert_eq!(fs::read(ledger.join(JOURNAL)).unwrap(), b"");
    }
}
