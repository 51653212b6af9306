import Foundation
@testable import Provisioner

/// A background process for tests: `posix_spawn`, then `waitpid(WNOHANG)` to learn that it
/// ended. Not Foundation's `Process`: on Linux it learns of a child's exit when a socket the
/// child holds is closed, and a daemon started meanwhile by a test running beside this one
/// (nginx, php-fpm, through desactl) inherits that socket and keeps it open for ever:
/// `waitUntilExit()` then never returns, with the child long a zombie.
final class Spawned {
    let pid: pid_t
    private var status: Int32?

    /// Starts `argv` with exactly `environment`, stdin on /dev/null, stdout and stderr on
    /// /dev/null or appended to `logFile`.
    init(_ argv: [String], environment: [String: String], logFile: String? = nil) throws {
        var o = Spawn.Options()
        o.environment = environment.map { "\($0.key)=\($0.value)" }
        o.stdout = logFile.map { .append($0) } ?? .null
        pid = try Spawn.start(argv, o)
    }

    var isRunning: Bool { poll() == nil }

    /// The exit status (128 + N when killed by signal N) once it ended; nil while it runs.
    var exitStatus: Int32? { poll() }

    /// Waits at most `seconds` for it to end; its exit status, or nil if it still runs.
    func wait(_ seconds: Double) -> Int32? {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if let s = poll() { return s }
            usleep(20_000)
        }
        return poll()
    }

    func signal(_ sig: Int32) { if isRunning { kill(pid, sig) } }

    /// SIGKILL if it still runs, and reap it.
    func stop() {
        guard isRunning else { return }
        kill(pid, SIGKILL)
        _ = wait(5)
    }

    private func poll() -> Int32? {
        if let status { return status }
        var raw: Int32 = 0
        let r = waitpid(pid, &raw, WNOHANG)
        guard r == pid else { return nil }
        status = Spawn.exitStatus(raw)
        return status
    }
}
