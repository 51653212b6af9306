import CSystemd
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
        guard let path = argv.first, path.hasPrefix("/") else { throw DesaError.system("programs are started by absolute path") }
        let log = open(logFile, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard log >= 0 else { throw DesaError.system("cannot open \(logFile): \(errnoText())") }
        defer { close(log) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, log, 1)
        posix_spawn_file_actions_adddup2(&actions, log, 2)
        desa_spawn_chdir(&actions, cwd)
        desa_spawn_closefrom(&actions, 3)
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
        let env: [String] = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"]
        let cenv = env.map { strdup($0) } + [nil]
        defer { for p in cenv { free(p) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, path, &actions, &attr, cargs, cenv)
        guard rc == 0 else { throw DesaError.system("cannot start \(path): \(String(cString: strerror(rc)))") }
        self.pid = pid
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
