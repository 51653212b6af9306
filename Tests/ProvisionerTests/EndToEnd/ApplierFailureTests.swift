import Foundation
import Testing
@testable import Provisioner

/// The applier's failure paths against real nginx and php-fpm, and a capability of the
/// test target's own planned, applied, checked and rolled back like the built-in ones.
@Suite("Applier: failures, rollback, a test capability", .serialized)
struct ApplierFailureTests {
    func engine(_ h: SandboxHarness, _ extra: [any Capability] = []) throws -> Engine {
        let e = try Engine(config: try h.config(), journal: NullJournal(), actor: "test")
        e.capabilities = Capabilities.builtIn + extra
        return e
    }

    func twoTenants(_ name: String) throws -> SandboxHarness {
        let h = try SandboxHarness(name)
        try #require(try h.desactl("tenant", "import", try h.bandungSubset(2)).ok)
        return h
    }

    func setOperatorTemplates(_ h: SandboxHarness) throws -> String {
        let dir = h.dir + "/operator-templates"
        var toml = Support.read(h.configPath)
        // The sandbox's desa.toml writes every key, this one empty: set it in place.
        toml = toml.replacingOccurrences(of: "operator_templates = \"\"\n", with: "operator_templates = \"\(dir)\"\n")
        #expect(toml.contains("operator_templates = \"\(dir)\"\n"))
        try toml.write(toFile: h.configPath, atomically: true, encoding: .utf8)
        return dir
    }

    @Test("a capability of the test target plugs in by registration alone: planned, applied, checked, rolled back")
    func testCapability() throws {
        let h = try twoTenants("banner")
        defer { h.destroy() }
        let c = try h.config()
        let plan = try engine(h, [Banners()]).plan()
        #expect(plan.steps.filter { $0.op == "create-config" }.map(\.subject) == [
            c.nginx.sitesDir + "/cileunyi-kulon.banner.conf", c.nginx.sitesDir + "/cileunyi-wetan.banner.conf",
        ])
        #expect(plan.reloads == ["nginx"])
        let applied = try engine(h, [Banners()]).apply()
        #expect(applied.result?.failures.isEmpty == true, "\(applied.result?.failures ?? [])")
        #expect(try h.get("banner-cileunyi-kulon.test").body == "banner cileunyi-kulon\n")
        #expect(try engine(h, [Banners()]).plan().isEmpty)
        // Without the capability its files are nobody's business: the vhosts leave them.
        #expect(try engine(h).plan().isEmpty)

        // A banner nginx refuses fails its tenant, with nginx's words; its old file comes back.
        let wetan = "32.04.05.2002"
        let broken = try engine(h, [Banners(broken: [wetan], text: "new")]).apply()
        let failures = try #require(broken.result?.failures)
        #expect(failures.map(\.code) == [wetan])
        #expect(failures.first?.reason.contains("unknown directive \"retrun\"") == true, "\(failures)")
        #expect(Support.read(c.nginx.sitesDir + "/cileunyi-wetan.banner.conf").contains("return 200 \"banner cileunyi-wetan"))
        #expect(try h.get("banner-cileunyi-kulon.test").body == "new cileunyi-kulon\n")
        #expect(try h.get("banner-cileunyi-wetan.test").body == "banner cileunyi-wetan\n")
        #expect(try h.nginxTest().ok)

        // Fixed, it converges.
        #expect(try engine(h, [Banners(text: "new")]).apply().result?.failures.isEmpty == true)
        #expect(try h.get("banner-cileunyi-wetan.test").body == "new cileunyi-wetan\n")
    }

    @Test("a reload that fails puts the previous files back and fails the batch's tenants")
    func reloadFailureRestores() throws {
        let h = try twoTenants("reload")
        defer { h.destroy() }
        let c = try h.config()
        let nginx = ServiceSpec.nginx(c)
        let s = ServiceControl(config: c, runner: h.runner)
        s.stop(nginx)
        // Someone else takes nginx's port: the check passes, the (re)start cannot bind.
        let squatter = try PortSquatter(port: UInt16(h.port))
        defer { squatter.close() }
        let r = try h.desactl("tenant", "create", "32.04.05.2003", "--name", "Cimekar", "--district", "Cileunyi")
        #expect(r.status == 1, "\(r.stdout) \(r.stderr)")
        #expect(r.stdout.contains("FAILED cimekar"), "\(r.stdout)")
        #expect(r.stdout.contains("nginx did not start"), "\(r.stdout)")
        #expect(r.stdout.contains("port \(h.port) on 127.0.0.1 is in use by ") && r.stdout.contains("(pid \(getpid()))"),
                "the squatter is named: \(r.stdout)")
        #expect(!FileManager.default.fileExists(atPath: c.nginx.sitesDir + "/cimekar.conf"), "the new vhost was taken back")
        #expect(!FileManager.default.fileExists(atPath: c.rollbackDir + "/manifest.json"))
        #expect(try h.nginxTest().ok)
        squatter.close()
        let again = try h.desactl("apply")
        #expect(again.ok, "\(again.stdout) \(again.stderr)")
        #expect(try h.get("cimekar.bandungkab.go.id").status == 200)
    }

    @Test("php-fpm's complaint about one pool fails that pool's tenant only")
    func phpCheckTracedToPool() throws {
        let h = try twoTenants("pool")
        defer { h.destroy() }
        let ops = try setOperatorTemplates(h) + "/php-fpm"
        try FileManager.default.createDirectory(atPath: ops, withIntermediateDirectories: true)
        // A pool that is valid for tenants without aliases and invalid for one with.
        let pool = Support.read(Support.templates + "/php-fpm/pool.conf.mustache")
            + "{{#aliases}}pm.max_children = many\n{{/aliases}}"
        try pool.write(toFile: ops + "/pool.conf.mustache", atomically: true, encoding: .utf8)
        let r = try h.desactl("tenant", "alias", "add", "cileunyi-wetan", "cileunyiwetan.desa.id")
        #expect(r.status == 1, "\(r.stdout) \(r.stderr)")
        #expect(r.stdout.contains("FAILED cileunyi-wetan"), "\(r.stdout)")
        #expect(r.stdout.contains("php8.2-fpm rejected the new configuration"), "\(r.stdout)")
        let statuses = Dictionary(uniqueKeysWithValues: try h.tenants().map { ($0["slug"] as! String, $0["status"] as! String) })
        #expect(statuses == ["cileunyi-kulon": "active", "cileunyi-wetan": "failed"])
        #expect(!Support.read(try h.config().php.versions["8.2"]!.poolDir + "/\(h.prefix)3204052002.conf").contains("many"))
        #expect(try h.get("cileunyi-kulon.bandungkab.go.id").status == 200)
    }

    @Test("a complaint that names no tenant fails the whole batch with the checker's words; nginx -t still passes")
    func untraceableFailsBatch() throws {
        let h = try SandboxHarness("untraced")
        defer { h.destroy() }
        let ops = try setOperatorTemplates(h) + "/nginx"
        try FileManager.default.createDirectory(atPath: ops, withIntermediateDirectories: true)
        // A server name longer than the hash bucket: nginx says so without naming a file.
        let long = String(repeating: "a", count: 60) + "." + String(repeating: "b", count: 60) + ".test"
        let vhost = Support.read(Support.templates + "/nginx/default.conf.mustache")
            .replacingOccurrences(of: "server_name {{server_names}};", with: "server_name {{server_names}} {{slug}}.\(long);")
        #expect(vhost.contains(long))
        try vhost.write(toFile: ops + "/default.conf.mustache", atomically: true, encoding: .utf8)
        let r = try h.desactl("tenant", "import", try h.bandungSubset(2))
        #expect(r.status == 1, "\(r.stdout) \(r.stderr)")
        #expect(r.stdout.components(separatedBy: "FAILED").count == 3, "both tenants of the batch fail: \(r.stdout)")
        #expect(r.stdout.contains("server_names_hash"), "with nginx's own words: \(r.stdout)")
        #expect(try h.nginxTest().ok)
        let left = try FileManager.default.contentsOfDirectory(atPath: try h.config().nginx.sitesDir)
        #expect(left == ["_portal.conf"], "no vhost of the batch stays; the portal's server block, tried alone, does: \(left)")
    }

    @Test("kill -9 between the config writes and the reload (a fault point proves it), then apply converges")
    func killBetweenWritesAndReload() throws {
        let h = try twoTenants("fault")
        defer { h.destroy() }
        let c = try h.config()
        let marker = h.dir + "/fault-reached"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Support.desactl)
        p.arguments = ["--config", h.configPath, "tenant", "create", "32.04.05.2003", "--name", "Cimekar", "--district", "Cileunyi"]
        p.environment = ProcessInfo.processInfo.environment.merging(["DESA_TEST_FAULT": "after-config-writes:" + marker]) { _, b in b }
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        let deadline = Date().addingTimeInterval(30)
        while !FileManager.default.fileExists(atPath: marker) && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        try #require(FileManager.default.fileExists(atPath: marker), "the fault point was never reached")
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        // The kill landed after the writes and before any check or reload.
        #expect(FileManager.default.fileExists(atPath: c.nginx.sitesDir + "/cimekar.conf"))
        #expect(FileManager.default.fileExists(atPath: c.rollbackDir + "/manifest.json"))
        #expect(try h.get("cimekar.bandungkab.go.id").status != 200, "nginx never loaded the new vhost")

        let r = try h.desactl("apply")
        #expect(r.ok, "\(r.stdout) \(r.stderr)")
        #expect(r.stderr.contains("a previous apply was interrupted; restored"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: c.rollbackDir + "/manifest.json"))
        #expect(try h.get("cimekar.bandungkab.go.id").status == 200)
        #expect(try h.tenants().allSatisfy { $0["status"] as? String == "active" })
        #expect(try h.desactl("plan").stdout.contains("Nothing to do"))
    }
}

/// A TCP listener on 127.0.0.1:PORT held by the test process.
final class PortSquatter {
    private var fd: Int32
    init(port: UInt16) throws {
        // Close-on-exec: a daemon started meanwhile by a parallel test would otherwise keep the port for ever.
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard rc == 0, listen(fd, 1) == 0 else { throw DesaError.system("cannot listen on \(port): \(errnoText())") }
    }
    func close() { if fd >= 0 { Glibc.close(fd); fd = -1 } }
}
