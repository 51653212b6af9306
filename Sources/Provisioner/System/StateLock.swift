import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The one-writer-at-a-time lock: an exclusive `flock` on a file in the state directory,
/// held for the life of the object (and released by the kernel if the process dies).
/// The file holds the pid of its last holder, so a caller that waits can name it.
public final class StateLock {
    private let fd: Int32
    public let path: String

    /// Takes the lock, waiting for another holder if needed; `onWait` is called once
    /// before waiting so the caller can say why it is waiting. With a `timeout` (seconds)
    /// the wait polls every 50 ms and, past the timeout, throws a `.conflict` DesaError
    /// naming the file and the holder's pid; without one it waits for ever.
    public init(path: String, timeout: TimeInterval? = nil, onWait: (() -> Void)? = nil) throws {
        self.path = path
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw DesaError.system("cannot open lock file \(path): \(errnoText())") }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            onWait?()
            if let timeout {
                try wait(timeout: timeout)
            } else {
                while flock(fd, LOCK_EX) != 0 {
                    if errno != EINTR { close(fd); throw DesaError.system("cannot lock \(path): \(errnoText())") }
                }
            }
        }
        let pid = "\(getpid())\n"
        ftruncate(fd, 0)
        _ = pid.withCString { pwrite(fd, $0, strlen($0), 0) }
    }

    private func wait(timeout: TimeInterval) throws {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: .milliseconds(Int64((max(0, timeout) * 1000).rounded())))
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            if errno != EWOULDBLOCK && errno != EINTR {
                let why = errnoText()
                close(fd)
                throw DesaError.system("cannot lock \(path): \(why)")
            }
            if clock.now >= deadline {
                let pid = Self.holder(fd)
                close(fd)
                let seconds = timeout == timeout.rounded() ? "\(Int(timeout))" : "\(timeout)"
                let who = pid.map { "pid \($0)" } ?? "pid unknown"
                let hint = pid.map { "see what that process does (ps -p \($0))" } ?? "see which process has it open (fuser \(path))"
                throw DesaError(.conflict, "another desactl or desa-agent holds the lock \(path) (\(who)) for more than \(seconds) s; "
                    + "it may be a long apply: try again when it ends, or \(hint)")
            }
            usleep(50_000)
        }
    }

    /// The pid the holder wrote into the file, if it wrote one.
    private static func holder(_ fd: Int32) -> Int32? {
        var buf = [UInt8](repeating: 0, count: 32)
        let n = pread(fd, &buf, buf.count, 0)
        guard n > 0 else { return nil }
        return Int32(String(decoding: buf[0..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
    }

    deinit { flock(fd, LOCK_UN); close(fd) }
}
