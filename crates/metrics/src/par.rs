//! Plain scoped-thread parallelism (no runtime, no pool): the scan's work
//! is a few big, even pieces; and [`Exec`], which drives store futures
//! from those threads.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

/// Runs `f` on each item, each on its own thread (inline for one item), and
/// returns the results in order.
pub(crate) fn on_threads<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    if items.len() <= 1 {
        return items.into_iter().map(f).collect();
    }
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .into_iter()
            .map(|item| s.spawn(move || f(item)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

/// `f` over `items` on up to `threads` threads (contiguous slices), in
/// order.
pub(crate) fn par_map<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    /// Below this, a thread costs more than it saves.
    const MIN_PER_THREAD: usize = 32;
    let threads = threads.min(items.len() / MIN_PER_THREAD).max(1);
    if threads == 1 {
        return items.iter().map(f).collect();
    }
    let f = &f;
    let slices: Vec<&[T]> = items.chunks(items.len().div_ceil(threads)).collect();
    let mut out = Vec::with_capacity(items.len());
    for part in on_threads(slices, |slice| slice.iter().map(f).collect::<Vec<R>>()) {
        out.extend(part);
    }
    out
}

/// Drives store futures from plain threads.
pub(crate) enum Exec {
    /// With the caller's tokio runtime.
    Tokio(tokio::runtime::Handle),
    /// By parking the thread until woken.
    Park,
}

impl Exec {
    pub(crate) fn block<F: Future>(&self, future: F) -> F::Output {
        match self {
            Self::Tokio(handle) => handle.block_on(future),
            Self::Park => park_on(future),
        }
    }
}

struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

fn park_on<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_keep_their_order() {
        let items: Vec<u32> = (0..1000).collect();
        for threads in [1, 2, 3, 7] {
            assert_eq!(
                par_map(&items, threads, |x| x * 2),
                items.iter().map(|x| x * 2).collect::<Vec<_>>()
            );
        }
        assert_eq!(on_threads(vec![3, 1, 2], |x| x + 1), [4, 2, 3]);
        assert!(on_threads(Vec::<u8>::new(), |x| x).is_empty());
    }
}
