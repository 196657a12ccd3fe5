//! A node's disk: its files are real (on tmpfs), its syncs are simulated. A sync takes a
//! random fraction of a millisecond of simulated time and is recorded in the node's
//! power-loss ledger (`engine::log::power`), which a power cut rewinds to; once the fault
//! says so, every sync fails with EIO.

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use engine::log::power;
use rand::{rngs::StdRng, Rng};

pub struct SimDisk {
    pub failing: Cell<bool>,
    rng: RefCell<StdRng>,
}

impl SimDisk {
    pub fn new(rng: StdRng) -> Rc<Self> {
        Rc::new(SimDisk {
            failing: Cell::new(false),
            rng: RefCell::new(rng),
        })
    }
}

impl engine::durability::SyncFiles for SimDisk {
    fn sync_all(&self, files: Vec<Arc<File>>) -> Pin<Box<dyn Future<Output = io::Result<()>>>> {
        if self.failing.get() {
            return Box::pin(async { Err(io::Error::from_raw_os_error(libc::EIO)) });
        }
        // What each sync covers is the file's length when it is submitted.
        let tokens: Vec<_> = files.iter().map(|f| power::before_sync(f)).collect();
        let took = Duration::from_micros(self.rng.borrow_mut().gen_range(50..900));
        Box::pin(async move {
            tokio::time::sleep(took).await;
            tokens.into_iter().for_each(power::after_sync);
            Ok(())
        })
    }

    fn runs_inline(&self) -> bool {
        true
    }
}
