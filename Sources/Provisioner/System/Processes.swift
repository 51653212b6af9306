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
        guard pid > 0, kill(pid, 0) == 0 else { return false }
        return runs(pid, executable)
    }

    /// Whether `pid`'s executable is `executable` (also after an upgrade replaced the file).
    static func runs(_ pid: pid_t, _ executable: String) -> Bool {
        guard let e = exe(of: pid) else { return false }
        return e == executable || e == executable + " (deleted)"
    }

    /// The fields of /proc/PID/stat that desa uses.
    struct Stat: Equatable {
        var state: Character
        var parent: pid_t
        /// The session: a daemon that detached (setsid) leads its own, and the workers it
        /// forks stay in it, even once they outlive it.
        var session: pid_t
        /// Field 22, clock ticks after boot: a pid reused later comes with another.
        var startTime: UInt64
    }

    static func stat(of pid: pid_t) -> Stat? {
        guard pid > 0, let text = AtomicFiles.read("/proc/\(pid)/stat"), let close = text.lastIndex(of: ")") else { return nil }
        // The name in parentheses may hold spaces; after it come fields 3 (state), 4 (ppid),
        // 5 (pgrp), 6 (session), ... 22 (starttime).
        let f = text[text.index(after: close)...].split(separator: " ")
        guard f.count > 19, let state = f[0].first, let ppid = pid_t(f[1]), let sid = pid_t(f[3]), let start = UInt64(f[19]) else { return nil }
        return Stat(state: state, parent: ppid, session: sid, startTime: start)
    }

    public static func parent(of pid: pid_t) -> pid_t? { stat(of: pid)?.parent }

    /// Whether the command line of `pid` names `path` as one of its words: an argument
    /// (`-c PATH`), an option's value (`--datadir=PATH`), or in the title nginx and
    /// php-fpm give themselves (`nginx: master process ... -c PATH`, `php-fpm: master
    /// process (PATH)`). A whole word, so `/a/desa.toml` does not match `/b/a/desa.toml`.
    static func commandLine(of pid: pid_t, names path: String) -> Bool {
        guard !path.isEmpty, let raw = AtomicFiles.read("/proc/\(pid)/cmdline") else { return false }
        return raw.split(whereSeparator: { $0 == "\0" || $0 == " " }).contains { w in
            w == path || w == "(" + path + ")" || w.hasSuffix("=" + path)
        }
    }

    static func cwd(of pid: pid_t) -> String? {
        try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/cwd")
    }

    /// The inodes (`socket:[N]`, as /proc/PID/fd shows them) of the Unix sockets bound
    /// under `directory`.
    static func unixSockets(under directory: String) -> Set<String> {
        var inodes = Set<String>()
        for line in (AtomicFiles.read("/proc/net/unix") ?? "").split(separator: "\n").dropFirst() {
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            if f.count > 7, f[7].hasPrefix(directory + "/") { inodes.insert("socket:[\(f[6])]") }
        }
        return inodes
    }

    /// Whether `pid` has open a file under one of `directories`, or one of `sockets`.
    static func holds(_ pid: pid_t, filesUnder directories: [String], orSockets sockets: Set<String>) -> Bool {
        guard let fds = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd") else { return false }
        return fds.contains { fd in
            guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(fd)") else { return false }
            return sockets.contains(target) || directories.contains { target.hasPrefix($0 + "/") }
        }
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
        private let reader: @Sendable () -> Set<String>
        /// How many times the socket table was read (for the tests).
        private(set) var reads = 0

        init(maxAge: TimeInterval = 0.05, time: TimeSource = .system,
             reader: @escaping @Sendable () -> Set<String> = { Processes.listeningUnixSockets() }) {
            self.maxAge = maxAge; self.time = time; self.reader = reader
        }

        /// Whether something listens on `path`. A socket seen listening by this verification
        /// stays so (it was after the reload); one not seen is looked up again, at most once
        /// per `maxAge` counted from the end of the last read: reading /proc/net/unix at
        /// 10,000 pools takes longer than `maxAge`, and counted from its start every probe
        /// read it again, one at a time (an import of 10,000 spent 730 s verifying so).
        func contains(_ path: String) -> Bool {
            lock.lock()
            defer { lock.unlock() }
            if let r = read, r.paths.contains(path) || time.now().timeIntervalSince(r.at) < maxAge { return r.paths.contains(path) }
            let paths = reader()
            reads += 1
            read = (time.now(), paths)
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

    /// Every process that has one of these sockets open, whatever it runs.
    static func holding(_ inodes: Set<String>) -> [pid_t] {
        guard !inodes.isEmpty else { return [] }
        return pids().filter { holds($0, filesUnder: [], orSockets: inodes) }.sorted()
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
    /// Each is signalled only while it is the process it was when called (same start
    /// time): one that exited during the grace period may have passed its pid on.
    public static func terminate(_ pids: [pid_t], grace: TimeInterval = 3, time: TimeSource = .system) {
        let started = Dictionary(pids.compactMap { p in stat(of: p).map { (p, $0.startTime) } }, uniquingKeysWith: { a, _ in a })
        func gone(_ p: pid_t) -> Bool { isGone(p) || stat(of: p)?.startTime != started[p] }
        for p in pids where !gone(p) { kill(p, SIGQUIT) }
        var deadline = time.deadline(grace)
        while pids.contains(where: { !gone($0) }) && time.now() < deadline { time.sleep(0.02) }
        for p in pids where !gone(p) { kill(p, SIGKILL) }
        deadline = time.deadline(2)
        while pids.contains(where: { !gone($0) }) && time.now() < deadline { time.sleep(0.01) }
    }

    /// The process has exited (a zombie waiting for its parent counts: it holds nothing).
    static func isGone(_ pid: pid_t) -> Bool {
        guard pid > 0, kill(pid, 0) == 0, let s = stat(of: pid) else { return true }
        return s.state == "Z"
    }

    /// Reaps `pid` if it is an exited child of this process, and returns its exit status
    /// (128 + the signal that killed it).
    static func reap(_ pid: pid_t) -> Int32? {
        var status: Int32 = 0
        guard pid > 0, stat(of: pid)?.parent == getpid(), waitpid(pid, &status, WNOHANG) == pid else { return nil }
        return status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    }
}

extension Processes {
    /// Whether anything listens on this TCP port (IPv4 or IPv6).
    public static func listensOnLoopback(port: Int) -> Bool {
        !tcpListeners(port: UInt16(port)).isEmpty
    }

    /// Who has `port` in a way that keeps a server from binding `host:port`: TCP listeners
    /// (and with `udp`, bound UDP sockets) on that address or on every address (0.0.0.0,
    /// ::, ::ffff:HOST). `inUse` with no holders: a socket no process here shows (one in
    /// the middle of closing, or another namespace's).
    public struct PortUse: Sendable {
        public var inUse: Bool
        public var holders: [pid_t]
    }

    public static func use(port: UInt16, host: String, udp: Bool = false) -> PortUse {
        let inodes = sockets(port: port, host: host, udp: udp)
        return PortUse(inUse: !inodes.isEmpty, holders: holding(inodes))
    }

    static func sockets(port: UInt16, host: String, udp: Bool) -> Set<String> {
        // /proc/net prints addresses as the kernel's 32-bit words in hex, in host order.
        var v4 = in_addr()
        let known = inet_pton(AF_INET, host, &v4) == 1
        let hex = String(format: "%08X", v4.s_addr)
        let matching: Set<String> = known
            ? [hex, "00000000", "00000000000000000000000000000000", "0000000000000000FFFF0000" + hex]
            : []
        let port = String(format: "%04X", port)
        var inodes = Set<String>()
        for (table, listening) in [("tcp", true), ("tcp6", true)] + (udp ? [("udp", false), ("udp6", false)] : []) {
            for line in (AtomicFiles.read("/proc/net/" + table) ?? "").split(separator: "\n").dropFirst() {
                let f = line.split(separator: " ")
                // local_address is ADDR:PORT; TCP state 0A is LISTEN; the inode is field 9.
                guard f.count > 9, !listening || f[3] == "0A" else { continue }
                let local = f[1].split(separator: ":")
                guard local.count == 2, local[1] == port, !known || matching.contains(String(local[0])) else { continue }
                inodes.insert("socket:[\(f[9])]")
            }
        }
        return inodes
    }

    /// The processes as a person reads them: `nginx (pid 1234)`, `nginx (pids 1235, 1236)`.
    /// A worker that holds what its parent holds is not named beside it.
    public static func describe(_ pids: [pid_t]) -> String {
        let set = Set(pids)
        let roots = pids.filter { parent(of: $0).map { !set.contains($0) } ?? true }
        var byName: [(String, [pid_t])] = []
        for p in (roots.isEmpty ? pids : roots).sorted() {
            let name = exe(of: p).map { ($0.hasSuffix(" (deleted)") ? String($0.dropLast(10)) : $0) }
                .map { ($0 as NSString).lastPathComponent }
                ?? AtomicFiles.read("/proc/\(p)/comm")?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "a process"
            if let i = byName.firstIndex(where: { $0.0 == name }) { byName[i].1.append(p) } else { byName.append((name, [p])) }
        }
        return byName.map { name, ps in "\(name) (\(ps.count == 1 ? "pid" : "pids") \(ps.map(String.init).joined(separator: ", ")))" }
            .joined(separator: " and ")
    }
}
