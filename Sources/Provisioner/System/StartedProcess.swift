import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A daemon desa started, as recorded the moment it started (a sandbox keeps it in
/// `DIR/run/NAME.started.json`). Only a process that matches its record is desa's to
/// signal: a pid file can name a pid reused since, and a port or a program's name belongs
/// to whoever holds it (another sandbox's nginx, the system's).
public struct StartedProcess: Codable, Equatable, Sendable {
    public var pid: Int32
    /// Field 22 of /proc/PID/stat: a pid that was reused comes with another start time.
    public var startTime: UInt64
    public var executable: String
    /// The file of this sandbox's that its command line names (its configuration), if any.
    public var argument: String?
    /// The directory it was started in, for a program whose command line names no file of
    /// the sandbox's (pebble-challtestsrv).
    public var cwd: String?

    enum CodingKeys: String, CodingKey {
        case pid, startTime = "start_time", executable, argument, cwd
    }

    /// `pid` as it runs now, if it runs `executable` and (when given) names `argument` on its
    /// command line and runs in `cwd`.
    public static func capture(pid: pid_t, executable: String, argument: String? = nil, cwd: String? = nil) -> StartedProcess? {
        guard let st = Processes.stat(of: pid), st.state != "Z", Processes.runs(pid, executable) else { return nil }
        if let argument, !Processes.commandLine(of: pid, names: argument) { return nil }
        if let cwd, Processes.cwd(of: pid) != cwd { return nil }
        return StartedProcess(pid: pid, startTime: st.startTime, executable: executable, argument: argument, cwd: cwd)
    }

    /// Whether the recorded process still runs: the same pid, start time and executable,
    /// still naming the same file.
    public var isRunning: Bool {
        Self.capture(pid: pid, executable: executable, argument: argument, cwd: cwd) == self
    }

    public static func read(_ path: String) -> StartedProcess? {
        guard !path.isEmpty, let bytes = AtomicFiles.readBytes(path) else { return nil }
        return try? JSONDecoder().decode(StartedProcess.self, from: Data(bytes))
    }

    public func write(to path: String) throws {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        try AtomicFiles.write([FileWrite(path: path, content: String(decoding: try e.encode(self), as: UTF8.self) + "\n", mode: 0o644)])
    }

    /// The other processes of this master's session that run its executable and started
    /// after it: its workers, while it runs.
    func sessionMembers() -> [pid_t] {
        Processes.pids().filter { p in
            guard p != pid, let st = Processes.stat(of: p), st.session == pid, st.startTime >= startTime, st.state != "Z" else { return false }
            return Processes.runs(p, executable)
        }
    }

    /// The workers this master left behind when it was killed outright (SIGKILL): nginx's
    /// keep its port, php-fpm's its pools' sockets, and a new master could not bind.
    ///
    /// Nothing names them: an nginx worker's title is only "nginx: worker process", and
    /// once its master is gone its parent is init. What ties them to this master is its
    /// session: the masters desa starts lead a session of their own (nginx detaches with
    /// setsid, the others run under setsid), and a worker never leaves the session it was
    /// forked in, so it keeps the master's pid as its session id after the master is gone.
    /// The kernel does not hand out a pid again while a session still uses it as its id,
    /// so while such a worker runs that pid names no other process. Once every worker has
    /// exited the pid may be reused, and a new session leader (another sandbox's master)
    /// would have workers with the same session id: so a worker also has to hold a file of
    /// this sandbox's open (under `directories`: nginx's workers keep its error log,
    /// php-fpm's their pool's socket), and to have started after the master.
    func leftovers(holdingFilesUnder directories: [String]) -> [pid_t] {
        guard !isRunning else { return [] }
        let sockets = directories.reduce(into: Set<String>()) { $0.formUnion(Processes.unixSockets(under: $1)) }
        return sessionMembers().filter { Processes.holds($0, filesUnder: directories, orSockets: sockets) }
    }

    /// Starts `argv` in a session of its own (`setsid`, not forking: its pid is the one
    /// spawned, known without a pid file) and records it once it runs `executable`.
    /// Throws, with the end of its log, if it exits first.
    static func launch(_ argv: [String], executable: String, argument: String?, cwd: String?, name: String,
                       logFile: String, record: String, runner: ProcessRunning, time: TimeSource) throws -> StartedProcess {
        let pid = try runner.spawnDetached(["/usr/bin/setsid"] + argv, logFile: logFile, cwd: cwd)
        let deadline = time.deadline(10)
        while true {
            // setsid and env run first, then exec the program in the same process.
            if let r = capture(pid: pid, executable: executable, argument: argument, cwd: cwd) {
                try r.write(to: record)
                return r
            }
            if Processes.isGone(pid) || time.now() > deadline {
                let status = Processes.reap(pid).map { "exit \($0)" } ?? "still not \(executable) after 10 s"
                throw DesaError(.checkFailed, "\(name) did not start (\(status)): \(tail(logFile))")
            }
            time.sleep(0.01)
        }
    }

    /// The last lines of a log, to quote in an error.
    static func tail(_ path: String, lines: Int = 5) -> String {
        AtomicFiles.read(path)?.split(separator: "\n").suffix(lines).joined(separator: "\n") ?? ""
    }
}
