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

    public func run(_ argv: [String]) throws -> ProcessResult { try capture(argv, Spawn.Options()) }

    /// Runs `argv` to completion with these options (an environment of its own, stdin from
    /// a file) and captures its output; the options' stdout and stderr are replaced by pipes.
    public func capture(_ argv: [String], _ options: Spawn.Options) throws -> ProcessResult {
        var outPipe: [Int32] = [0, 0], errPipe: [Int32] = [0, 0]
        guard desa_pipe2(&outPipe, O_CLOEXEC) == 0, desa_pipe2(&errPipe, O_CLOEXEC) == 0 else {
            throw DesaError.system("pipe: \(errnoText())")
        }
        let pid: pid_t
        do {
            var o = options
            o.stdout = .descriptor(outPipe[1])
            o.stderr = .descriptor(errPipe[1])
            pid = try Spawn.start(argv, o)
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
        var o = Spawn.Options()
        o.stdout = .append(logFile)
        o.cwd = cwd
        return try Spawn.start(argv, o)
    }

    /// Starts `argv` without waiting: these stdout and stderr, `cwd` as its working directory when given.
    static func spawn(_ argv: [String], stdout: Int32, stderr: Int32, cwd: String? = nil) throws -> pid_t {
        var o = Spawn.Options()
        o.stdout = .descriptor(stdout)
        o.stderr = .descriptor(stderr)
        o.cwd = cwd
        return try Spawn.start(argv, o)
    }

    private func wait(_ pid: pid_t) -> Int32 { Spawn.wait(pid) }
}
