import Foundation
import Testing
@testable import Provisioner
#if canImport(Glibc)
import Glibc
#endif

/// The Debian package as a sysadmin meets it, on a freshly booted Debian 12 with systemd as
/// PID 1 and no Swift toolchain: `apt-get install ./desa_*.deb`, `desactl init`, the Bandung
/// list imported and served by the system's nginx and php8.2-fpm, an upgrade, a purge; and
/// lintian. The root filesystem holds what the package depends on and recommends (read from
/// the built package), installed by debootstrap from Debian's mirror: the container has no
/// network, so apt installs the package against what is there, as it would on a server that
/// has them.
@Suite("The Debian package: install, desactl init, 280 villages served, upgrade, purge, on a booted Debian 12", .serialized,
       .enabled(if: ContainerHarness.preflight == nil,
                "needs root, systemd-nspawn and debootstrap; the reason is printed above"))
struct PackageTests {
    static let out = "/var/tmp/desa-deb-tests"

    /// Both packages: revision 1, and revision 2 for the upgrade (the same binaries).
    static let built: Result<[String], any Error> = Result {
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        return try [1, 2].map { revision in
            var o = Spawn.Options()
            o.environment = Spawn.environment() + ["DESA_DEB_REVISION=\(revision)", "DESA_DEB_OUT=" + out, "PATH=" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")]
            let r = try SystemProcessRunner().capture(["/bin/bash", Support.packageRoot.appendingPathComponent("scripts/build-deb.sh").path], o)
            guard r.ok, let path = r.stdout.split(separator: "\n").last.map(String.init), FileManager.default.fileExists(atPath: path) else {
                throw DesaError(.checkFailed, "scripts/build-deb.sh failed (exit \(r.status)): \(r.message)")
            }
            return path
        }
    }

    /// The packages a control field names, the first of each set of alternatives, without versions.
    static func packages(_ deb: String, _ field: String) throws -> [String] {
        let r = try SystemProcessRunner().run(["/usr/bin/dpkg-deb", "-f", deb, field])
        guard r.ok else { throw DesaError(.checkFailed, "dpkg-deb -f \(deb) \(field): \(r.message)") }
        return r.stdout.split(separator: ",").compactMap { alt in
            alt.split(separator: "|").first?.split(separator: "(").first?.trimmingCharacters(in: .whitespacesAndNewlines)
        }.filter { !$0.isEmpty }
    }

    static func image(_ deb: String) throws -> ContainerHarness.Image {
        let needed = try packages(deb, "Depends") + packages(deb, "Recommends")
        let base = ["systemd", "systemd-sysv", "dbus", "procps", "iproute2", "curl"]
        return .init(rootfs: "/var/cache/desa-tests/bookworm-package-rootfs", packages: Array(Set(base + needed)).sorted(), bindSwift: false)
    }

    func sh(_ h: ContainerHarness, _ argv: String...) throws -> ProcessResult {
        try h.exec(["/usr/bin/env", "DEBIAN_FRONTEND=noninteractive", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"] + argv)
    }

    /// The HTTP status of every village through the container's nginx on port 80, by name.
    func statuses(_ h: ContainerHarness, _ hosts: [String]) throws -> [String: String] {
        var config = ""
        for host in hosts { config += "url = \"http://\(host)/\"\noutput = \"/dev/null\"\n" }
        try h.write("/var/tmp/urls.curl", config)
        let r = try sh(h, "curl", "-s", "--connect-to", "::127.0.0.1:80", "--max-time", "10", "-w", "%{http_code} %{url_effective}\\n",
                       "--config", "/var/tmp/urls.curl")
        var out: [String: String] = [:]
        for line in r.stdout.split(separator: "\n") {
            let parts = line.split(separator: " ")
            guard parts.count == 2, let host = URL(string: String(parts[1]))?.host else { continue }
            out[host] = String(parts[0])
        }
        return out
    }

    @Test("apt-get install, desactl init (twice), the Bandung list served by the system's nginx and php8.2-fpm, the agent's sweep in the journal, an upgrade, a purge that keeps every home; lintian finds no error")
    func lifecycle() throws {
        let debs = try Self.built.get()
        let (first, second) = (debs[0], debs[1])
        let lintian = try SystemProcessRunner().run(["/usr/bin/lintian", "--fail-on", "error", "--no-tag-display-limit", first])
        #expect(lintian.ok, "lintian: \(lintian.stdout) \(lintian.stderr)")

        let image = try Self.image(first)
        if let why = ContainerHarness.prepare(image) { Issue.record("cannot build the package's root filesystem: \(why)"); return }
        let h = try ContainerHarness(name: "desa-package", image: image, timeout: 120)
        defer { h.shutdown() }
        #expect(!FileManager.default.fileExists(atPath: h.root + "/opt/swift"), "the container must not have the Swift toolchain")

        // Install: nothing starts unconfigured.
        try h.copyIn(first, to: "/var/tmp/" + (first as NSString).lastPathComponent)
        let install = try sh(h, "apt-get", "install", "-y", "/var/tmp/" + (first as NSString).lastPathComponent)
        try #require(install.ok, "apt-get install: \(install.message)")
        for bin in ["/usr/sbin/desactl", "/usr/sbin/desa-agent"] {
            let ldd = try sh(h, "ldd", bin)
            #expect(ldd.ok && !ldd.stdout.contains("not found") && !ldd.stdout.contains("swift"), "\(bin): \(ldd.stdout)")
        }
        #expect(try sh(h, "desactl", "--version").stdout.trimmingCharacters(in: .whitespacesAndNewlines) == DesaVersion.string)
        #expect(!(try sh(h, "systemctl", "is-active", "--quiet", "desa-agent").ok), "the agent ran before the server was configured")
        #expect(try sh(h, "journalctl", "--list-catalog", BackupMessageID.failed).stdout.contains(BackupMessageID.failed),
                "the package's catalog is not in the journal's catalog database")

        // desactl init, twice: the second changes nothing.
        let initR = try sh(h, "desactl", "init", "--regency", "32.04", "--domain", "bandungkab.go.id")
        try #require(initR.ok, "desactl init: \(initR.stdout) \(initR.stderr)")
        #expect(initR.stdout.contains("wrote /etc/desa/desa.toml (0600)") && initR.stdout.contains("enabled and started desa-agent"), "\(initR.stdout)")
        var st = stat()
        #expect(stat(h.root + "/etc/desa/desa.toml", &st) == 0 && st.st_mode & 0o777 == 0o600)
        #expect(try sh(h, "systemctl", "is-active", "--quiet", "desa-agent").ok)
        let configBefore = AtomicFiles.read(h.root + "/etc/desa/desa.toml")
        let again = try sh(h, "desactl", "init", "--regency", "32.04", "--domain", "bandungkab.go.id")
        #expect(again.ok && !again.stdout.contains("wrote ") && !again.stdout.contains("started"), "\(again.stdout) \(again.stderr)")
        let other = try sh(h, "desactl", "init", "--regency", "32.05", "--domain", "garutkab.go.id")
        #expect(other.status == 1 && other.stderr.contains("does not overwrite"), "\(other.stdout) \(other.stderr)")
        #expect(AtomicFiles.read(h.root + "/etc/desa/desa.toml") == configBefore)

        // The Bandung list, served through the system's nginx and php8.2-fpm.
        try h.copyIn(Support.bandung, to: "/var/tmp/bandung.csv")
        let imported = try sh(h, "desactl", "tenant", "import", "/var/tmp/bandung.csv")
        try #require(imported.ok, "import: \(imported.stdout.suffix(2000)) \(imported.stderr)")
        let tenants = try #require(try JSONSerialization.jsonObject(with: Data(try sh(h, "desactl", "tenant", "list", "--json").stdout.utf8)) as? [[String: Any]])
        #expect(tenants.count == 280)
        let hosts = tenants.map { ($0["slug"] as! String) + ".bandungkab.go.id" }
        let served = try statuses(h, hosts)
        #expect(served.count == 280 && served.values.allSatisfy { $0 == "200" },
                "not every village answered 200: \(served.filter { $0.value != "200" }.prefix(5))")
        // logrotate (the package's file) keeps each log's owner: a village's PHP log stays its own.
        let slug = tenants[0]["slug"] as! String, logDir = h.root + "/var/log/desa/tenants/" + slug
        var home = stat()
        try #require(stat(h.root + "/srv/desa/" + slug, &home) == 0)
        try "PHP Warning: a line\n".write(toFile: logDir + "/php-error.log", atomically: false, encoding: .utf8)
        chown(logDir + "/php-error.log", home.st_uid, home.st_gid)
        let rotated = try sh(h, "logrotate", "-f", "/etc/logrotate.d/desa")
        #expect(rotated.ok, "logrotate: \(rotated.message)")
        var fresh = stat()
        #expect(FileManager.default.fileExists(atPath: logDir + "/php-error.log.1"), "the log was not rotated")
        #expect(stat(logDir + "/php-error.log", &fresh) == 0 && fresh.st_uid == home.st_uid, "the new log is not the village's own")
        // The agent's first sweep after a restart (READY=1 comes after it), then health.
        try h.run("/usr/bin/systemctl", "restart", "desa-agent")
        let health = try sh(h, "desactl", "health")
        #expect(health.ok, "desactl health: \(health.stdout.suffix(1500)) \(health.stderr)")
        #expect(try !h.journal(["_SYSTEMD_UNIT=desa-agent.service"]).isEmpty, "the agent wrote nothing to the journal")
        let pidBefore = try h.show("desa-agent.service", ["MainPID"])["MainPID"]

        // Upgrade: revision 2 over revision 1; state, config and villages stay; the agent restarts.
        try h.copyIn(second, to: "/var/tmp/" + (second as NSString).lastPathComponent)
        let upgrade = try sh(h, "apt-get", "install", "-y", "/var/tmp/" + (second as NSString).lastPathComponent)
        try #require(upgrade.ok, "upgrade: \(upgrade.message)")
        #expect(try sh(h, "dpkg-query", "-W", "-f", "${Version}", "desa").stdout == DesaVersion.string + "-2")
        #expect(AtomicFiles.read(h.root + "/etc/desa/desa.toml") == configBefore)
        #expect(try sh(h, "systemctl", "is-active", "--quiet", "desa-agent").ok)
        let pidAfter = try h.show("desa-agent.service", ["MainPID"])["MainPID"]
        #expect(pidAfter != pidBefore && pidAfter != "0", "the agent was not restarted by the upgrade (\(pidBefore ?? "?") -> \(pidAfter ?? "?"))")
        let listed = try #require(try JSONSerialization.jsonObject(with: Data(try sh(h, "desactl", "tenant", "list", "--json").stdout.utf8)) as? [[String: Any]])
        #expect(listed.count == 280)
        #expect(try statuses(h, Array(hosts.prefix(3))).values.allSatisfy { $0 == "200" })

        // Purge: no desa unit or process is left; every village's home stays.
        let purge = try sh(h, "apt-get", "purge", "-y", "desa")
        try #require(purge.ok, "purge: \(purge.message)")
        #expect(purge.stdout.contains("/srv/desa"), "purge did not say where the villages' data stays: \(purge.stdout)")
        #expect(!FileManager.default.fileExists(atPath: h.root + "/lib/systemd/system/desa-agent.service"))
        #expect(!FileManager.default.fileExists(atPath: h.root + "/etc/desa/desa.toml"))
        #expect(!(try sh(h, "systemctl", "is-active", "--quiet", "desa-agent").ok))
        #expect(!(try sh(h, "pgrep", "-x", "desa-agent").ok), "a desa-agent process is left")
        let homes = (try? FileManager.default.contentsOfDirectory(atPath: h.root + "/srv/desa")) ?? []
        #expect(Set(tenants.map { $0["slug"] as! String }).isSubset(of: Set(homes)), "a village's home went with the purge")
        #expect(FileManager.default.fileExists(atPath: h.root + "/var/lib/desa/state.sqlite"))
    }
}
