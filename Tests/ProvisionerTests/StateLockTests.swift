import Foundation
import Testing
@testable import Provisioner

/// The state lock's timeout, and blocking work kept off the cooperative pool; flock
/// conflicts between two opens of the file even in one process, so no second process.
@Suite("StateLock timeout and BlockingThread")
struct StateLockTests {
    func lockPath() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("desa-lock-\(UUID().uuidString)").path
    }

    @Test("a lock held too long is a conflict naming the file and the holder's pid")
    func timesOut() throws {
        let path = lockPath()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let held = try StateLock(path: path)
        let start = ContinuousClock.now
        var waited = false
        let e = #expect(throws: DesaError.self) { try StateLock(path: path, timeout: 0.3) { waited = true } }
        #expect(ContinuousClock.now - start < .seconds(2))
        #expect(waited)
        #expect(e?.kind == .conflict)
        #expect(e?.message.contains("holds the lock \(path) (pid \(getpid())) for more than 0.3 s") == true, "\(e?.message ?? "")")
        withExtendedLifetime(held) {}
    }

    @Test("the timeout variant takes a free lock, and one released while it waits")
    func takesTheLock() throws {
        let path = lockPath()
        defer { try? FileManager.default.removeItem(atPath: path) }
        _ = try StateLock(path: path, timeout: 0)
        var held: StateLock? = try StateLock(path: path)
        // The waiter polls on a thread of its own: on the cooperative pool it could hold
        // the thread this test needs to let go of the lock.
        let got = Locked<Result<Void, Error>?>(nil)
        Thread { let r = Result { _ = try StateLock(path: path, timeout: 20) }; got.withLock { $0 = r } }.start()
        usleep(200_000)
        #expect(got.withLock { $0 } == nil, "the waiter waits while the lock is held")
        held = nil
        let deadline = Date().addingTimeInterval(20)
        while got.withLock({ $0 }) == nil, Date() < deadline { usleep(20_000) }
        #expect(throws: Never.self) { try #require(got.withLock { $0 }).get() }
        #expect(held == nil)
    }

    @Test("work on its own thread returns its value or its error")
    func returns() async throws {
        #expect(try await BlockingThread.run("test") { 42 } == 42)
        await #expect(throws: Broken.self) { try await BlockingThread.run("test") { throw Broken() } }
    }

    @Test("cancelling the wait returns at once while the work runs on")
    func cancellation() async throws {
        let finished = Locked(false)
        let task = Task {
            try await BlockingThread.run("slow") { Thread.sleep(forTimeInterval: 30); finished.withLock { $0 = true } }
        }
        try await Task.sleep(for: .milliseconds(100))
        let start = ContinuousClock.now
        task.cancel()
        await #expect(throws: CancellationError.self) { try await task.value }
        // Well before the work would end (generous: the suite's other tests load both cores).
        #expect(ContinuousClock.now - start < .seconds(10))
        #expect(finished.withLock { $0 } == false)
        // Already cancelled: the work never starts.
        let never = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return try await BlockingThread.run("never") { finished.withLock { $0 = true } }
        }
        await #expect(throws: CancellationError.self) { try await never.value }
    }
}
