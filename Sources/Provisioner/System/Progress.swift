import Foundation

/// Progress of a long operation. On a terminal it draws one updating line on stderr;
/// piped, it says nothing.
public protocol ProgressReporting: Sendable {
    func begin(_ phase: String, total: Int)
    func advance(_ n: Int)
    func end()
}

public struct SilentProgress: ProgressReporting {
    public init() {}
    public func begin(_ phase: String, total: Int) {}
    public func advance(_ n: Int) {}
    public func end() {}
}

public final class TerminalProgress: ProgressReporting, @unchecked Sendable {
    private let lock = NSLock()
    private var phase = "", total = 0, done = 0, started = Date()

    public init() {}

    /// A terminal reporter when stderr is a TTY, otherwise a silent one.
    public static func forStderr() -> ProgressReporting {
        isatty(2) != 0 ? TerminalProgress() : SilentProgress()
    }

    public func begin(_ phase: String, total: Int) {
        lock.withLock { self.phase = phase; self.total = total; done = 0; started = Date() }
        draw()
    }
    public func advance(_ n: Int) { lock.withLock { done += n }; draw() }
    public func end() {
        let line = lock.withLock { String(format: "  %@ %d/%d (%.2fs)", phase, done, total, Date().timeIntervalSince(started)) }
        FileHandle.standardError.write(Data(("\r\u{1B}[K" + line + "\n").utf8))
    }
    private func draw() {
        let line = lock.withLock { "  \(phase) \(done)/\(total)" }
        FileHandle.standardError.write(Data(("\r\u{1B}[K" + line).utf8))
    }
}
