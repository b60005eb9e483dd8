//! Plain scoped-thread parallelism (no runtime, no pool): the scan's work
//! is a few big, even pieces.

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
