import Foundation
import Synchronization
import Testing
@testable import Provisioner

/// A real sandbox for one test: its own directory, loopback port, user prefix and UID
/// range, driven through the real `desactl` binary. `destroy()` removes it all.
final class SandboxHarness: @unchecked Sendable {
    let dir: String
    private(set) var port: Int
    let prefix: String
    /// The first UID of the sandbox's range (a multiple of 1000).
    let uidBase: Int
    var configPath: String { dir + "/desa.toml" }
    let runner = SystemProcessRunner()

    /// The sandbox's own MariaDB port, when it has one (`mariadb: true`).
    private(set) var mariadbPort: Int?
    /// The sandbox's own pebble (ACME at `port`, its management, DNS and DNS management
    /// ports the three after it) and nginx's HTTPS port, when it has one.
    let pebble: (port: Int, httpsPort: Int)?

    /// `start: false` makes the sandbox without starting it.
    init(_ name: String, regency: String = "32.04", domain: String = "bandungkab.go.id", mariadb: Bool = false,
         pebble: (port: Int, httpsPort: Int)? = nil, start: Bool = true, initArgs: [String] = []) throws {
        let tag = String(UInt32.random(in: 0..<UInt32.max), radix: 36)
        dir = "/var/tmp/desa-e2e-\(name)-\(tag)"
        prefix = "de" + String((0..<5).map { _ in "abcdefghijklmnopqrstuvwxyz".randomElement()! })
        self.pebble = pebble
        uidBase = 400_000 + Int.random(in: 0..<500) * 1000
        port = 0
        // A port chosen free can be taken by another process on this shared machine before
        // the sandbox binds it: desactl then refuses it ("in use"), and the sandbox is made
        // again on other ports. Any other failure fails the test.
        for attempt in 1...4 {
            let given = pebble.map { [$0.httpsPort] + Array($0.port...($0.port + 3)) } ?? []
            var p = Self.freePort()
            while given.contains(p) { p = Self.freePort() }
            port = p
            var extra: [String] = []
            if mariadb {
                var p = Self.freePort()
                while p == port || given.contains(p) { p = Self.freePort() }
                mariadbPort = p
                extra = ["--with-mariadb", "--mariadb-port", "\(p)"]
            }
            if let pebble {
                extra += ["--with-pebble", "--pebble-port", "\(pebble.port)", "--https-port", "\(pebble.httpsPort)"]
            }
            let r = try runner.run(Self.asOperator + [Support.desactl, "sandbox", "init", dir, "--http-port", "\(port)", "--regency", regency,
                                    "--domain", domain, "--user-prefix", prefix, "--uid-min", "\(uidBase)", "--uid-max", "\(uidBase + 999)"] + extra + initArgs)
            if !r.ok && r.message.contains("in use") && attempt < 4 { try? FileManager.default.removeItem(atPath: dir); continue }
            try #require(r.ok, "sandbox init failed: \(r.message)")
            guard start else { return }
            let s = try desactl("sandbox", "start")
            // A sandbox that did not start is not left running for the next test to trip over.
            if !s.ok { destroy() }
            if !s.ok && s.message.contains("in use") && attempt < 4 { continue }
            try #require(s.ok, "sandbox start failed: \(s.message)")
            return
        }
    }

    /// A port nothing listens on, never the same twice in this test process (suites run in
    /// parallel: two of them picking one port before either binds it made nginx fail).
    static func freePort() -> Int {
        for _ in 0..<200 {
            let p = Int.random(in: 20_000..<40_000)
            guard handedOut.withLock({ $0.insert(p).inserted }) else { continue }
            let probe = HTTPProbe(address: ProbeAddress("127.0.0.1:\(p)")!, timeout: 0.2)
            if (try? probe.get(host: "x")) == nil && !Processes.listensOnLoopback(port: p) { return p }
        }
        return 28_080
    }

    private static let handedOut = Mutex<Set<Int>>([])

    @discardableResult
    func desactl(_ args: String...) throws -> ProcessResult { try desactl(args) }

    func desactl(_ args: [String]) throws -> ProcessResult {
        try runner.run(Self.asOperator + [Support.desactl, "--config", configPath] + args)
    }

    /// Subcommand-first form, since global flags live on the leaf commands.
    func run(_ args: String...) throws -> ProcessResult {
        try runner.run(Self.asOperator + [Support.desactl] + args + ["--config", configPath])
    }

    /// Every desactl of the end-to-end tests runs under a strict operator's umask, 077: what
    /// desa makes must have the modes it sets, not the caller's (under 077 an installed
    /// OpenSID's files came out 0600 and every page was 403). bash only sets the umask and
    /// execs: the arguments are its positional parameters, never parsed as shell text.
    static let asOperator = ["/bin/bash", "-c", "umask 077 && exec \"$@\"", "desactl-umask-077"]

    func get(_ host: String, _ path: String = "/") throws -> HTTPProbe.Response {
        try HTTPProbe(address: ProbeAddress("127.0.0.1:\(port)")!, timeout: 5).get(host: host, path: path)
    }

    func config() throws -> Config { try Config.load(path: configPath) }

    /// `desactl` with its clock at `now` (DESA_TEST_NOW, a debug-build hook).
    func desactl(now: Date, _ args: String...) throws -> ProcessResult {
        try runner.run(Self.asOperator + ["/usr/bin/env", "DESA_TEST_NOW=" + Timestamp.format(now), Support.desactl, "--config", configPath] + args)
    }

    /// Rewrites these keys of the sandbox's `[tls]` section in its file, leaving the rest
    /// as written (encoding the whole Config would also write sections other suites register).
    func setTLS(_ settings: [String: String]) throws { try set("tls", settings) }

    /// Rewrites these keys of the sandbox's `[name]` section in its file (see `setTLS`).
    func set(_ name: String, _ settings: [String: String]) throws {
        var section = "", seen = Set<String>()
        let lines = (AtomicFiles.read(configPath) ?? "").split(separator: "\n", omittingEmptySubsequences: false).map { line -> String in
            if line.hasPrefix("[") { section = String(line) }
            guard section == "[\(name)]", let eq = line.firstIndex(of: "=") else { return String(line) }
            let key = line[..<eq].trimmingCharacters(in: .whitespaces)
            guard let value = settings[key] else { return String(line) }
            seen.insert(key)
            return "\(key) = \(value)"
        }
        try #require(seen == Set(settings.keys), "desa.toml has no [\(name)] keys \(Set(settings.keys).subtracting(seen).sorted())")
        try AtomicFiles.write([FileWrite(path: configPath, content: lines.joined(separator: "\n"), mode: 0o600)])
    }

    /// Turns the regency's portal off, for tests whose arithmetic counts only villages
    /// (its host would join the certificate bundles, its server block the sites).
    func portalOff() throws { try set("portal", ["enabled": "false"]) }

    /// This run's pebble root (saved by `sandbox start`): what a browser would trust.
    var pebbleRoot: String { dir + "/pebble/root.pem" }

    /// Runs SQL as the sandbox MariaDB's root (unix-socket authentication); tab-separated rows.
    func sql(_ statement: String) throws -> ProcessResult {
        let m = try config().mariadb
        return try runner.run([m.clientBinary, "--no-defaults", "--user=root", "--socket=" + (m.socket ?? ""), "-N", "-B", "-e", statement])
    }

    func tenants() throws -> [[String: Any]] {
        let r = try run("tenant", "list", "--json")
        try #require(r.ok, "\(r.message)")
        return try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [[String: Any]]
    }

    func users() throws -> [SystemUser] {
        try Users(runner: runner, passwdFile: "/etc/passwd", sysusersFile: "/dev/null").tenants(prefix: prefix)
    }

    func nginxTest() throws -> ProcessResult { try ServiceControl(config: try config(), runner: runner).test(.nginx(try config())) }

    /// The first `count` villages of Kab. Bandung as a CSV in the sandbox.
    func bandungSubset(_ count: Int) throws -> String {
        let lines = Support.read(Support.bandung).split(separator: "\n")
        let path = dir + "/subset.csv"
        try (lines.prefix(count + 1).joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func destroy() {
        _ = try? run("sandbox", "destroy")
        for u in (try? users()) ?? [] { _ = try? runner.run(["/usr/sbin/userdel", u.name]) }
        try? FileManager.default.removeItem(atPath: dir)
    }
}
