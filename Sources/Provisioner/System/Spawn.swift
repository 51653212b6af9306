import CSystemd
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// How every program desa (and its tests) starts is started: `posix_spawn` from an
/// argument vector by absolute path, never a shell; stdin from /dev/null (or a file given); stdout and stderr
/// where asked; no descriptor of ours inherited (close-on-exec or not); default signal
/// handling and an empty mask (a daemon started by the agent must not inherit its
/// blocked SIGTERM); a fixed environment unless one is given.
public enum Spawn {
    public enum Output: Sendable {
        case null
        /// A descriptor of ours, duplicated onto the child's.
        case descriptor(Int32)
        /// A file opened for appending (created 0640), for a daemon's log.
        case append(String)
    }

    public struct Options: Sendable {
        public var environment: [String] = Spawn.environment()
        public var stdout: Output = .null
        /// nil: wherever stdout goes.
        public var stderr: Output? = nil
        public var cwd: String? = nil
        /// A process group of its own, so that it and its children can be signalled whole.
        public var newProcessGroup = false
        /// A file to read stdin from (nil: /dev/null).
        public var stdin: String? = nil
        public init() {}
    }

    /// `PATH` and `LC_ALL=C`, and the caller's `TZ` if set.
    public static func environment() -> [String] {
        var env = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"]
        if let tz = ProcessInfo.processInfo.environment["TZ"] { env.append("TZ=" + tz) }
        return env
    }

    /// Starts `argv` without waiting for it; its pid.
    public static func start(_ argv: [String], _ o: Options = Options()) throws -> pid_t {
        guard let path = argv.first, path.hasPrefix("/") else {
            throw DesaError.system("programs are started by absolute path, got \(Quote.show(argv.first ?? ""))")
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, o.stdin ?? "/dev/null", O_RDONLY, 0)
        func route(_ out: Output, to fd: Int32) {
            switch out {
            case .null: posix_spawn_file_actions_addopen(&actions, fd, "/dev/null", O_WRONLY, 0)
            case .descriptor(let d): posix_spawn_file_actions_adddup2(&actions, d, fd)
            case .append(let file): posix_spawn_file_actions_addopen(&actions, fd, file, O_WRONLY | O_CREAT | O_APPEND, 0o640)
            }
        }
        route(o.stdout, to: 1)
        if let e = o.stderr { route(e, to: 2) } else { posix_spawn_file_actions_adddup2(&actions, 1, 2) }
        if let cwd = o.cwd { desa_spawn_chdir(&actions, cwd) }
        // Nothing else of ours goes to the child (descriptors without O_CLOEXEC included).
        desa_spawn_closefrom(&actions, 3)
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var all = sigset_t(), none = sigset_t()
        sigfillset(&all); sigemptyset(&none)
        posix_spawnattr_setsigdefault(&attr, &all)
        posix_spawnattr_setsigmask(&attr, &none)
        var flags = POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK
        if o.newProcessGroup {
            posix_spawnattr_setpgroup(&attr, 0)
            flags |= POSIX_SPAWN_SETPGROUP
        }
        posix_spawnattr_setflags(&attr, Int16(flags))
        let cargs = argv.map { strdup($0) } + [nil]
        defer { for p in cargs { free(p) } }
        let cenv = o.environment.map { strdup($0) } + [nil]
        defer { for p in cenv { free(p) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, path, &actions, &attr, cargs, cenv)
        guard rc == 0 else { throw DesaError.system("cannot start \(path): \(String(cString: strerror(rc)))") }
        return pid
    }

    /// A `waitpid` status as an exit status: the code, or 128 + the signal that ended it.
    public static func exitStatus(_ raw: Int32) -> Int32 {
        raw & 0x7f == 0 ? (raw >> 8) & 0xff : 128 + (raw & 0x7f)
    }

    /// Waits for `pid` to end; its exit status (-1 when it cannot be waited for).
    public static func wait(_ pid: pid_t) -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 { if errno != EINTR { return -1 } }
        return exitStatus(status)
    }
}
