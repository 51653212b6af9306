import Foundation

/// Runs blocking work (a flock, processes, HTTP probes, the database) on a thread of its
/// own, so it never holds one of the few threads of Swift's cooperative pool.
///
/// Cancelling the awaiting task stops the wait at once, with `CancellationError`; the
/// work itself cannot be interrupted and runs on, abandoned, until it returns (its result
/// is dropped) or the process exits. Callers that abandon work holding a lock therefore
/// exit soon after; a round that finishes releases what it holds as usual.
public enum BlockingThread {
    public static func run<T: Sendable>(_ name: String, _ work: @escaping @Sendable () throws -> T) async throws -> T {
        let waiter = Waiter<T>()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<T, Error>) in
                guard waiter.wait(c) else { return }
                let thread = Thread { waiter.resume(Result { try work() }) }
                thread.name = name
                // As much stack as the main thread has, where this work used to run.
                thread.stackSize = 8 << 20
                thread.start()
            }
        } onCancel: {
            waiter.cancel()
        }
    }

    /// The continuation, resumed exactly once: by the work or by cancellation, whichever
    /// comes first (cancellation may even come before the continuation exists).
    private final class Waiter<T: Sendable>: @unchecked Sendable {
        private let lock = NSLock()
        private var continuation: CheckedContinuation<T, Error>?
        private var cancelled = false

        /// False when cancelled already: the continuation was resumed and no work should start.
        func wait(_ c: CheckedContinuation<T, Error>) -> Bool {
            lock.lock()
            if cancelled {
                lock.unlock()
                c.resume(throwing: CancellationError())
                return false
            }
            continuation = c
            lock.unlock()
            return true
        }

        func resume(_ result: Result<T, Error>) {
            lock.lock()
            let c = continuation
            continuation = nil
            lock.unlock()
            c?.resume(with: result)
        }

        func cancel() {
            lock.lock()
            cancelled = true
            lock.unlock()
            resume(.failure(CancellationError()))
        }
    }
}
