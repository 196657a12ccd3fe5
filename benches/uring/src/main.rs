//! tokio-uring against the shard's io-uring use (issue 23): segment file I/O three ways, in one run.
//!
//! Run: `benches/uring/run.sh` (builds this standalone crate in release, then runs it). Options
//! (environment): ROUNDS=3 CELL_SECS=0.5 CAP_MIB=256 BENCH_DATA_PARENT=dir (where the temp files
//! go; default the system temp dir, deleted at the end).
//!
//! Backends, each on its own runtime that lives for the whole run, like a shard's:
//! - `flusher-uring`: today's shard: `pwrite` on the thread, then `engine::durability::Flusher`'s
//!   io_uring backend (IORING_OP_FSYNC+DATASYNC on a ring polled by a current-thread tokio
//!   runtime through an eventfd);
//! - `flusher-blocking`: the same with the Flusher's blocking-pool backend (`fdatasync` on
//!   tokio's blocking pool);
//! - `tokio-uring`: tokio-uring 0.5's runtime, `File::write_all_at` + `sync_data`, everything
//!   through its ring.
//!
//! Write shapes: batches of 16 KiB or 1 MiB appended to 1 or 6 files (partitions); one unit is N
//! appends to one file (the files taken in turn) followed by one fdatasync of that file (group
//! commit, N = 1, 8, 64); D units in flight (1, 8, 64). Shapes whose units in flight hold more
//! than 64 MiB are skipped. Read shapes: 1 MiB reads of a 64 MiB file in the page cache, D = 1
//! and 8 in flight (`pread` on the thread for today's shard; the Flusher does no reads).
//!
//! Each cell (shape x backend) starts from empty files and runs CELL_SECS or until CAP_MIB are
//! written, then finishes its units in flight. The backends are alternated per shape per round
//! (the first one rotates), because fdatasync latency on a VM drifts minute to minute.
//!
//! Prints one progress line per cell on stderr, then a markdown table on stdout: per shape and
//! backend the medians over rounds of MB/s, appends/s, syncs/s, the p50/p99 latency of a unit
//! (N appends + their sync; one read for reads) and the process CPU seconds (user/sys, all
//! threads: the blocking pool and io_uring's kernel workers count) per GiB; and the median over
//! rounds of each backend's MB/s and p99 relative to `flusher-uring` in the same round.

use std::cell::{Cell, RefCell};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::durability::{Flusher, IoBackend};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;
const READ_FILE_BYTES: u64 = 64 * MIB as u64;
/// A shape's units in flight may hold at most this many bytes (1 MiB x 64 x 64 would be 4 GiB).
const MAX_BYTES_IN_FLIGHT: usize = 64 * MIB;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    FlusherUring,
    FlusherBlocking,
    TokioUring,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::FlusherUring => "flusher-uring",
            Backend::FlusherBlocking => "flusher-blocking",
            Backend::TokioUring => "tokio-uring",
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Shape {
    /// `n` appends of `batch` bytes to one of `files` files, then one fdatasync; `depth` in flight.
    Write {
        batch: usize,
        files: usize,
        n: usize,
        depth: usize,
    },
    /// 1 MiB reads from the page cache, `depth` in flight.
    Read { depth: usize },
}

impl Shape {
    fn label(&self) -> String {
        match *self {
            Shape::Write {
                batch,
                files,
                n,
                depth,
            } => {
                let b = if batch >= MIB {
                    format!("{}M", batch / MIB)
                } else {
                    format!("{}K", batch / KIB)
                };
                format!("write {b} f={files} N={n} D={depth}")
            }
            Shape::Read { depth } => format!("read 1M D={depth}"),
        }
    }

    fn backends(&self) -> &'static [Backend] {
        match self {
            Shape::Write { .. } => &[
                Backend::FlusherUring,
                Backend::FlusherBlocking,
                Backend::TokioUring,
            ],
            // Reads never go through the Flusher: today's shard preads on its thread.
            Shape::Read { .. } => &[Backend::FlusherUring, Backend::TokioUring],
        }
    }
}

fn shapes() -> Vec<Shape> {
    let mut out = Vec::new();
    for batch in [16 * KIB, MIB] {
        for files in [1, 6] {
            for n in [1, 8, 64] {
                for depth in [1, 8, 64] {
                    if batch * n * depth <= MAX_BYTES_IN_FLIGHT {
                        out.push(Shape::Write {
                            batch,
                            files,
                            n,
                            depth,
                        });
                    }
                }
            }
        }
    }
    out.push(Shape::Read { depth: 1 });
    out.push(Shape::Read { depth: 8 });
    out
}

/// What one cell measured.
#[derive(Debug, Default)]
struct Measured {
    bytes: u64,
    appends: u64,
    syncs: u64,
    secs: f64,
    /// Latency of each unit (N appends + sync, or one read), microseconds.
    lat_us: Vec<u64>,
    user: f64,
    sys: f64,
}

/// State shared by a cell's tasks (all on one thread).
struct Run {
    deadline: Instant,
    cap: u64,
    batch: usize,
    n: usize,
    /// Next append offset of each file.
    next_off: Vec<Cell<u64>>,
    /// Which file the next unit appends to.
    next_file: Cell<usize>,
    started: Cell<u64>,
    out: RefCell<Measured>,
}

impl Run {
    fn new(cap: u64, secs: f64, batch: usize, n: usize, files: usize) -> Rc<Self> {
        Rc::new(Run {
            deadline: Instant::now() + Duration::from_secs_f64(secs),
            cap,
            batch,
            n,
            next_off: (0..files).map(|_| Cell::new(0)).collect(),
            next_file: Cell::new(0),
            started: Cell::new(0),
            out: RefCell::new(Measured::default()),
        })
    }

    /// Claims the next unit (its file and first offset), or None once the cell is over.
    fn claim(&self) -> Option<(usize, u64)> {
        let bytes = (self.batch * self.n) as u64;
        if Instant::now() >= self.deadline || self.started.get() >= self.cap {
            return None;
        }
        self.started.set(self.started.get() + bytes);
        let f = self.next_file.get() % self.next_off.len();
        self.next_file.set(self.next_file.get() + 1);
        let off = self.next_off[f].get();
        self.next_off[f].set(off + bytes);
        Some((f, off))
    }

    fn done(&self, t0: Instant, bytes: u64, appends: u64, syncs: u64) {
        let mut o = self.out.borrow_mut();
        o.bytes += bytes;
        o.appends += appends;
        o.syncs += syncs;
        o.lat_us.push(t0.elapsed().as_micros() as u64);
    }
}

fn rusage() -> (f64, f64) {
    // SAFETY: getrusage fills the zeroed struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    (t(ru.ru_utime), t(ru.ru_stime))
}

/// The three runtimes, alive for the whole run like a shard's.
struct Runtimes {
    tokio: tokio::runtime::Runtime,
    local: tokio::task::LocalSet,
    uring_flusher: Flusher,
    blocking_flusher: Flusher,
    tokio_uring: tokio_uring::Runtime,
}

impl Runtimes {
    fn new() -> std::io::Result<Self> {
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let local = tokio::task::LocalSet::new();
        let (uring_flusher, blocking_flusher) = local.block_on(&tokio, async {
            Ok::<_, std::io::Error>((
                Flusher::new(IoBackend::IoUring)?,
                Flusher::new(IoBackend::Blocking)?,
            ))
        })?;
        // The same ring size as the Flusher's.
        let tokio_uring = tokio_uring::Runtime::new(tokio_uring::builder().entries(256))?;
        Ok(Runtimes {
            tokio,
            local,
            uring_flusher,
            blocking_flusher,
            tokio_uring,
        })
    }
}

/// Opens the cell's files, emptied and synced (untimed), as segments start.
fn fresh_files(dir: &Path, files: usize) -> std::io::Result<Vec<File>> {
    (0..files)
        .map(|i| {
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(dir.join(format!("segment-{i}.log")))?;
            f.set_len(0)?;
            f.sync_all()?;
            Ok(f)
        })
        .collect()
}

fn run_write(
    rts: &Runtimes,
    backend: Backend,
    dir: &Path,
    shape: Shape,
    secs: f64,
    cap: u64,
) -> std::io::Result<Measured> {
    let Shape::Write {
        batch,
        files,
        n,
        depth,
    } = shape
    else {
        unreachable!()
    };
    let std_files = fresh_files(dir, files)?;
    let (u0, s0) = rusage();
    let t0 = Instant::now();
    let run = Run::new(cap, secs, batch, n, files);
    match backend {
        Backend::FlusherUring | Backend::FlusherBlocking => {
            let flusher = if backend == Backend::FlusherUring {
                rts.uring_flusher.clone()
            } else {
                rts.blocking_flusher.clone()
            };
            let files: Vec<Arc<File>> = std_files.into_iter().map(Arc::new).collect();
            rts.local.block_on(&rts.tokio, async {
                let workers: Vec<_> = (0..depth)
                    .map(|w| {
                        let (run, files, flusher) = (run.clone(), files.clone(), flusher.clone());
                        tokio::task::spawn_local(async move {
                            let buf = vec![w as u8; batch];
                            while let Some((f, off)) = run.claim() {
                                let start = Instant::now();
                                for i in 0..n {
                                    // The shard's append: pwrite to the page cache, on its thread.
                                    files[f].write_all_at(&buf, off + (i * batch) as u64)?;
                                }
                                flusher.sync_all(vec![files[f].clone()]).await?;
                                run.done(start, (n * batch) as u64, n as u64, 1);
                            }
                            Ok::<_, std::io::Error>(())
                        })
                    })
                    .collect();
                for w in workers {
                    w.await.map_err(std::io::Error::other)??;
                }
                Ok::<_, std::io::Error>(())
            })?;
        }
        Backend::TokioUring => {
            let files: Rc<Vec<tokio_uring::fs::File>> = Rc::new(
                std_files
                    .into_iter()
                    .map(tokio_uring::fs::File::from_std)
                    .collect(),
            );
            rts.tokio_uring.block_on(async {
                let workers: Vec<_> = (0..depth)
                    .map(|w| {
                        let (run, files) = (run.clone(), files.clone());
                        tokio_uring::spawn(async move {
                            let mut buf = vec![w as u8; batch];
                            while let Some((f, off)) = run.claim() {
                                let start = Instant::now();
                                for i in 0..n {
                                    let (res, b) =
                                        files[f].write_all_at(buf, off + (i * batch) as u64).await;
                                    res?;
                                    buf = b;
                                }
                                files[f].sync_data().await?;
                                run.done(start, (n * batch) as u64, n as u64, 1);
                            }
                            Ok::<_, std::io::Error>(())
                        })
                    })
                    .collect();
                for w in workers {
                    w.await.map_err(std::io::Error::other)??;
                }
                Ok::<_, std::io::Error>(())
            })?;
            // Closing through drop is synchronous (close(2)), outside the ring.
            drop(files);
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let (u1, s1) = rusage();
    let mut out = Rc::try_unwrap(run)
        .ok()
        .expect("workers done")
        .out
        .into_inner();
    out.secs = secs;
    out.user = u1 - u0;
    out.sys = s1 - s0;
    Ok(out)
}

fn run_read(
    rts: &Runtimes,
    backend: Backend,
    path: &Path,
    depth: usize,
    secs: f64,
    cap: u64,
) -> std::io::Result<Measured> {
    let file = File::open(path)?;
    let (u0, s0) = rusage();
    let t0 = Instant::now();
    // One "file" whose offsets wrap around the read file.
    let run = Run::new(cap, secs, MIB, 1, 1);
    let wrap = |off: u64| off % READ_FILE_BYTES;
    match backend {
        Backend::FlusherUring | Backend::FlusherBlocking => {
            let file = Rc::new(file);
            rts.local.block_on(&rts.tokio, async {
                let workers: Vec<_> = (0..depth)
                    .map(|_| {
                        let (run, file) = (run.clone(), file.clone());
                        tokio::task::spawn_local(async move {
                            let mut buf = vec![0u8; MIB];
                            while let Some((_, off)) = run.claim() {
                                let start = Instant::now();
                                file.read_exact_at(&mut buf, wrap(off))?;
                                run.done(start, MIB as u64, 1, 0);
                            }
                            Ok::<_, std::io::Error>(())
                        })
                    })
                    .collect();
                for w in workers {
                    w.await.map_err(std::io::Error::other)??;
                }
                Ok::<_, std::io::Error>(())
            })?;
        }
        Backend::TokioUring => {
            let file = Rc::new(tokio_uring::fs::File::from_std(file));
            rts.tokio_uring.block_on(async {
                let workers: Vec<_> = (0..depth)
                    .map(|_| {
                        let (run, file) = (run.clone(), file.clone());
                        tokio_uring::spawn(async move {
                            let mut buf = vec![0u8; MIB];
                            while let Some((_, off)) = run.claim() {
                                let start = Instant::now();
                                let (res, b) = file.read_exact_at(buf, wrap(off)).await;
                                res?;
                                buf = b;
                                run.done(start, MIB as u64, 1, 0);
                            }
                            Ok::<_, std::io::Error>(())
                        })
                    })
                    .collect();
                for w in workers {
                    w.await.map_err(std::io::Error::other)??;
                }
                Ok::<_, std::io::Error>(())
            })?;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let (u1, s1) = rusage();
    let mut out = Rc::try_unwrap(run)
        .ok()
        .expect("workers done")
        .out
        .into_inner();
    out.secs = secs;
    out.user = u1 - u0;
    out.sys = s1 - s0;
    Ok(out)
}

/// The benchmark's temp directory, removed when the run ends (or fails).
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// One cell's figures, reduced.
#[derive(Clone, Copy)]
struct Figures {
    mbps: f64,
    appends: f64,
    syncs: f64,
    p50: f64,
    p99: f64,
    user_gib: f64,
    sys_gib: f64,
}

fn reduce(c: &mut Measured) -> Figures {
    c.lat_us.sort_unstable();
    let gib = c.bytes as f64 / (1u64 << 30) as f64;
    Figures {
        mbps: c.bytes as f64 / 1e6 / c.secs,
        appends: c.appends as f64 / c.secs,
        syncs: c.syncs as f64 / c.secs,
        p50: pct(&c.lat_us, 0.50),
        p99: pct(&c.lat_us, 0.99),
        user_gib: c.user / gib,
        sys_gib: c.sys / gib,
    }
}

fn main() -> std::io::Result<()> {
    let rounds: usize = env("ROUNDS", 3);
    let secs: f64 = env("CELL_SECS", 0.5);
    let cap: u64 = env::<u64>("CAP_MIB", 256) << 20;
    let parent: PathBuf = env("BENCH_DATA_PARENT", std::env::temp_dir());
    let dir = TempDir(parent.join(format!("icestream-uring-bench-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0)?;

    // The read file: written and synced once, then read once so that it sits in the page cache.
    let read_path = dir.0.join("read.log");
    {
        let f = File::create(&read_path)?;
        let chunk = vec![7u8; MIB];
        for i in 0..READ_FILE_BYTES / MIB as u64 {
            f.write_all_at(&chunk, i * MIB as u64)?;
        }
        f.sync_all()?;
        let mut buf = vec![0u8; MIB];
        for i in 0..READ_FILE_BYTES / MIB as u64 {
            f.read_exact_at(&mut buf, i * MIB as u64).ok();
        }
    }

    let rts = Runtimes::new()?;
    eprintln!(
        "rounds={rounds} cell_secs={secs} cap_mib={} dir={} flusher={}",
        cap >> 20,
        dir.0.display(),
        rts.uring_flusher.name()
    );
    let shapes = shapes();
    // results[shape][round] = figures per backend, in `Shape::backends` order.
    let mut results: Vec<Vec<Vec<Figures>>> = vec![Vec::new(); shapes.len()];
    for round in 0..rounds {
        for (si, shape) in shapes.iter().enumerate() {
            let backends = shape.backends();
            let mut figs: Vec<Option<Figures>> = vec![None; backends.len()];
            for k in 0..backends.len() {
                // Rotate which backend goes first, per shape and per round.
                let bi = (k + round + si) % backends.len();
                let backend = backends[bi];
                let mut cell = match shape {
                    Shape::Write { .. } => run_write(&rts, backend, &dir.0, *shape, secs, cap)?,
                    Shape::Read { depth } => {
                        run_read(&rts, backend, &read_path, *depth, secs, cap * 4)?
                    }
                };
                let f = reduce(&mut cell);
                eprintln!(
                    "round {round} {:<26} {:<17} {:>8.1} MB/s {:>8.0} appends/s {:>7.0} syncs/s p50 {:>7.2} ms p99 {:>7.2} ms cpu/GiB user {:.3} sys {:.3}",
                    shape.label(),
                    backend.name(),
                    f.mbps,
                    f.appends,
                    f.syncs,
                    f.p50,
                    f.p99,
                    f.user_gib,
                    f.sys_gib
                );
                figs[bi] = Some(f);
            }
            results[si].push(figs.into_iter().map(|f| f.expect("ran")).collect());
        }
    }

    println!(
        "| shape | backend | MB/s | appends/s | syncs/s | p50 ms | p99 ms | user s/GiB | sys s/GiB | MB/s vs flusher-uring | p99 vs flusher-uring |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (si, shape) in shapes.iter().enumerate() {
        for (bi, backend) in shape.backends().iter().enumerate() {
            let col =
                |g: fn(&Figures) -> f64| median(results[si].iter().map(|r| g(&r[bi])).collect());
            // Ratios within each round (same minute of the VM's disk), then their median.
            let ratio = |g: fn(&Figures) -> f64| {
                median(results[si].iter().map(|r| g(&r[bi]) / g(&r[0])).collect())
            };
            println!(
                "| {} | {} | {:.0} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
                shape.label(),
                backend.name(),
                col(|f| f.mbps),
                col(|f| f.appends),
                col(|f| f.syncs),
                col(|f| f.p50),
                col(|f| f.p99),
                col(|f| f.user_gib),
                col(|f| f.sys_gib),
                ratio(|f| f.mbps),
                ratio(|f| f.p99),
            );
        }
    }
    Ok(())
}
