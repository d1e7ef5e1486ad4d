//! Many independent LLM calls on a backend's workers (issue 13: both cores
//! busy when a prompt is scored on many inputs).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

/// `call(i, &items[i])` for every item on `workers` OS threads, results in
/// item order; `progress(done, total)` runs on the calling thread after each.
///
/// Worker `w` takes items `w, w + workers, w + 2·workers, …` in order, so
/// which calls follow each other on a worker (and so what a local backend's
/// KV cache reuses) does not depend on timing. Each worker runs candle's
/// matmuls on a rayon pool of its own with one thread: the workers, not one
/// call's small matmuls, share the cores. With one worker (or one item) the
/// calls run in order on the calling thread, as a plain loop would.
///
/// # Errors
/// The error of the first failing item (by index), as a plain loop would
/// return: after a failure the workers still run the items before it, and
/// none after it.
pub fn map_calls<T, R, E>(
    workers: usize,
    items: &[T],
    call: impl Fn(usize, &T) -> Result<R, E> + Sync,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<R>, E>
where
    T: Sync,
    R: Send,
    E: Send,
{
    let total = items.len();
    let workers = workers.clamp(1, total.max(1));
    progress(0, total);
    if workers == 1 {
        let mut out = Vec::with_capacity(total);
        for (i, item) in items.iter().enumerate() {
            out.push(call(i, item)?);
            progress(i + 1, total);
        }
        return Ok(out);
    }
    // Lowest failing index so far.
    let failed = AtomicUsize::new(usize::MAX);
    let mut slots: Vec<Option<Result<R, E>>> = (0..total).map(|_| None).collect();
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel::<(usize, Result<R, E>)>();
        for w in 0..workers {
            let tx = tx.clone();
            let (call, failed) = (&call, &failed);
            scope.spawn(move || {
                let run = || {
                    for i in (w..total).step_by(workers) {
                        if i > failed.load(Ordering::Relaxed) {
                            break;
                        }
                        let r = call(i, &items[i]);
                        if r.is_err() {
                            failed.fetch_min(i, Ordering::Relaxed);
                        }
                        if tx.send((i, r)).is_err() {
                            break;
                        }
                    }
                };
                match rayon::ThreadPoolBuilder::new().num_threads(1).build() {
                    Ok(pool) => pool.install(run),
                    // No pool: the calls still run, on the global one.
                    Err(_) => run(),
                }
            });
        }
        drop(tx);
        let mut done = 0;
        for (i, r) in rx {
            slots[i] = Some(r);
            done += 1;
            progress(done, total);
        }
    });
    // Without a failure every item ran; with one, the failure of the lowest
    // index is the answer (later items may not have run).
    let mut out = Vec::with_capacity(total);
    let mut first_error = None;
    for slot in slots.into_iter().flatten() {
        match slot {
            Ok(r) => out.push(r),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_item_order_with_every_progress_step() {
        for workers in [1, 2, 3, 8] {
            let items: Vec<u64> = (0..10).collect();
            let mut seen = Vec::new();
            let out = map_calls(
                workers,
                &items,
                |i, x| Ok::<_, String>((i as u64, x * x)),
                &mut |d, t| seen.push((d, t)),
            )
            .unwrap();
            assert_eq!(out, items.iter().map(|&x| (x, x * x)).collect::<Vec<_>>());
            assert_eq!(seen, (0..=10).map(|d| (d, 10)).collect::<Vec<_>>());
        }
    }

    #[test]
    fn each_worker_takes_every_nth_item_in_order() {
        let items: Vec<usize> = (0..9).collect();
        let threads = map_calls(
            3,
            &items,
            |_, _| Ok::<_, ()>(std::thread::current().id()),
            &mut |_, _| {},
        )
        .unwrap();
        for i in 0..9 {
            assert_eq!(threads[i], threads[i % 3], "item {i}");
        }
        assert_ne!(threads[0], threads[1]);
        // Calls on a worker run in a one-thread pool.
        let pools = map_calls(
            2,
            &items,
            |_, _| Ok::<_, ()>(rayon::current_num_threads()),
            &mut |_, _| {},
        )
        .unwrap();
        assert!(pools.iter().all(|&n| n == 1));
    }

    #[test]
    fn the_lowest_failing_item_is_the_error() {
        let items: Vec<usize> = (0..20).collect();
        for workers in [1, 2, 4] {
            let err = map_calls(
                workers,
                &items,
                |i, _| if i == 5 || i == 6 { Err(i) } else { Ok(i) },
                &mut |_, _| {},
            )
            .unwrap_err();
            assert_eq!(err, 5, "{workers} workers");
        }
    }
}
