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
    func takesTheLock() async throws {
        let path = lockPath()
        defer { try? FileManager.default.removeItem(atPath: path) }
        _ = try StateLock(path: path, timeout: 0)
        var held: StateLock? = try StateLock(path: path)
        let waiter = Task.detached { _ = try StateLock(path: path, timeout: 10) }
        try await Task.sleep(for: .milliseconds(200))
        held = nil
        try await waiter.value
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
            try await BlockingThread.run("slow") { Thread.sleep(forTimeInterval: 2); finished.withLock { $0 = true } }
        }
        try await Task.sleep(for: .milliseconds(100))
        let start = ContinuousClock.now
        task.cancel()
        await #expect(throws: CancellationError.self) { try await task.value }
        #expect(ContinuousClock.now - start < .milliseconds(500))
        #expect(finished.withLock { $0 } == false)
        // Already cancelled: the work never starts.
        let never = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return try await BlockingThread.run("never") { finished.withLock { $0 = true } }
        }
        await #expect(throws: CancellationError.self) { try await never.value }
    }
}
