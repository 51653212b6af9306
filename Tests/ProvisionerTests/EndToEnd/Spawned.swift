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
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        if let logFile {
            posix_spawn_file_actions_addopen(&actions, 1, logFile, O_WRONLY | O_CREAT | O_APPEND, 0o640)
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
        } else {
            posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
            posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        }
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var all = sigset_t(), none = sigset_t()
        sigfillset(&all); sigemptyset(&none)
        posix_spawnattr_setsigdefault(&attr, &all)
        posix_spawnattr_setsigmask(&attr, &none)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
        let cargs = argv.map { strdup($0) } + [nil]
        defer { for p in cargs { free(p) } }
        let cenv = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for p in cenv { free(p) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, argv[0], &actions, &attr, cargs, cenv)
        guard rc == 0 else { throw DesaError.system("cannot start \(argv[0]): \(String(cString: strerror(rc)))") }
        self.pid = pid
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
        status = raw & 0x7f == 0 ? (raw >> 8) & 0xff : 128 + (raw & 0x7f)
        return status
    }
}
