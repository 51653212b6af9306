import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The one-writer-at-a-time lock: an exclusive `flock` on a file in the state directory,
/// held for the life of the object (and released by the kernel if the process dies).
public final class StateLock {
    private let fd: Int32
    public let path: String

    /// Takes the lock, waiting for another holder if needed; `onWait` is called once
    /// before blocking so the caller can say why it is waiting.
    public init(path: String, onWait: (() -> Void)? = nil) throws {
        self.path = path
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw DesaError.system("cannot open lock file \(path): \(errnoText())") }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            onWait?()
            while flock(fd, LOCK_EX) != 0 {
                if errno != EINTR { close(fd); throw DesaError.system("cannot lock \(path): \(errnoText())") }
            }
        }
        let pid = "\(getpid())\n"
        ftruncate(fd, 0)
        _ = pid.withCString { pwrite(fd, $0, strlen($0), 0) }
    }

    deinit { flock(fd, LOCK_UN); close(fd) }
}
