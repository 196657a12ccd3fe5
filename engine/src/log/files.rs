//! Small durable-file helpers shared by the log and the metadata stores.

use std::fs::File;

use super::power;
use std::io;
use std::path::Path;

/// Writes a small state file so that a crash leaves either the old or the new content.
pub fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        power::before_open_write(&tmp, true);
        let mut f = File::create(&tmp)?;
        f.write_all(contents)?;
        power::sync_file(&f, true)?;
    }
    power::rename(&tmp, path)?;
    if let Some(parent) = path.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

pub fn sync_dir(dir: &Path) -> io::Result<()> {
    power::sync_dir(dir)
}
