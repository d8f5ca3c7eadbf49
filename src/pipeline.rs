//! A producer thread feeding this one through a short queue: restore and regenerate embed on
//! one thread while the database writes on the other. This owns the parts that are easy to get
//! wrong: the producer stops when the consumer fails; every item queued before a producer
//! error is consumed first; and the consumer's error wins over a producer failure that only
//! followed from it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, SyncSender};

use color_eyre::eyre::{bail, eyre};
use color_eyre::Result;

/// Items the producer may run ahead: it works on the next while this one is consumed.
const SLACK: usize = 2;

/// The producer's end of the queue.
pub struct Feed<'a, T> {
    sender: SyncSender<Result<T>>,
    stop: &'a AtomicBool,
}

impl<T> Feed<'_, T> {
    /// Whether the consumer has stopped: the producer should stop too.
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Queues `item`, waiting while the queue is full; fails once the consumer has stopped.
    pub fn send(&self, item: T) -> Result<()> {
        self.sender.send(Ok(item)).map_err(|_| eyre!("stopped"))
    }
}

/// Runs `produce` on a thread of its own and `consume` here, on every item in order.
pub fn run<T: Send>(
    produce: impl FnOnce(&Feed<'_, T>) -> Result<()> + Send,
    mut consume: impl FnMut(T) -> Result<()>,
) -> Result<()> {
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let (sender, receiver) = mpsc::sync_channel::<Result<T>>(SLACK);
        let stop = &stop;
        let producer = scope.spawn(move || {
            let feed = Feed { sender, stop };
            if let Err(report) = produce(&feed) {
                if !feed.stopped() {
                    let _ = feed.sender.send(Err(report));
                }
            }
        });
        let result = receiver.iter().try_for_each(|message| consume(message?));
        if result.is_err() {
            stop.store(true, Ordering::SeqCst);
        }
        drop(receiver);
        let panicked = producer.join().is_err();
        result?;
        if panicked {
            bail!("the embedding thread panicked");
        }
        Ok(())
    })
}
