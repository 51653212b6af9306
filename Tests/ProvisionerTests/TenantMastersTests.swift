import Foundation
import Testing
@testable import Provisioner

/// What production plans with a php-fpm master per tenant (`php.masters = "tenant"`), read
/// from the plan and checked by the real checkers (php-fpm -t, systemd-analyze); the units
/// running and the kernel holding them are proven under a real systemd in UML
/// (`UMLSystemdTests`).
@Suite("Masters per tenant: the plan")
struct TenantMastersTests {
    static func config(_ dir: String) -> Config {
        var c = RendererTests.config(dir: dir)
        c.mode = .production
        c.php.masters = .tenant
        c.php.tenantDir = dir + "/etc-desa-php"
        var q = c.quota
        q.unitDir = dir + "/units"
        q.memory = ByteSize(bytes: 256 << 20)
        q.cpu = 50
        q.processes = 30
        c.set(q)
        return c
    }

    func plan(_ c: Config, _ tenants: [Tenant], rows: [String: TenantQuota] = [:]) throws -> [Step] {
        var d = DesiredState(config: c, renderer: try Renderer(config: c), tenants: tenants, aliases: [:], webGID: 33, webUID: 33, now: Date())
        d.set(QuotasCapability.self, .init(rows: rows))
        let observer = SystemObserver(users: Users(runner: SystemProcessRunner(), passwdFile: "/etc/passwd", sysusersFile: c.sysusersFile))
        return try PoolsCapability().plan(d, try PoolsCapability().observe(d, observer)).steps
            + QuotasCapability().plan(d, try QuotasCapability().observe(d, observer)).steps
    }

    static func files(_ steps: [Step]) -> [String: ManagedFile] {
        Dictionary(steps.compactMap { if case .managed(let m) = $0.effect { return (m.path, m) }; return nil }, uniquingKeysWith: { a, _ in a })
    }

    @Test("each tenant's pool goes to desa's directory with its socket in /run/desa-php/8.2; its instance is wanted at boot and held to its limits; the template, master.conf and check.conf pass systemd-analyze and php-fpm -t")
    func planned() throws {
        let dir = "/var/tmp/desa-test-masters-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir + "/units", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let c = Self.config(dir)
        let t = try RendererTests.tenant()
        let user = t.userName(prefix: c.userPrefix)
        var big = TenantQuota(code: t.code, size: ByteSize(bytes: 1 << 30), c.quota)
        big.memory = 768 << 20
        big.cpu = 150
        big.tasks = 64
        let files = Self.files(try plan(c, [t], rows: [t.code: big]))

        let pool = try #require(files[dir + "/etc-desa-php/8.2/pools/\(user).conf"], "\(files.keys.sorted())")
        #expect(pool.service == "php8.2-fpm")
        #expect(pool.content?.contains("listen = /run/desa-php/8.2/\(user).sock") == true)
        #expect(try t.phpSocket(c) == "/run/desa-php/8.2/\(user).sock")
        let template = try #require(files[dir + "/units/desa-php8.2-fpm@.service"]?.content)
        #expect(template.contains("ExecStart=/usr/sbin/php-fpm8.2 --nodaemonize --fpm-config \(dir)/etc-desa-php/8.2/master.conf"))
        #expect(template.contains("Environment=DESA_POOL=%i"))
        let wants = try #require(files[dir + "/units/multi-user.target.d/desa-php-\(t.code).conf"]?.content)
        #expect(wants.contains("Wants=desa-php8.2-fpm@\(user).service"))
        let limits = try #require(files[dir + "/units/desa-php8.2-fpm@\(user).service.d/desa-limits.conf"]?.content)
        #expect(limits.contains("TasksMax=64\n") && limits.contains("MemoryMax=\(768 << 20)\n") && limits.contains("CPUQuota=150%\n")
                && limits.contains("MemorySwapMax=0\n"), "\(limits)")
        // The shared master's process-limit drop-in is not planned: each unit holds its own.
        #expect(!files.keys.contains { $0.contains("desa-processes.conf") })

        // Written as planned, the checkers accept them.
        try FileManager.default.createDirectory(atPath: dir + "/etc-desa-php/8.2/pools", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: c.logDir + "/tenants/" + t.slug, withIntermediateDirectories: true)
        try AtomicFiles.write(files.values.compactMap { m in m.content.map { FileWrite(path: m.path, content: $0, mode: 0o644) } }
            .filter { !$0.path.contains("/units/") && !$0.path.contains("/pools/") })
        try FileManager.default.createDirectory(atPath: dir + "/etc-desa-php/8.2/pools", withIntermediateDirectories: true)
        // php-fpm -t wants the pool's user to exist: the check runs with a pool of nobody's.
        let checked = pool.content!.replacingOccurrences(of: "user = \(user)", with: "user = nobody")
            .replacingOccurrences(of: "group = \(user)", with: "group = nogroup")
        try AtomicFiles.write([FileWrite(path: dir + "/etc-desa-php/8.2/pools/\(user).conf", content: checked, mode: 0o644)])
        let runner = SystemProcessRunner()
        let check = try runner.run(["/usr/sbin/php-fpm8.2", "-t", "-y", dir + "/etc-desa-php/8.2/check.conf"])
        #expect(check.ok, "\(check.message)")
        // The master of one tenant: DESA_POOL names its pool, and nothing else is included.
        let one = try runner.run(["/usr/bin/env", "DESA_POOL=\(user)", "/usr/sbin/php-fpm8.2", "-t", "-y", dir + "/etc-desa-php/8.2/master.conf"])
        #expect(one.ok, "\(one.message)")
        let none = try runner.run(["/usr/bin/env", "DESA_POOL=nobody-here", "/usr/sbin/php-fpm8.2", "-t", "-y", dir + "/etc-desa-php/8.2/master.conf"])
        #expect(!none.ok)
        // systemd-analyze verify takes an instance of the template, beside its drop-in.
        let units = dir + "/verify"
        try FileManager.default.createDirectory(atPath: units + "/desa-php8.2-fpm@\(user).service.d", withIntermediateDirectories: true)
        try template.write(toFile: units + "/desa-php8.2-fpm@.service", atomically: true, encoding: .utf8)
        try limits.write(toFile: units + "/desa-php8.2-fpm@\(user).service.d/desa-limits.conf", atomically: true, encoding: .utf8)
        let verify = try runner.run(["/usr/bin/env", "SYSTEMD_UNIT_PATH=\(units):", "/usr/bin/systemd-analyze", "verify", "--man=no",
                                     units + "/desa-php8.2-fpm@\(user).service"])
        #expect(verify.ok && !verify.stderr.contains("Unknown"), "\(verify.message)")
    }

    @Test("a suspended tenant has no pool, no wanted instance and no limits; a sandbox and php.masters = \"shared\" plan none of this")
    func suspendedAndShared() throws {
        let dir = "/var/tmp/desa-test-masters-s-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir + "/units", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var c = Self.config(dir)
        let suspended = Self.files(try plan(c, [try RendererTests.tenant(desired: .suspended)]))
        #expect(!suspended.keys.contains { $0.contains("/pools/") || $0.contains("multi-user.target.d") || $0.contains("desa-limits") }, "\(suspended.keys.sorted())")
        c.php.masters = .shared
        let shared = Self.files(try plan(c, [try RendererTests.tenant()]))
        #expect(!shared.keys.contains { $0.contains("desa-php") }, "\(shared.keys.sorted())")
        c.php.masters = .tenant
        c.mode = .sandbox
        let sandbox = Self.files(try plan(c, [try RendererTests.tenant()]))
        #expect(!sandbox.keys.contains { $0.contains("desa-php") }, "\(sandbox.keys.sorted())")
    }

    @Test("the instances a batch reloads and stops: a pool written starts or reloads its master, a pool removed stops it, nothing else counts")
    func instances() {
        let dir = "/etc/desa/php/8.2/pools"
        let files = [ManagedFile(path: dir + "/desa1.conf", content: "x", service: "php8.2-fpm"),
                     ManagedFile(path: dir + "/desa2.conf", content: nil, service: "php8.2-fpm"),
                     ManagedFile(path: "/etc/desa/php/8.2/master.conf", content: "x", service: "php8.2-fpm"),
                     ManagedFile(path: dir + "/sub/desa3.conf", content: "x", service: "php8.2-fpm")]
        let i = TenantMasters.instances(of: files, in: dir)
        #expect(i.reload == ["desa1"] && i.stop == ["desa2"])
    }
}
