import CSystemd
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What runs on the machine, read from /proc: a tenant's processes, and whether a
/// daemon's pid is really that daemon.
public enum Processes {
    static func pids() -> [pid_t] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { pid_t($0) }
    }

    /// Real, effective and saved UID of a process, from /proc/PID/status (none for a zombie:
    /// it runs nothing and only its parent can make it go).
    static func uids(of pid: pid_t) -> [Int] {
        guard let text = AtomicFiles.read("/proc/\(pid)/status"), !text.contains("\nState:\tZ"),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("Uid:") }) else { return [] }
        return line.split(whereSeparator: { $0 == "\t" || $0 == " " }).dropFirst().prefix(3).compactMap { Int($0) }
    }

    /// How many processes run with each of `uids` (real, effective or saved), in one pass over /proc.
    public static func counts(uids wanted: Set<Int>) -> [Int: Int] {
        var out: [Int: Int] = [:]
        for p in pids() {
            if let u = Set(uids(of: p)).intersection(wanted).first { out[u, default: 0] += 1 }
        }
        return out
    }

    public static func pids(ofUID uid: Int) -> [pid_t] { pids().filter { uids(of: $0).contains(uid) } }

    /// Ends every process of `uid`, forks included: SIGKILL from that UID to everything it
    /// may signal, repeated until none is left or `timeout` passes. Returns how many remain.
    public static func killAll(uid: Int, gid: Int, timeout: TimeInterval, time: TimeSource = .system) throws -> Int {
        guard uid >= 1000, gid >= 1000 else { throw DesaError.system("refusing to kill the processes of system UID \(uid)") }
        let deadline = time.deadline(timeout)
        while true {
            let left = pids(ofUID: uid)
            if left.isEmpty { return 0 }
            if time.now() > deadline { return left.count }
            guard desa_kill_all_as(UInt32(uid), UInt32(gid)) == 0 else {
                throw DesaError.system("cannot signal the processes of uid \(uid)")
            }
            time.sleep(0.01)
        }
    }

    /// The executable of a process (`/usr/sbin/nginx`, or with ` (deleted)` after an upgrade).
    public static func exe(of pid: pid_t) -> String? {
        try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/exe")
    }

    /// True when `pid` runs and is `executable`: a pid file can name a reused pid.
    public static func isAlive(pid: pid_t, executable: String) -> Bool {
        guard pid > 0, kill(pid, 0) == 0, let e = exe(of: pid) else { return false }
        return e == executable || e == executable + " (deleted)"
    }

    public static func parent(of pid: pid_t) -> pid_t? {
        guard let stat = AtomicFiles.read("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        return fields.count > 1 ? pid_t(fields[1]) : nil
    }

    /// Processes of `executable` holding a listening TCP socket on `port`: an nginx
    /// master killed with SIGKILL leaves its workers running, and they keep the port.
    public static func listeners(port: UInt16, executable: String) -> [pid_t] {
        holding(tcpListeners(port: port), executable: executable)
    }

    /// Processes of `executable` holding a Unix socket under `directory`: the workers of
    /// a php-fpm master killed with SIGKILL keep its pools' sockets, and a new master
    /// refuses to start ("Another FPM instance seems to already listen").
    public static func unixListeners(in directory: String, executable: String) -> [pid_t] {
        var inodes = Set<String>()
        for line in (AtomicFiles.read("/proc/net/unix") ?? "").split(separator: "\n").dropFirst() {
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            if f.count > 7, f[7].hasPrefix(directory + "/") { inodes.insert("socket:[\(f[6])]") }
        }
        return holding(inodes, executable: executable)
    }

    /// The paths of the Unix sockets something listens on (the kernel's accepting flag in
    /// /proc/net/unix): a php-fpm pool's socket is listening while its master has the pool.
    public static func listeningUnixSockets() -> Set<String> {
        var out = Set<String>()
        for line in (AtomicFiles.read("/proc/net/unix") ?? "").split(separator: "\n").dropFirst() {
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            // Flags 00010000 is __SO_ACCEPTCON: a listening socket.
            if f.count > 7, let flags = Int(f[3], radix: 16), flags & 0x10000 != 0 { out.insert(String(f[7])) }
        }
        return out
    }

    /// `listeningUnixSockets()` shared by many threads that ask again and again (a
    /// verification of thousands of pools): read at most once per `maxAge`.
    final class ListeningUnixSockets: @unchecked Sendable {
        private let lock = NSLock()
        private var read: (at: Date, paths: Set<String>)?
        private let maxAge: TimeInterval
        private let time: TimeSource

        init(maxAge: TimeInterval = 0.05, time: TimeSource = .system) { self.maxAge = maxAge; self.time = time }

        func contains(_ path: String) -> Bool {
            lock.lock()
            defer { lock.unlock() }
            let now = time.now()
            if let r = read, now.timeIntervalSince(r.at) < maxAge { return r.paths.contains(path) }
            let paths = Processes.listeningUnixSockets()
            read = (now, paths)
            return paths.contains(path)
        }
    }

    /// The php-fpm pools that have a worker now: processes named `php-fpm: pool NAME`.
    public static func fpmPoolsWithWorkers() -> Set<String> {
        var out = Set<String>()
        for p in pids() {
            guard let cmd = AtomicFiles.read("/proc/\(p)/cmdline"), cmd.hasPrefix("php-fpm: pool ") else { continue }
            let name = cmd.dropFirst("php-fpm: pool ".count).prefix { $0 != " " && $0 != "\0" }
            out.insert(String(name))
        }
        return out
    }

    static func holding(_ inodes: Set<String>, executable: String) -> [pid_t] {
        guard !inodes.isEmpty else { return [] }
        return pids().filter { p in
            guard exe(of: p).map({ $0.hasPrefix(executable) }) == true,
                  let fds = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(p)/fd") else { return false }
            return fds.contains { inodes.contains((try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(p)/fd/\($0)")) ?? "") }
        }
    }

    static func tcpListeners(port: UInt16) -> Set<String> {
        var inodes = Set<String>()
        let hex = String(format: "%04X", port)
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            for line in (AtomicFiles.read(table) ?? "").split(separator: "\n").dropFirst() {
                let f = line.split(separator: " ")
                // local_address is ADDR:PORT in hex; state 0A is LISTEN; the inode is field 9.
                if f.count > 9, f[1].hasSuffix(":" + hex), f[3] == "0A" { inodes.insert("socket:[\(f[9])]") }
            }
        }
        return inodes
    }

    /// SIGQUIT (graceful for nginx), then SIGKILL for whatever is left after `grace`; returns
    /// once every one has exited (a process killed a moment ago may still hold its sockets).
    public static func terminate(_ pids: [pid_t], grace: TimeInterval = 3, time: TimeSource = .system) {
        for p in pids { kill(p, SIGQUIT) }
        var deadline = time.deadline(grace)
        while pids.contains(where: { !isGone($0) }) && time.now() < deadline { time.sleep(0.02) }
        for p in pids where !isGone(p) { kill(p, SIGKILL) }
        deadline = time.deadline(2)
        while pids.contains(where: { !isGone($0) }) && time.now() < deadline { time.sleep(0.01) }
    }

    /// The process has exited (a zombie waiting for its parent counts: it holds nothing).
    static func isGone(_ pid: pid_t) -> Bool {
        guard kill(pid, 0) == 0, let stat = AtomicFiles.read("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return true }
        return stat[stat.index(after: close)...].dropFirst().first == "Z"
    }
}

extension Processes {
    /// A process running `executable` whose last argument is `argument` (a detached
    /// daemon of a sandbox, found after `setsid --fork`).
    public static func find(executable: String, argument: String) -> pid_t? {
        pids().first { pid in
            guard exe(of: pid) == executable, let raw = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
            return raw.split(separator: 0).last.map { String(decoding: $0, as: UTF8.self) } == argument
        }
    }

    /// Whether anything listens on this TCP port (IPv4 or IPv6).
    public static func listensOnLoopback(port: Int) -> Bool {
        !tcpListeners(port: UInt16(port)).isEmpty
    }
}
