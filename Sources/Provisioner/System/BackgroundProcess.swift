import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A program desactl runs for a while and then stops (PHP's built-in server for OpenSID's
/// first run): `posix_spawn` without waiting, output to a log file, stopped with SIGTERM
/// and reaped. Never a shell.
public final class BackgroundProcess {
    public let pid: pid_t
    private var reaped = false

    public init(_ argv: [String], cwd: String, logFile: String) throws {
        let log = open(logFile, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard log >= 0 else { throw DesaError.system("cannot open \(logFile): \(errnoText())") }
        defer { close(log) }
        pid = try SystemProcessRunner.spawn(argv, stdout: log, stderr: log, cwd: cwd)
    }

    /// SIGTERM, then SIGKILL after `grace` seconds; reaps it.
    public func stop(grace: TimeInterval = 5) {
        guard !reaped else { return }
        kill(pid, SIGTERM)
        var status: Int32 = 0
        let deadline = Date().addingTimeInterval(grace)
        while waitpid(pid, &status, WNOHANG) == 0 {
            if Date() > deadline { kill(pid, SIGKILL); waitpid(pid, &status, 0); break }
            usleep(20_000)
        }
        reaped = true
    }

    deinit { stop() }
}
