import Foundation
@testable import Provisioner
#if canImport(Glibc)
import Glibc
#endif

/// A Debian 12 container with systemd as PID 1, for tests that need a real service
/// manager: units, `sd_notify`, the watchdog, `systemctl reload`, the system journal.
///
/// The root filesystem is built once with debootstrap into `rootfs` (a temporary
/// directory renamed into place when complete, so an interrupted build is never used).
/// Each harness boots a throwaway copy of it (`systemd-nspawn --template`) under
/// `/var/tmp/desa-nspawn-<pid>-<name>`, with its own network namespace and `/opt/swift`
/// (the Swift runtime the binaries link) bound read-only. Commands run inside with
/// `nsenter` into the container's init, from argument vectors. `shutdown()` powers it
/// off, kills what is left of the nspawn process group and removes the copy; should the
/// test process die first, nspawn gets SIGTERM (its parent-death signal) and the next
/// harness removes the copy.
final class ContainerHarness: @unchecked Sendable {
    /// A root filesystem to boot: where it is built, what it holds besides minbase, and
    /// whether the host's Swift runtime is bound into it.
    struct Image: Sendable {
        var rootfs: String
        var packages: [String]
        var bindSwift: Bool

        /// The agent's tests: desa's binaries from the host's build, with /opt/swift.
        static let agent = Image(rootfs: environment("DESA_TEST_ROOTFS") ?? "/var/cache/desa-tests/bookworm-rootfs",
                                 packages: ContainerHarness.packages, bindSwift: true)
    }

    static let rootfs = Image.agent.rootfs
    /// The Debian mirror apt uses here (`/etc/apt/sources.list.d/debian.sources`).
    static let mirror = environment("DESA_TEST_MIRROR") ?? "http://deb.debian.org/debian"
    /// What the image holds besides minbase: systemd as init, the services desa drives, the
    /// tools the tests use, and the libraries `ldd` shows the binaries need beyond
    /// /opt/swift (libsqlite3, libmariadb; libssl, libsystemd, libstdc++ and zlib come
    /// with the others).
    static let packages = ["systemd", "systemd-sysv", "dbus", "nginx", "php8.2-fpm", "procps", "iproute2", "curl",
                           "libsqlite3-0", "libmariadb3", "libssl3", "libsystemd0", "libstdc++6", "zlib1g",
                           // Under UML (UMLSystemdTests): modprobe for the loop module, mkfs for the quota images.
                           "kmod", "e2fsprogs"]
    static let runner = SystemProcessRunner()

    static func environment(_ name: String) -> String? {
        ProcessInfo.processInfo.environment[name].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// Why this machine cannot boot a container, from cheap checks only; nil: it may.
    static let preflight: String? = {
        if geteuid() != 0 { return "not root (systemd-nspawn and debootstrap need root)" }
        for tool in ["/usr/bin/systemd-nspawn", "/usr/bin/nsenter", "/usr/bin/setpriv"] where access(tool, X_OK) != 0 {
            return "\(tool) is missing (apt-get install systemd-container util-linux)"
        }
        if !FileManager.default.fileExists(atPath: "/opt/swift/usr/lib/swift/linux/libswiftCore.so") {
            return "the Swift runtime is not at /opt/swift, which the container binds read-only"
        }
        if !FileManager.default.fileExists(atPath: rootfs + "/usr/lib/systemd/systemd"), access("/usr/sbin/debootstrap", X_OK) != 0 {
            return "no root filesystem at \(rootfs) and no /usr/sbin/debootstrap to build one (apt-get install debootstrap)"
        }
        return nil
    }()

    /// The root filesystem, built if missing; nil when it is ready, else why not.
    static let prepared: String? = prepare(.agent)

    /// `image`'s root filesystem, built if missing; nil when it is ready, else why not.
    static func prepare(_ image: Image) -> String? {
        if let why = preflight { return why }
        do { try buildRootfs(image); return nil } catch { return (error as? DesaError)?.message ?? "\(error)" }
    }

    /// The condition of the suites that boot a container; prints why not when they are skipped.
    static var canBoot: Bool { said }
    private static let said: Bool = {
        guard let why = prepared else { return true }
        FileHandle.standardError.write(Data("SKIPPED (no container with systemd as PID 1): \(why)\n".utf8))
        return false
    }()

    /// Builds `rootfs` unless it is there: debootstrap into `<rootfs>.partial-<pid>`, then
    /// a rename. Partial trees of processes that died are removed first. A tree built from
    /// another package list (its stamp, /etc/desa-test-rootfs, differs) is built again.
    static func buildRootfs(_ image: Image) throws {
        let fm = FileManager.default
        let rootfs = image.rootfs, packages = image.packages
        let stamp = "/etc/desa-test-rootfs"
        let wanted = "bookworm minbase " + packages.joined(separator: " ") + "\n"
        if fm.fileExists(atPath: rootfs + "/usr/lib/systemd/systemd") {
            if AtomicFiles.read(rootfs + stamp) == wanted { return }
            // Built from another package list: build it again.
            _ = try? runner.run(["/bin/rm", "-rf", "--one-file-system", rootfs])
        }
        let parent = (rootfs as NSString).deletingLastPathComponent, base = (rootfs as NSString).lastPathComponent
        try fm.createDirectory(atPath: parent, withIntermediateDirectories: true)
        for name in (try? fm.contentsOfDirectory(atPath: parent)) ?? [] where name.hasPrefix(base + ".partial-") {
            if let pid = pid_t(name.dropFirst(base.count + ".partial-".count)), kill(pid, 0) != 0 {
                _ = try? runner.run(["/bin/rm", "-rf", "--one-file-system", parent + "/" + name])
            }
        }
        let partial = rootfs + ".partial-\(getpid())"
        _ = try? runner.run(["/bin/rm", "-rf", "--one-file-system", partial])
        let started = Date()
        // debootstrap fetches with wget, which honours http_proxy: pass on apt's proxy if it has one.
        var env = ["/usr/bin/env"]
        if let proxy = environment("http_proxy") ?? aptProxy() { env.append("http_proxy=" + proxy) }
        let r = try runner.run(env + ["/usr/sbin/debootstrap", "--variant=minbase", "--include=" + packages.joined(separator: ","),
                                      "bookworm", partial, mirror])
        guard r.ok else {
            let log = AtomicFiles.read(partial + "/debootstrap/debootstrap.log") ?? r.stdout + r.stderr
            _ = try? runner.run(["/bin/rm", "-rf", "--one-file-system", partial])
            throw DesaError(.checkFailed, "debootstrap bookworm from \(mirror) failed (exit \(r.status)): "
                            + log.split(separator: "\n").suffix(6).joined(separator: " | "))
        }
        // The downloaded packages are not needed in the image.
        _ = try? runner.run(["/usr/bin/find", partial + "/var/cache/apt/archives", "-name", "*.deb", "-delete"])
        try AtomicFiles.write([FileWrite(path: partial + stamp, content: wanted, mode: 0o644)])
        guard rename(partial, rootfs) == 0 else {
            let why = errnoText()
            _ = try? runner.run(["/bin/rm", "-rf", "--one-file-system", partial])
            // Another test process finished its build first: use that one.
            if AtomicFiles.read(rootfs + stamp) == wanted { return }
            throw DesaError.system("cannot rename \(partial) to \(rootfs): \(why)")
        }
        FileHandle.standardError.write(Data("built \(rootfs) in \(Int(Date().timeIntervalSince(started))) s\n".utf8))
    }

    /// apt's `Acquire::http::Proxy`, if set.
    static func aptProxy() -> String? {
        guard let r = try? runner.run(["/usr/bin/apt-config", "shell", "P", "Acquire::http::Proxy"]), r.ok,
              let q = r.stdout.firstIndex(of: "'") else { return nil }
        let v = r.stdout[r.stdout.index(after: q)...].prefix { $0 != "'" }
        return v.isEmpty ? nil : String(v)
    }

    // MARK: one container

    let name: String
    /// The throwaway copy's directory: `root` and nspawn's console log.
    let dir: String
    /// The container's `/` as seen from the host (not its /tmp, a tmpfs, nor /run).
    let root: String
    let nspawn: pid_t
    /// The container's init, as the host sees it: what nsenter enters.
    private(set) var leader: pid_t = 0
    private let lock = NSLock()
    private var stopped = false

    var consoleLog: String { dir + "/console.log" }

    /// Boots a copy of the root filesystem and waits until `systemctl is-system-running`
    /// says `running` (or `degraded`).
    init(name: String, image: Image = .agent, timeout: TimeInterval = 90) throws {
        self.name = name
        Self.sweep()
        dir = "/var/tmp/desa-nspawn-\(getpid())-\(name)"
        root = dir + "/root"
        _ = try? Self.runner.run(["/bin/rm", "-rf", "--one-file-system", dir])
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        nspawn = try Self.spawnWatched(["/usr/bin/setpriv", "--pdeathsig", "TERM", "--",
                                        "/usr/bin/systemd-nspawn", "--quiet", "-D", root, "--template=" + image.rootfs, "-M", name,
                                        "-b", "--register=no", "--keep-unit", "--private-network", "--console=pipe"]
                                        + (image.bindSwift ? ["--bind-ro=/opt/swift"] : []), log: dir + "/console.log", ended: ended)
        do {
            try waitForBoot(timeout: timeout)
        } catch {
            shutdown()
            throw error
        }
    }

    deinit { shutdown() }

    private func waitForBoot(timeout: TimeInterval) throws {
        let deadline = Date().addingTimeInterval(timeout)
        var state = ""
        while Date() < deadline {
            if ended.value {
                throw DesaError(.checkFailed, "systemd-nspawn exited while booting: " + tail(consoleLog))
            }
            if leader == 0 {
                // nspawn's child that runs systemd is the container's init.
                leader = ServiceControl.children(of: nspawn).first {
                    (AtomicFiles.read("/proc/\($0)/comm") ?? "").hasPrefix("systemd")
                } ?? 0
            }
            if leader != 0, let r = try? exec(["/usr/bin/systemctl", "is-system-running"]) {
                state = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
                if state == "running" || state == "degraded" { return }
            }
            usleep(100_000)
        }
        throw DesaError(.checkFailed, "the container did not boot in \(Int(timeout)) s (state \(Quote.show(state))): " + tail(consoleLog))
    }

    /// Runs `argv` (absolute path inside the container) in every namespace of the
    /// container, as root, with a fixed environment.
    @discardableResult
    func exec(_ argv: [String]) throws -> ProcessResult {
        try Self.runner.run(["/usr/bin/nsenter", "-t", "\(leader)", "-a"] + argv)
    }

    /// `exec` that must succeed.
    @discardableResult
    func run(_ argv: String...) throws -> ProcessResult {
        let r = try exec(argv)
        guard r.ok else { throw DesaError(.checkFailed, "\(argv.joined(separator: " ")) exited \(r.status): \(r.message)") }
        return r
    }

    /// Copies a host file or directory to `path` in the container (parents created).
    func copyIn(_ host: String, to path: String) throws {
        try FileManager.default.createDirectory(atPath: root + (path as NSString).deletingLastPathComponent,
                                                withIntermediateDirectories: true)
        let r = try Self.runner.run(["/bin/cp", "-a", "--", host, root + path])
        guard r.ok else { throw DesaError(.checkFailed, "cp \(host) into the container: \(r.message)") }
    }

    /// Writes `content` to `path` in the container (parents created).
    func write(_ path: String, _ content: String, mode: Int = 0o644) throws {
        try FileManager.default.createDirectory(atPath: root + (path as NSString).deletingLastPathComponent,
                                                withIntermediateDirectories: true)
        try AtomicFiles.write([FileWrite(path: root + path, content: content, mode: mode_t(mode))])
    }

    func remove(_ path: String) { unlink(root + path) }

    /// The container's system journal entries matching `matches` (`FIELD=value`, or
    /// journalctl options), as JSON objects.
    func journal(_ matches: [String]) throws -> [[String: Any]] {
        let r = try exec(["/usr/bin/journalctl", "-o", "json", "--no-pager"] + matches)
        guard r.ok else { throw DesaError(.checkFailed, "journalctl \(matches.joined(separator: " ")): \(r.message)") }
        return r.stdout.split(separator: "\n").compactMap {
            (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any]
        }
    }

    /// The journal's cursor now: pass it to `journal(after:)` for what comes later.
    func cursor() throws -> String {
        let r = try exec(["/usr/bin/journalctl", "-n", "0", "--show-cursor", "--no-pager"])
        guard let line = r.stdout.split(separator: "\n").first(where: { $0.hasPrefix("-- cursor: ") }) else {
            throw DesaError(.checkFailed, "journalctl --show-cursor printed no cursor: \(r.message)")
        }
        return String(line.dropFirst("-- cursor: ".count))
    }

    /// Entries after `cursor` whose fields equal every `FIELD=value` of `matches`. The
    /// matching is done here: journalctl 252 given both --after-cursor and field matches
    /// leaves out entries that match.
    func journal(after cursor: String, _ matches: [String]) throws -> [[String: Any]] {
        let wanted = matches.map { m -> (String, String) in
            let eq = m.firstIndex(of: "=")!
            return (String(m[..<eq]), String(m[m.index(after: eq)...]))
        }
        return try journal(["--after-cursor=" + cursor]).filter { e in
            wanted.allSatisfy { field, value in e[field] as? String == value }
        }
    }

    /// `systemctl show UNIT -p P...` as a dictionary.
    func show(_ unit: String, _ properties: [String]) throws -> [String: String] {
        let r = try exec(["/usr/bin/systemctl", "show", unit] + properties.flatMap { ["-p", $0] })
        guard r.ok else { throw DesaError(.checkFailed, "systemctl show \(unit): \(r.message)") }
        var out: [String: String] = [:]
        for line in r.stdout.split(separator: "\n") {
            guard let eq = line.firstIndex(of: "=") else { continue }
            out[String(line[..<eq])] = String(line[line.index(after: eq)...])
        }
        return out
    }

    /// Powers the container off (SIGTERM to nspawn: a clean shutdown), then kills whatever
    /// is left of nspawn's process group and the container, and removes the copy. Safe to
    /// call twice.
    func shutdown() {
        lock.lock()
        defer { lock.unlock() }
        guard !stopped else { return }
        stopped = true
        kill(nspawn, SIGTERM)
        let deadline = Date().addingTimeInterval(15)
        while !ended.value && Date() < deadline { usleep(50_000) }
        kill(-nspawn, SIGKILL)
        if leader > 0 { kill(leader, SIGKILL) }
        let killed = Date().addingTimeInterval(10)
        while !ended.value && Date() < killed { usleep(50_000) }
        _ = try? Self.runner.run(["/bin/rm", "-rf", "--one-file-system", dir])
    }

    /// Set once nspawn has exited and been reaped.
    final class Flag: @unchecked Sendable {
        private let lock = NSLock()
        private var set = false
        var value: Bool { lock.withLock { set } }
        func raise() { lock.withLock { set = true } }
    }
    private let ended = Flag()

    private func tail(_ path: String) -> String {
        (AtomicFiles.read(path) ?? "").split(separator: "\n").suffix(8).joined(separator: " | ")
    }

    /// Removes the copies of test processes that are gone.
    static func sweep() {
        for name in (try? FileManager.default.contentsOfDirectory(atPath: "/var/tmp")) ?? [] where name.hasPrefix("desa-nspawn-") {
            guard let pid = pid_t(name.dropFirst("desa-nspawn-".count).prefix { $0.isNumber }), pid != getpid(), kill(pid, 0) != 0 else { continue }
            _ = try? runner.run(["/bin/rm", "-rf", "--one-file-system", "/var/tmp/" + name])
        }
    }

    /// Starts `argv` from a thread of its own that then waits for it and raises `ended`.
    /// That thread lives as long as the child: the parent-death signal (`setpriv
    /// --pdeathsig`) follows the thread that started the child, not the process, so a
    /// child started from one of Swift's pool threads would be signalled whenever that
    /// thread ends.
    static func spawnWatched(_ argv: [String], log: String, ended: Flag) throws -> pid_t {
        let started = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var outcome: Result<pid_t, any Error> = .failure(DesaError.system("not started"))
        let thread = Thread {
            outcome = Result { try spawnInGroup(argv, log: log) }
            started.signal()
            guard case .success(let pid) = outcome else { return }
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            ended.raise()
        }
        thread.start()
        started.wait()
        return try outcome.get()
    }

    /// posix_spawn in a process group of its own (so that it can be killed whole), output
    /// appended to `log`.
    static func spawnInGroup(_ argv: [String], log: String) throws -> pid_t {
        var o = Spawn.Options()
        o.stdout = .append(log)
        o.newProcessGroup = true
        return try Spawn.start(argv, o)
    }
}
