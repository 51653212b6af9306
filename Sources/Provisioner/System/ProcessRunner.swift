import CSystemd
import Foundation
#if canImport(Glibc)
import Glibc
#endif

public struct ProcessResult: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String
    public var ok: Bool { status == 0 }
    /// stderr, or stdout when stderr is empty, trimmed: what to show a person.
    public var message: String {
        let s = stderr.trimmingCharacters(in: .whitespacesAndNewlines)
        return s.isEmpty ? stdout.trimmingCharacters(in: .whitespacesAndNewlines) : s
    }
}

/// Starts programs from an argument vector. Never a shell string.
public protocol ProcessRunning: Sendable {
    /// Runs `argv` to completion and captures its output.
    func run(_ argv: [String]) throws -> ProcessResult
    /// Runs a program that daemonizes itself: its output goes to `logFile`, not to a pipe
    /// (a daemon holding our pipe open would block us forever).
    func runDetached(_ argv: [String], logFile: String) throws -> Int32
    /// Starts a program that stays in the foreground and returns its pid without waiting
    /// (output to `logFile`, in `cwd` when given). The caller is its parent until the
    /// caller exits: `desactl sandbox start` ends within seconds and init adopts it.
    func spawnDetached(_ argv: [String], logFile: String, cwd: String?) throws -> pid_t
}

/// `posix_spawn` and `waitpid`: no shell, no signal-handling threads, stdin from /dev/null.
public struct SystemProcessRunner: ProcessRunning {
    public init() {}

    public func run(_ argv: [String]) throws -> ProcessResult {
        var outPipe: [Int32] = [0, 0], errPipe: [Int32] = [0, 0]
        guard desa_pipe2(&outPipe, O_CLOEXEC) == 0, desa_pipe2(&errPipe, O_CLOEXEC) == 0 else {
            throw DesaError.system("pipe: \(errnoText())")
        }
        let pid: pid_t
        do {
            pid = try Self.spawn(argv, stdout: outPipe[1], stderr: errPipe[1])
        } catch {
            for fd in outPipe + errPipe { close(fd) }
            throw error
        }
        close(outPipe[1]); close(errPipe[1])
        var out = [UInt8](), err = [UInt8]()
        var fds = [pollfd(fd: outPipe[0], events: Int16(POLLIN), revents: 0),
                   pollfd(fd: errPipe[0], events: Int16(POLLIN), revents: 0)]
        var open = 2
        var buf = [UInt8](repeating: 0, count: 65536)
        while open > 0 {
            if poll(&fds, nfds_t(fds.count), -1) < 0 { if errno == EINTR { continue } else { break } }
            for i in fds.indices where fds[i].fd >= 0 && fds[i].revents != 0 {
                let n = buf.withUnsafeMutableBytes { read(fds[i].fd, $0.baseAddress, $0.count) }
                if n > 0 {
                    if i == 0 { out.append(contentsOf: buf[0..<n]) } else { err.append(contentsOf: buf[0..<n]) }
                } else if n == 0 || errno != EINTR {
                    close(fds[i].fd); fds[i].fd = -1; open -= 1
                }
            }
        }
        return ProcessResult(status: wait(pid), stdout: String(decoding: out, as: UTF8.self),
                             stderr: String(decoding: err, as: UTF8.self))
    }

    public func runDetached(_ argv: [String], logFile: String) throws -> Int32 {
        let fd = open(logFile, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o640)
        guard fd >= 0 else { throw DesaError.system("cannot open \(logFile): \(errnoText())") }
        defer { close(fd) }
        return wait(try Self.spawn(argv, stdout: fd, stderr: fd))
    }

    public func spawnDetached(_ argv: [String], logFile: String, cwd: String?) throws -> pid_t {
        let fd = open(logFile, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o640)
        guard fd >= 0 else { throw DesaError.system("cannot open \(logFile): \(errnoText())") }
        defer { close(fd) }
        return try Self.spawn(argv, stdout: fd, stderr: fd, cwd: cwd)
    }

    /// Starts `argv` (by absolute path) without waiting: stdin from /dev/null, these stdout and
    /// stderr, no other descriptor of ours, default signals, a fixed environment, and `cwd`
    /// as its working directory when given.
    static func spawn(_ argv: [String], stdout: Int32, stderr: Int32, cwd: String? = nil) throws -> pid_t {
        guard let path = argv.first, path.hasPrefix("/") else {
            throw DesaError.system("programs are started by absolute path, got \(Quote.show(argv.first ?? ""))")
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, stdout, 1)
        posix_spawn_file_actions_adddup2(&actions, stderr, 2)
        if let cwd { desa_spawn_chdir(&actions, cwd) }
        // Nothing else of ours goes to the child (descriptors without O_CLOEXEC included).
        desa_spawn_closefrom(&actions, 3)
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        // The child starts with default signal handling and an empty mask.
        var all = sigset_t(), none = sigset_t()
        sigfillset(&all); sigemptyset(&none)
        posix_spawnattr_setsigdefault(&attr, &all)
        posix_spawnattr_setsigmask(&attr, &none)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
        let cargs = argv.map { strdup($0) } + [nil]
        defer { for p in cargs { free(p) } }
        var env = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"]
        if let tz = ProcessInfo.processInfo.environment["TZ"] { env.append("TZ=" + tz) }
        let cenv = env.map { strdup($0) } + [nil]
        defer { for p in cenv { free(p) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, path, &actions, &attr, cargs, cenv)
        guard rc == 0 else { throw DesaError.system("cannot start \(path): \(String(cString: strerror(rc)))") }
        return pid
    }

    private func wait(_ pid: pid_t) -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 { if errno != EINTR { return -1 } }
        if status & 0x7f == 0 { return (status >> 8) & 0xff }  // exited
        return 128 + (status & 0x7f)                            // killed by a signal
    }
}
